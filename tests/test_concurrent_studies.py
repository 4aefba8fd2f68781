"""One driver per study: a second `ablate run` or `ablate resume` of a running study is refused and
names the first, a dead driver's lease is taken over, and a new store is created by one process at a
time. Real drivers, a real MLflow server, real SIGKILLs."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ablation.cli.main import app
from ablation.tracking.lease import StudyBusy
from ablation.tracking import hold_study
from processes import shows_a_stack

pytestmark = pytest.mark.slow  # each test runs real studies under Ray

ABLATE = [sys.executable, "-m", "ablation.cli"]


def wait_for(condition, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def lease_holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) or None
    except (OSError, ValueError):
        return None


def one_trial_spec(folder: Path, name: str, *, train_per_class: int, epochs: int) -> Path:
    """A study of one ResNet-18 trial at 32 px, long enough to be caught running."""
    spec = {"name": name, "model": {"arch": "resnet18"},
            "data": {"image_size": 32, "train_per_class": train_per_class, "val_per_class": 4, "test_per_class": 4},
            "train": {"epochs": epochs, "batch_size": 16}, "search": {"space": {"model.placement": ["layer4"]}},
            "resources": {"cpu": 1}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_second_run_or_resume_of_a_running_study_exits_2_naming_the_first(tmp_path, own_ray):
    db = tmp_path / "s.db"
    uri = f"sqlite:///{db}"
    path = one_trial_spec(tmp_path, "twice", train_per_class=30, epochs=2)
    common = ["--tracking-uri", uri, "--storage", str(tmp_path / "runs")]
    first = subprocess.Popen([*ABLATE, "run", str(path), *common], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: (tmp_path / "runs" / "twice" / "ablate_study.json").exists())
        assert lease_holder(db.parent / "s.db.locks" / "study-twice.lock")["pid"] == first.pid

        second = CliRunner().invoke(app, ["run", str(path), *common])
        resumed = CliRunner().invoke(app, ["resume", str(tmp_path / "runs" / "twice")])
        output, _ = first.communicate(timeout=240)
    finally:
        first.kill()
    for refused in (second, resumed):
        text = " ".join(refused.output.split())
        assert refused.exit_code == 2, refused.output
        assert "already running" in text and f"pid {first.pid} on {socket.gethostname()}" in text
    assert not ray.is_initialized()  # refused before Ray started
    assert first.returncode == 0, output

    client = MlflowClient(uri)
    [run] = [r for r in client.search_runs([client.get_experiment_by_name("twice").experiment_id])
             if r.data.tags.get("ablate.kind") == "trial"]
    assert run.info.status == "FINISHED" and run.data.tags["ablate.attempts"] == "1"
    assert "ablate.last_failure" not in run.data.tags
    for metric in ("train_loss", "test_accuracy"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
        assert len(steps) == len(set(steps)), f"{metric} logged twice: steps {steps}"


CREATE = """
import sys, time
from ablation.tracking import open_study
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
open_study(sys.argv[1], sys.argv[3], params={}, spec_yaml="name: x")
"""


def test_drivers_that_create_a_new_store_at_the_same_moment_all_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    start = time.time() + 4  # every process has imported MLflow by then
    creators = [subprocess.Popen([sys.executable, "-c", CREATE, uri, str(start), f"study{i}"],
                                 stderr=subprocess.PIPE, text=True) for i in range(4)]
    errors = [c.communicate(timeout=120)[1] for c in creators]  # each read to its end, so each pipe is closed
    failures = [error for c, error in zip(creators, errors) if c.returncode]
    assert not failures, failures[0]
    assert {e.name for e in MlflowClient(uri).search_experiments()} >= {f"study{i}" for i in range(4)}


HOLD = """
import sys, time
from ablation.tracking import hold_study
with hold_study(sys.argv[1], "shared", ttl=float(sys.argv[2])):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_server_lease_holds_while_its_driver_lives_and_is_taken_over_the_moment_it_dies(mlflow_server):
    url, _ = mlflow_server
    ttl = 3.0
    # As a context, so its pipe is closed: one left to the garbage collector warns in whichever test is running
    # then, and fails it if that test fails on any warning (tests/test_explain.py's figure test did).
    with subprocess.Popen([sys.executable, "-c", HOLD, url, str(ttl)], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout.readline().strip() == "held"
            time.sleep(2 * ttl)  # well past one ttl: only its heartbeat keeps the lease
            with pytest.raises(StudyBusy, match=f"pid {holder.pid} on {socket.gethostname()}"):
                with hold_study(url, "shared", ttl=ttl):
                    pass
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait()
            # On the machine it ran on, a dead holder is seen at once: no heartbeat to wait out, however long
            # the lease's ttl (a holder elsewhere lapses with its heartbeat: tests/test_lease.py).
            with hold_study(url, "shared", ttl=600):
                pass
        finally:
            holder.kill()


def test_a_local_lease_is_free_the_moment_its_holder_is_killed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with subprocess.Popen([sys.executable, "-c", HOLD, uri, "30"], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(StudyBusy, match=f"pid {holder.pid}"):
                with hold_study(uri, "shared"):
                    pass
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait()
            with hold_study(uri, "shared"):  # no waiting for a heartbeat to lapse
                pass
        finally:
            holder.kill()


def test_a_driver_suspended_past_the_ttl_finds_its_study_taken_over_and_stops_writing_nothing(tmp_path, mlflow_server):
    """SIGSTOP the driver after its first epoch (its worker blocks at its next report, so the study cannot end
    meanwhile), let a second take the study over, SIGCONT the first. Before, both exited 0 and the
    trial's run held each epoch twice; now the first stops, exit 4, naming the new holder."""
    url, _ = mlflow_server
    path = one_trial_spec(tmp_path, "frozen", train_per_class=40, epochs=3)
    ttl = 4.0
    env = os.environ | {"ABLATE_LEASE_TTL": str(ttl)}
    folder = tmp_path / "runs" / "frozen"
    first = subprocess.Popen([*ABLATE, "run", str(path), "--tracking-uri", url, "--storage", str(tmp_path / "runs")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    client = MlflowClient(url)

    def trial_run():
        experiment = client.get_experiment_by_name("frozen")
        runs = experiment and [r for r in client.search_runs([experiment.experiment_id])
                               if r.data.tags.get("ablate.kind") == "trial"]
        return runs[0] if runs else None

    try:
        wait_for(lambda: first.poll() is not None or (run := trial_run()) and client.get_metric_history(
            run.info.run_id, "train_loss"), 180)
        assert first.poll() is None, first.communicate()[0]
        first.send_signal(signal.SIGSTOP)
        # Past the ttl since its last heartbeat, which came before the stop. (Waiting on the second driver's
        # start-up instead failed on a quick machine: it read the lease within 4 s and, rightly, refused.)
        time.sleep(ttl + 1)
        second = subprocess.run([*ABLATE, "resume", str(folder)], capture_output=True, text=True, env=env,
                                timeout=300)
        first.send_signal(signal.SIGCONT)
        output, _ = first.communicate(timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
        first.kill()
    assert second.returncode == 0, second.stdout + second.stderr
    text = " ".join(output.split())
    assert first.returncode == 4, output
    # The second driver finished before the first woke, so the record it names is gone.
    assert "was taken over" in text and "wrote nothing more" in text, output
    # Its trial found the study taken over too. Failing, it had left Ray an error nobody fetched, printed
    # as 35 lines of a worker's stack ("Unhandled error", with no "Traceback" line) above the one line.
    assert not shows_a_stack(text), output
    run = trial_run()
    assert run.info.status == "FINISHED"
    for metric in ("train_loss", "val_macro_f1"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
        assert sorted(steps) == [1, 2, 3], f"{metric} at steps {steps}"
