"""Take the README's and docs' pictures of a study in the MLflow UI, in a real headless browser.

    python docs/screenshot.py URL docs/mlflow_study.png

URL is the link `ablate ui` prints for a study (served by `ablate ui`, so on loopback). Chromium runs
headless under the DevTools protocol (through aiohttp, which Ray installs), because the picture needs
two things `chromium --screenshot` cannot do: wait until the runs table has rendered, and close the
MLflow Assistant panel, which MLflow 3.17's UI opens by itself on a browser's first visit to a local
server. The browser opens the local UI only; the UI needs no network beyond it.

`docs/walkthrough.py` takes the docs' pictures of the MLflow UI this way (the study's view, its parent
run's page, a trial's system metrics) as it walks the README's tour.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

# Close the assistant panel if it is open; count what `selector` finds (by default the runs table's rows).
_SETTLE = """(() => {
  const close = document.querySelector('button[data-component-id="mlflow.assistant.chat_panel.close"]');
  if (close) close.click();
  return document.querySelectorAll(%s).length;
})()"""
ROWS = '.ag-center-cols-container [role="row"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _page_socket(port: int, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as answer:
                pages = [t for t in json.load(answer) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("chromium did not open its DevTools port")
        time.sleep(0.2)


async def _shoot(ws_url: str, url: str, out: Path, *, wait: float, width: int, height: int,
                 selector: str, full_page: bool) -> int:
    import aiohttp

    ids = iter(range(1, 1_000_000))
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        async def call(method: str, **params):
            key = next(ids)
            await ws.send_json({"id": key, "method": method, "params": params})
            async for message in ws:
                data = json.loads(message.data)
                if data.get("id") == key:
                    if "error" in data:
                        raise RuntimeError(f"{method}: {data['error']}")
                    return data["result"]
            raise ConnectionError("chromium closed the DevTools connection")

        await call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        await call("Page.enable")
        await call("Page.navigate", url=url)
        rows, deadline = 0, time.monotonic() + wait
        while time.monotonic() < deadline:  # until the table has rows and stopped growing
            await asyncio.sleep(1.0)
            settle = _SETTLE % json.dumps(selector)
            now = (await call("Runtime.evaluate", expression=settle, returnByValue=True))["result"].get("value", 0)
            if now and now == rows:
                break
            rows = now
        await asyncio.sleep(1.0)  # the panel's close animation
        if full_page:  # the whole document, not only the window (a report's page is longer than a screen)
            size = (await call("Page.getLayoutMetrics"))["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": width, "height": min(size["height"], 20_000), "scale": 1}
            shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
        else:
            shot = await call("Page.captureScreenshot", format="png")
        out.write_bytes(base64.b64decode(shot["data"]))
        return rows


def shoot(url: str, out: Path, *, width: int = 1600, height: int = 1000, wait: float = 60.0,
          selector: str = ROWS, full_page: bool = False) -> int:
    """Open `url` in a headless chromium, wait until `selector` matches and stops growing, and save a PNG to
    `out`. Returns how many elements matched; 0 means the page never rendered them."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("no chromium on PATH (apt-get install chromium)")
    port = free_port()
    # Chromium's helpers may still write to the profile as it closes: leftovers are no reason to fail.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        chromium = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "--allow-file-access-from-files", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            ws_url = _page_socket(port, time.monotonic() + 30)
            return asyncio.run(_shoot(ws_url, url, out, wait=wait, width=width, height=height, selector=selector,
                                      full_page=full_page))
        finally:
            chromium.terminate()
            chromium.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the page at most")
    parser.add_argument("--selector", default=ROWS, help="CSS selector of what must have rendered (default: "
                        "the runs table's rows; a run's page: 'canvas' for its charts)")
    parser.add_argument("--full-page", action="store_true", help="the whole page, not only the window")
    args = parser.parse_args()
    rows = shoot(args.url, args.out, width=args.width, height=args.height, wait=args.wait, selector=args.selector,
                 full_page=args.full_page)
    if not rows:
        raise SystemExit(f"{args.url}: nothing matched {args.selector} within {args.wait:.0f} s")
    print(f"wrote {args.out} ({rows} x {args.selector})")


if __name__ == "__main__":
    main()
