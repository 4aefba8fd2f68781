"""Stores that cannot take a study, and study folders that cannot be trusted: each ends in one line
naming the URI or path, exit status 2, before Ray starts, with nothing created and nothing lost."""

import json
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import ray
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from processes import one_line, shows_a_stack
from ablation.cli.main import app

pytestmark = pytest.mark.slow  # each test runs real studies under Ray

ABLATE = [sys.executable, "-m", "ablation.cli"]
# Root ignores file permissions; without these two capabilities it obeys them, as any user does.
AS_A_USER = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def write_spec(folder: Path, name: str = "faults", **train) -> Path:
    spec = {"name": name, "model": {"arch": "resnet18"},
            "data": {"image_size": 32, "train_per_class": 4, "val_per_class": 2, "test_per_class": 2},
            "train": {"epochs": 1, "batch_size": 8, **train},
            "search": {"space": {"model.placement": ["none", "layer4"]}}, "resources": {"cpu": 1}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path



@pytest.fixture
def silent_server():
    """A port that accepts connections and never answers, like a server that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held, stop = [], threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for s in held:
        s.close()
    listener.close()


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def run_is_refused_before_ray(tmp_path, uri: str, said: str, *, within: float) -> None:
    """`ablate run` against `uri` exits 2 within `within` seconds saying `said`, before Ray or its storage."""
    start = time.monotonic()
    result = CliRunner().invoke(app, ["run", str(write_spec(tmp_path)), "--tracking-uri", uri,
                                      "--storage", str(tmp_path / "runs")])
    assert time.monotonic() - start < within
    assert result.exit_code == 2, result.output
    assert said in one_line(result.output)
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("server", ["closed", "silent"])
def test_a_tracking_server_that_does_not_answer_is_refused_within_seconds(tmp_path, server, silent_server,
                                                                          own_ray):
    uri = closed_port() if server == "closed" else silent_server
    run_is_refused_before_ray(tmp_path, uri, f"--tracking-uri {uri}: no MLflow server answers there", within=10)


class NotMlflow(BaseHTTPRequestHandler):
    """A web server that is up, answering 200 on /health as many do, but is not MLflow: `answer`
    says what it serves on every other path."""

    answer = "404"

    def do_GET(self) -> None:
        if self.path == "/health" or self.answer == "html":
            self._send(200, "text/html", b"<html><body>another app</body></html>")
        else:
            self._send(404, "text/plain", b"not found")

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def not_mlflow(request):
    """The address of a `NotMlflow` on loopback that answers `request.param` ("404" or "html")."""
    handler = type("Answer", (NotMlflow,), {"answer": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize(("not_mlflow", "answered"),
                         [("404", "answered 404 Not Found"), ("html", "answered 200 OK with text/html")],
                         indirect=["not_mlflow"])
def test_an_address_that_answers_but_is_not_mlflow_is_refused_naming_what_answered(tmp_path, not_mlflow, answered,
                                                                                   own_ray):
    result = CliRunner().invoke(app, ["run", str(write_spec(tmp_path)), "--tracking-uri", not_mlflow,
                                      "--storage", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    message = one_line(result.output)
    assert f"--tracking-uri {not_mlflow}: the server there is not an MLflow tracking server" in message
    assert f"GET /api/2.0/mlflow/experiments/search {answered}" in message
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()


def test_a_real_mlflow_server_passes_the_probe(mlflow_server):
    from ablation.tracking import check_store

    url, _ = mlflow_server
    check_store(url, writing=True)
    check_store(f"{url}/", writing=False)


HOLD_LOCKED = """
import sqlite3, sys
from mlflow.tracking import MlflowClient
MlflowClient(f"sqlite:///{sys.argv[1]}").search_experiments()  # a store with its tables, as a study leaves it
print("ready", flush=True)
sys.stdin.readline()
store = sqlite3.connect(sys.argv[1], isolation_level=None)
store.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()  # held until the test closes stdin
"""


class LockedStore:
    """A SQLite store that another process holds in an exclusive transaction (a tool writing to it,
    or one stopped mid-write) from `lock` until `release`."""

    def __init__(self, db: Path) -> None:
        self.db = db
        db.parent.mkdir()
        self.holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCKED, str(db)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.holder.stdout.readline().strip() == "ready"

    def lock(self) -> "LockedStore":
        self.holder.stdin.write("lock\n")
        self.holder.stdin.flush()
        assert self.holder.stdout.readline().strip() == "locked"
        return self

    def release(self) -> None:
        if self.holder.poll() is None:
            self.holder.stdin.close()
            self.holder.wait(timeout=30)
        self.holder.stdout.close()  # one left to the garbage collector warns in whichever test is running then

    def experiments(self) -> list[str]:
        return sorted(e.name for e in MlflowClient(f"sqlite:///{self.db}").search_experiments())


@pytest.fixture
def store_to_lock(tmp_path):
    store = LockedStore(tmp_path / "store" / "mlflow.db")
    yield store
    store.release()


@pytest.fixture
def locked_store(store_to_lock):
    return store_to_lock.lock()


def test_a_store_another_process_holds_locked_is_refused_within_seconds_before_ray_starts(tmp_path, locked_store,
                                                                                          own_ray):
    uri = f"sqlite:///{locked_store.db}"
    run_is_refused_before_ray(tmp_path, uri, f"another process holds the store {locked_store.db} locked", within=15)

    result = CliRunner().invoke(app, ["report", "faults", "--tracking-uri", uri, "--out", str(tmp_path / "report")])
    assert result.exit_code == 2, result.output
    assert f"another process holds the store {locked_store.db} locked" in one_line(result.output)

    locked_store.release()
    assert locked_store.experiments() == ["Default"]  # nothing was written, and the store reads as before


def test_a_lock_taken_after_the_check_ends_in_the_same_line_when_the_store_opens(store_to_lock, capfd):
    """The driver opens the store while Ray starts, and again for the study's parent run: a lock taken
    by then waits out MLflow's own busy timeout (20 s), then ends in the line `check_store` would say."""
    from ablation.tracking import StoreUnusable, create_store

    uri = f"sqlite:///{store_to_lock.db}"
    create_store(uri)  # the first time: the store opens, as the driver's does
    store_to_lock.lock()
    with pytest.raises(StoreUnusable, match="another process holds the store .* locked"):
        create_store(uri)
    assert "Traceback" not in capfd.readouterr().err


def read_only_store(folder: Path) -> str:
    """An MLflow store with one study's parent run in it, then made read-only."""
    from ablation.tracking import open_study

    store = folder / "store"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    _, parent = open_study(uri, "faults", params={}, spec_yaml="name: faults\n")
    parent.finish()
    for path in [*store.rglob("*"), store]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    return uri


def restore_permissions(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_a_read_only_store_is_refused_before_ray_starts(tmp_path):
    uri = read_only_store(tmp_path)
    before = sorted(p.name for p in (tmp_path / "store").rglob("*"))
    try:
        result = subprocess.run([*AS_A_USER, *ABLATE, "run", str(write_spec(tmp_path)), "--tracking-uri", uri,
                                 "--storage", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    finally:
        restore_permissions(tmp_path / "store")
    assert result.returncode == 2, result.stderr
    assert "read-only" in result.stderr and not shows_a_stack(result.stderr)
    assert str(tmp_path / "store") in one_line(result.stderr)
    assert "Ray" not in result.stderr and not (tmp_path / "runs").exists()
    assert sorted(p.name for p in (tmp_path / "store").rglob("*")) == before


def test_a_report_on_a_read_only_store_writes_its_files_then_says_the_store_was_not_written(tmp_path):
    uri = read_only_store(tmp_path)
    out = tmp_path / "report"
    try:
        result = subprocess.run([*AS_A_USER, *ABLATE, "report", "faults", "--tracking-uri", uri, "--out", str(out)],
                                capture_output=True, text=True, timeout=120)
    finally:
        restore_permissions(tmp_path / "store")
    assert result.returncode == 1, result.stdout + result.stderr
    assert not shows_a_stack(result.stderr)
    assert "could not be written" in one_line(result.stderr) and str(out) in one_line(result.stdout + result.stderr)
    assert (out / "report.md").exists() and (out / "report.html").exists()


def test_resume_with_a_damaged_state_file_names_it(tmp_path):
    folder = tmp_path / "runs" / "faults"
    folder.mkdir(parents=True)
    (folder / "ablate_study.json").write_text('{"spec": {"name": "faults"}, "trac')
    result = CliRunner().invoke(app, ["resume", str(folder)])
    assert result.exit_code == 2, result.output
    assert f"{folder}/ablate_study.json is damaged" in one_line(result.output)


def test_resume_against_a_store_without_the_study_exits_2_and_creates_no_store(tmp_path, own_ray):
    folder = tmp_path / "runs" / "faults"
    folder.mkdir(parents=True)
    missing = tmp_path / "elsewhere" / "mlflow.db"
    spec = yaml.safe_load(write_spec(tmp_path).read_text())
    (folder / "ablate_study.json").write_text(json.dumps({
        "spec": spec, "tracking_uri": f"sqlite:///{missing}", "experiment_id": "1", "parent_run_id": "0" * 32,
        "storage": str(folder), "costs": {}, "trials": []}))
    result = CliRunner().invoke(app, ["resume", str(folder)])
    assert result.exit_code == 2, result.output
    assert str(missing) in one_line(result.output)
    assert not missing.exists() and not missing.parent.exists()
    assert not ray.is_initialized()

    empty = tmp_path / "empty" / "mlflow.db"  # a store that exists but never saw this study
    MlflowClient(f"sqlite:///{empty}").search_experiments()
    result = CliRunner().invoke(app, ["resume", str(folder), "--tracking-uri", f"sqlite:///{empty}"])
    assert result.exit_code == 2 and "has no study run" in one_line(result.output), result.output


class Planted:
    """Whoever unpickles this creates a file: what a crafted tuner.pkl could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_resume_runs_what_is_left_without_unpickling_rays_files(tmp_path, shared_ray):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ["--tracking-uri", uri, "--storage", str(tmp_path / "runs")]
    assert CliRunner().invoke(app, ["run", str(write_spec(tmp_path)), *common]).exit_code == 0
    client = MlflowClient(uri)
    runs = [r for r in client.search_runs([client.get_experiment_by_name("faults").experiment_id])
            if r.data.tags.get("ablate.kind") == "trial"]
    client.set_terminated(runs[0].info.run_id, "KILLED")  # as a driver killed mid-trial leaves it
    marker = tmp_path / "unpickled"
    pickles = list((tmp_path / "runs" / "faults").rglob("*.pkl"))
    assert pickles, "Ray wrote no pickles to plant in"
    for path in pickles:
        path.write_bytes(pickle.dumps(Planted(marker)))

    result = CliRunner().invoke(app, ["resume", str(tmp_path / "runs" / "faults")])
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    runs = [client.get_run(r.info.run_id) for r in runs]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert runs[0].data.tags["ablate.attempts"] == "2"  # the killed trial ran again, in its own run
