import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from studies import ray_free_for_a_study, write_tiny

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# The models here are tiny; one thread avoids OpenMP spinning against Ray workers or a busy machine.
torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: starts Ray, an MLflow server or an `ablate` process, or trains a "
                                       "real study; `make check` runs the others (pytest -m 'not slow')")
    config.addinivalue_line("markers", "alone: a slow test that needs the machine to itself: its Ray's memory "
                                       "monitor would see other tests' memory; `make test` runs these one at a "
                                       "time, last")


@pytest.fixture(autouse=True)
def _fast_means_no_ray(request, monkeypatch):
    """A test not marked slow may not start Ray: the fast tier stays fast only if this is checked."""
    if request.node.get_closest_marker("slow") is None:
        import ray

        def refuse(*args, **kwargs):
            raise RuntimeError(f"{request.node.nodeid} starts Ray: mark it @pytest.mark.slow")

        monkeypatch.setattr(ray, "init", refuse)


_SPEEDS: dict[int, object] = {}


@pytest.fixture(autouse=True)
def _machine_timed_once(monkeypatch):
    """`ablate plan` times this machine unless it cached a figure timed while it was quiet, and during a
    test run it never is: each plan would time it again, for up to 10 s. Here it is timed for real once
    per session and thread count, and every plan after reads that figure, under load or not as it was."""
    from ablation import plan

    measure = plan._measure

    def once(threads, **settings):
        if settings:  # a test timing it its own way
            return measure(threads, **settings)
        if threads not in _SPEEDS:
            _SPEEDS[threads] = measure(threads, budget=3.0)  # steady or not by then: a busy machine never is
        return _SPEEDS[threads]

    monkeypatch.setattr(plan, "_measure", once)


@pytest.fixture(scope="session")
def _ray_of_the_session():
    yield
    import ray

    ray.shutdown()


@pytest.fixture
def shared_ray(_ray_of_the_session):
    """For tests that run studies in this process: they share one private Ray. The first `ablate run`
    starts it (as `connect` does, on loopback) and it stays up for the next test, which saves its
    start and stop, 4-6 s a test."""
    ray_free_for_a_study()
    yield


@pytest.fixture
def own_ray():
    """For tests that need no Ray running as they start (they check that nothing started one, start
    their own with settings of its own, or change what its workers inherit) and leave none running."""
    import ray

    ray.shutdown()
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Each test gets its own working directory and data cache, so nothing lands in the repo or ~."""
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    work = tmp_path_factory.mktemp("work")
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def tiny_spec(tmp_path) -> Path:
    """The tiny study's spec (`TINY`), in the test's own folder."""
    return write_tiny(tmp_path)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """An AI-HUB layout for test_aihub.py and test_aihub_layout.py, of tests/aihub_files.py's sizes: every
    emotion with 당황, annotators always agreeing (so the counts are exact)."""
    from aihub_files import FACE, SIZE, TRAIN, VALID
    from ablation.data import aihub_layout

    root = tmp_path_factory.mktemp("aihub") / "root"
    aihub_layout.write(root, per_class=TRAIN, valid_per_class=VALID, image_size=SIZE, face_size=FACE, seed=3,
                       disagreement=0.0)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server on loopback, serving artifacts itself, as a cluster's would."""
    port = free_port()
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "served-artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1)
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.3)
    yield url, tmp_path / "served-artifacts"
    server.terminate()
    server.wait(timeout=30)
