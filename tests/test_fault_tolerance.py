"""Studies that survive: a killed trial, a killed driver, a re-run, a diverging trial. Real Ray
processes and real SIGKILLs; the MLflow store is checked for one run per trial and each epoch once."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ablation.cli.main import app
from processes import shows_a_stack, while_driver_runs
from mlflow_runs import epochs_logged, trial_runs

pytestmark = pytest.mark.slow  # each test runs real studies under Ray

ABLATE = [sys.executable, "-m", "ablation.cli"]


def spec_file(tmp_path: Path, name: str, *, epochs: int, placements: list[str], per_class: int = 8, **train) -> Path:
    spec = {
        "name": name,
        "model": {"arch": "resnet18", "attention": "identity_cbam"},
        "data": {"image_size": 32, "train_per_class": per_class, "val_per_class": 4, "test_per_class": 4},
        "train": {"epochs": epochs, "batch_size": 16, "lr": 0.01, **train},
        "search": {"space": {"model.placement": placements}, "seeds": [0]},
        "resources": {"cpu": 1},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path




def wait_for(condition, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError("timed out waiting")


def epochs_done(uri: str, study: str, n: int = 1):
    """A running trial that has logged `n` epochs, once there is one. Epochs are logged before their
    checkpoint is reported, so a trial at epoch 2 has certainly checkpointed epoch 1. Call it once the
    study's state file exists: the store and the experiment exist by then."""
    runs = trial_runs(uri, study)
    return next((r for r in runs if r.info.status == "RUNNING" and len(epochs_logged(uri, r)) >= n), None)


def test_running_a_study_again_runs_only_the_trials_it_has_not_finished(tmp_path, shared_ray):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = spec_file(tmp_path, "again", epochs=1, placements=["none", "layer4"])
    common = ["--tracking-uri", uri, "--storage", str(tmp_path / "runs")]
    assert CliRunner().invoke(app, ["run", str(path), *common]).exit_code == 0
    again = CliRunner().invoke(app, ["run", str(path), *common])
    assert again.exit_code == 0 and "2 of 2 trials had finished" in " ".join(again.output.split())
    more = CliRunner().invoke(app, ["run", str(path), *common, "--set", "search.seeds=[0, 1]"])
    assert more.exit_code == 0 and "2 of 4 trials had finished" in " ".join(more.output.split())

    runs = trial_runs(uri, "again")
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["mlflow.parentRunId"] for r in runs}) == 1  # all under the study's one parent run
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "0", "1", "1"]



def trial_pid(uri: str, study: str) -> int | None:
    """The worker process of the study's one running trial, once it has said (before its first epoch)."""
    running = [r for r in trial_runs(uri, study) if r.info.status == "RUNNING" and "ablate.pid" in r.data.tags]
    return int(running[0].data.tags["ablate.pid"]) if running else None


def freeze_mid_training(pid: int, checkpoint: Path, epochs: int) -> int:
    """Stop the trial's worker (SIGSTOP) and return the epoch of its stored checkpoint, asserting the trial
    is mid-training. Stopped, it can neither store a newer checkpoint nor log an epoch, so what is read
    here is what the kill will leave. A trial logs epoch k + 2 only once checkpoint k + 1 is stored, so a
    stored checkpoint k <= epochs - 2 means its last epoch is not logged: it has not finished."""
    os.kill(pid, signal.SIGSTOP)
    stored = torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"] if checkpoint.exists() else None
    if stored is None or stored > epochs - 2:
        os.kill(pid, signal.SIGCONT)
        raise AssertionError(f"the trial outran the test: checkpoint of epoch {stored} of {epochs}")
    return stored


