"""Does report.html show, in a real browser? Headless Chromium renders it to a PNG, and the PNG must not
be blank: enough ink for the text and tables, and colour from the embedded plots (the tables and text
are grey and black, so colour means the base64 PNGs decoded and drew).

    .venv/bin/python benchmarks/report_render.py [REPORT.html] [--out PNG]

Without REPORT.html it logs a small study of known figures to a temporary MLflow store, writes its
report and renders that. Chromium comes from the system packages (Debian: `apt-get install chromium`);
tests/test_report_files.py runs the same check, and skips, naming what is missing, where no browser is.
Writes benchmarks/results/report_render.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome-headless-shell")
WINDOW = (1280, 6000)  # tall, since --screenshot takes the viewport only, and a report runs long
INK = 0.02  # share of pixels darker than the page, at least: text, tables and plots drew
COLOUR = 0.002  # share of strongly coloured pixels, at least: the plots drew (the rest of the page is grey)


def find_browser() -> str | None:
    """A Chromium-family browser on PATH (or $ABLATE_BROWSER), or None."""
    named = os.environ.get("ABLATE_BROWSER")
    return shutil.which(named) if named else next((found for b in BROWSERS if (found := shutil.which(b))), None)


def render(html: Path, png: Path, browser: str, *, timeout: float = 120.0) -> Path:
    """`html` as headless Chromium draws it, saved to `png`."""
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile: no first-run state, no lock of another's
        command = [browser, "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                   f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                   f"--screenshot={png.resolve()}", html.resolve().as_uri()]
        if os.geteuid() == 0:  # Chromium refuses to run as root with its sandbox on
            command.insert(1, "--no-sandbox")
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if not png.exists():
        raise RuntimeError(f"{browser} wrote no screenshot (exit {done.returncode}): {done.stderr[-2000:]}")
    return png


def measure(png: Path) -> dict[str, float]:
    """How much of the picture is ink and how much is colour."""
    with Image.open(png) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    grey = rgb.mean(axis=2)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return {"width": rgb.shape[1], "height": rgb.shape[0], "ink": float((grey < 200).mean()),
            "colour": float((spread > 60).mean()), "std": float(grey.std())}


def blank(figures: dict[str, float]) -> str | None:
    """Why the picture counts as blank, or None if it shows a report."""
    if figures["ink"] < INK / 4:
        return f"only {figures['ink']:.2%} of it is ink: nothing drew"
    if figures["colour"] < COLOUR:
        return (f"only {figures['colour']:.3%} of it is coloured (at least {COLOUR:.1%} expected): "
                "the plots did not draw")
    if figures["ink"] < INK:
        return f"only {figures['ink']:.2%} of it is ink (at least {INK:.0%} expected): the tables did not draw"
    return None


def demo_report(folder: Path) -> Path:
    """A report of a small logged study with known figures, for when none is given."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from reported_studies import log_known_study  # the report tests' study: four placements, two seeds

    from ablation.report.make import make_report

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    log_known_study(uri)
    make_report(uri, "known", folder / "report")
    return folder / "report" / "report.html"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", nargs="?", type=Path, help="a report.html; default: one made here")
    parser.add_argument("--out", type=Path, help="where to keep the PNG; default beside the HTML")
    args = parser.parse_args()
    browser = find_browser()
    if browser is None:
        raise SystemExit(f"no headless browser: none of {', '.join(BROWSERS)} is on PATH "
                         "(Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        html = args.html or demo_report(Path(tmp))
        png = args.out or html.with_suffix(".png")
        began = time.perf_counter()
        render(html, png, browser)
        seconds = time.perf_counter() - began
        figures = measure(png)
        why = blank(figures)
        version = subprocess.run([browser, "--version"], capture_output=True, text=True).stdout.strip()
        from results_file import publish  # benchmarks/, the script's own folder

        publish("report_render", {"browser": version, "seconds": round(seconds, 2), **figures, "blank": why},
                ["# report.html in a headless browser", "",
                 f"{version} rendered {'the demo study' if args.html is None else html} at {WINDOW[0]}x{WINDOW[1]} "
                 f"in {seconds:.1f} s: {figures['ink']:.1%} ink, {figures['colour']:.2%} colour "
                 f"-> {'BLANK: ' + why if why else 'not blank'}."])
    if why:
        raise SystemExit(f"report.html renders blank: {why}")


if __name__ == "__main__":
    main()
