"""Safe by default: the private Ray `ablate run` starts listens on loopback only."""

import ipaddress
import os
from pathlib import Path

import pytest
import ray

from ablation.driver.cluster import connect

pytestmark = pytest.mark.slow  # each test runs real studies under Ray


def _descendants(pid: int) -> set[int]:
    children = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                and _parent(int(p.name)) == pid}
    return {pid}.union(*(_descendants(c) for c in children))


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def listening_addresses(pids: set[int]) -> set[str]:
    """The local addresses of the TCP sockets in LISTEN state that `pids` hold, read from /proc."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                raw = bytes.fromhex(fields[1].split(":")[0])
                # /proc writes each 32-bit word of the address in host (little-endian) order
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                address = ipaddress.ip_address(words)
                found.add(str(getattr(address, "ipv4_mapped", None) or address))
    return found


def test_the_private_ray_listens_on_loopback_only(own_ray):
    connect(None)
    try:
        @ray.remote
        def ready() -> bool:
            return True

        assert ray.get(ready.remote())  # a worker process is up and serving too
        addresses = listening_addresses(_descendants(os.getpid()))
    finally:
        ray.shutdown()
    assert addresses, "found no listening sockets to check"
    loopback = {"127.0.0.1", "::1"}
    assert addresses <= loopback, f"Ray listens on {addresses - loopback}"


@pytest.mark.parametrize("moved", ["a Ray it was not tried with", "the switch gone"])
def test_a_ray_whose_loopback_switch_is_not_known_is_refused_before_it_starts(monkeypatch, moved, own_ray):
    from ray._private import ray_constants

    if moved == "the switch gone":
        monkeypatch.delattr(ray_constants, "ENABLE_RAY_CLUSTER")
        expected = "has no ray._private.ray_constants.ENABLE_RAY_CLUSTER"
    else:
        monkeypatch.setattr(ray, "__version__", "3.0.0")
        expected = "ray 3.0.0"
    with pytest.raises(RuntimeError, match=expected) as refused:
        connect(None)
    assert "--address" in str(refused.value) and not ray.is_initialized()


def test_ablate_ui_serves_the_store_on_loopback_and_gives_the_link_once_it_answers(tmp_path):
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    link = f"http://127.0.0.1:{port}"
    ui = subprocess.Popen([sys.executable, "-m", "ablation.cli", "ui", "--tracking-uri", str(tmp_path / "store"),
                           "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 120
        while link not in "".join(lines):  # the link comes once the server answers, not before
            line = ui.stdout.readline()
            assert line and time.monotonic() < deadline, f"the UI did not come up: {''.join(lines)}"
            lines.append(line)
        with urllib.request.urlopen(f"{link}/health", timeout=2) as response:
            assert response.status == 200  # already: the link was not given before the server answered
        addresses = listening_addresses(_descendants(ui.pid))
    finally:
        ui.terminate()
        output, _ = ui.communicate(timeout=30)
    output = "".join(lines) + output
    assert lines[0].startswith("Starting the MLflow server for ") and "DeprecationWarning" not in output
    # Nothing from the server but what it has to say: no request log, no start-up chatter of uvicorn's.
    assert "GET /health" not in output and "Uvicorn running" not in output and "Registry store URI" not in output
    assert addresses and addresses <= {"127.0.0.1", "::1"}, addresses