def test_a_trial_killed_mid_study_resumes_from_its_checkpoint_in_the_same_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    epochs = 4
    path = spec_file(tmp_path, "killed", epochs=epochs, placements=["layer4"], per_class=40)
    folder, log = tmp_path / "runs" / "killed", tmp_path / "driver.log"
    with log.open("w") as out:  # a file, not a pipe nobody reads while waiting: a full pipe would stall the driver
        driver = subprocess.Popen([*ABLATE, "run", str(path), "--tracking-uri", uri, "--storage",
                                   str(tmp_path / "runs")], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # The study's state is saved once its store and parent run exist: reading the store before that
        # would race the driver creating it.
        while_driver_runs(driver, log, lambda: (folder / "ablate_study.json").exists())
        pid = while_driver_runs(driver, log, lambda: trial_pid(uri, "killed"))
        # Frequent polls, so the trial is frozen within a fraction of its second epoch of the first checkpoint.
        checkpoint = while_driver_runs(driver, log, lambda: next((folder / "checkpoints").glob("*.pt"), None),
                                       every=0.02)
        stored = freeze_mid_training(pid, checkpoint, epochs)
        os.kill(pid, signal.SIGKILL)
        driver.wait(timeout=240)
    finally:
        if driver.poll() is None:  # the test failed: take the driver's Ray down with it
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    output = log.read_text()
    assert driver.returncode == 0, output
    [run] = trial_runs(uri, "killed")
    assert run.info.status == "FINISHED" and run.data.tags["ablate.attempts"] == "2", output
    assert int(run.data.tags["ablate.resumed_from_epoch"]) == stored
    assert run.data.tags["ablate.last_failure"] == "lost_worker"
    assert epochs_logged(uri, run) == list(range(1, epochs + 1))  # each epoch logged once, across both attempts


def test_sigterm_stops_a_study_as_ctrl_c_does(tmp_path):
    """What a scheduler, `kill` or `docker stop` sends. Ray's own handler exited mid-step: rc 134, a stack
    dump, and the parent run left RUNNING."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = spec_file(tmp_path, "termed", epochs=3, placements=["none", "layer4"], per_class=30)
    folder, log = tmp_path / "runs" / "termed", tmp_path / "driver.log"
    with log.open("w") as out:
        driver = subprocess.Popen([*ABLATE, "run", str(path), "--tracking-uri", uri, "--storage",
                                   str(tmp_path / "runs")], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while_driver_runs(driver, log, lambda: (folder / "ablate_study.json").exists())
        while_driver_runs(driver, log, lambda: epochs_done(uri, "termed"))
        driver.send_signal(signal.SIGTERM)
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    output = log.read_text()
    assert driver.returncode == 130, output
    assert not shows_a_stack(output) and f"ablate resume {folder}" in " ".join(output.split()), output
    parent = MlflowClient(uri).get_run(trial_runs(uri, "termed")[0].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "KILLED"  # as an interrupted study's: `ablate resume` continues it


def test_a_study_whose_driver_was_killed_is_completed_by_resume(tmp_path, shared_ray):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = spec_file(tmp_path, "orphan", epochs=3, placements=["none", "layer3", "layer4"], per_class=30)
    driver = subprocess.Popen([*ABLATE, "run", str(path), "--tracking-uri", uri, "--storage", str(tmp_path / "runs")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: (tmp_path / "runs" / "orphan" / "ablate_study.json").exists())
        wait_for(lambda: epochs_done(uri, "orphan"))
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
        driver.wait()
    assert any(r.info.status == "RUNNING" for r in trial_runs(uri, "orphan"))

    result = CliRunner().invoke(app, ["resume", str(tmp_path / "runs" / "orphan")])
    assert result.exit_code == 0, result.output
    assert re.search(r"orphan: resuming; [0-2] of its trials had ended and stay as they are", result.output)
    runs = trial_runs(uri, "orphan")
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["ablate.trial_id"] for r in runs}) == 3  # one run per trial
    assert all(epochs_logged(uri, r) == [1, 2, 3] for r in runs)
    parent = MlflowClient(uri).get_run(runs[0].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FINISHED"


def test_a_diverging_trial_is_recorded_as_such_and_not_retried(tmp_path, shared_ray):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = spec_file(tmp_path, "diverge", epochs=2, placements=["none"], lr=1e9, momentum=0.99)
    result = CliRunner().invoke(app, ["run", str(path), "--tracking-uri", uri, "--storage", str(tmp_path / "runs")])
    assert result.exit_code == 1 and "diverged" in result.output
    [run] = trial_runs(uri, "diverge")
    assert run.info.status == "FAILED" and run.data.tags["ablate.failure"] == "divergence"
    assert run.data.tags["ablate.attempts"] == "1"


def test_resume_of_a_folder_that_is_not_a_study_exits_2(tmp_path):
    result = CliRunner().invoke(app, ["resume", str(tmp_path)])
    assert result.exit_code == 2 and "is not a study folder" in result.output
