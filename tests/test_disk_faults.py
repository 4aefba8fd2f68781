"""Disks that fail a running study: a --storage with no room for a checkpoint, an MLflow store made
read-only or deleted while trials run. No trial is retried on them (every retry, and every later trial,
would fail alike): the study stops at once with one line naming where and what, exit status 3, no
traceback, what was stored kept, and `ablate resume` continues it once the disk is fixed."""

import io
import logging
import os
import re
import signal
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from rich.console import Console

from ablation.cli.progress import StudyProgress
from processes import one_line, shows_a_stack, while_driver_runs
from mlflow_runs import epochs_logged, trial_runs

ABLATE = [sys.executable, "-m", "ablation.cli"]
# Root ignores file permissions; without these two capabilities it obeys them, as any user does.
AS_A_USER = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def spec_file(folder: Path, name: str, *, epochs: int, per_class: int = 4) -> Path:
    spec = {"name": name, "model": {"arch": "resnet18"},
            "data": {"image_size": 16, "train_per_class": per_class, "val_per_class": 2, "test_per_class": 2},
            "train": {"epochs": epochs, "batch_size": 8},
            "search": {"space": {"model.placement": ["none", "layer4"]}}, "resources": {"cpu": 1}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path



def test_a_retried_trial_does_not_count_its_epochs_twice():
    """Tune retries a failed trial from its checkpoint or from the start: the epochs it trains again were
    counted once already (a full disk's retries read "24/16 epochs")."""
    view = StudyProgress(Console(file=io.StringIO()), trials=1, epochs=3, metric="val_macro_f1")
    view.trial_started("t1", "placement=none,seed=0")
    view.epoch("t1", 1, 0.5)
    view.epoch("t1", 2, 0.6)
    view.trial_started("t1", "placement=none,seed=0")  # retried from the start
    view.epoch("t1", 1, 0.5)
    assert view.finished == 2
    view.epoch("t1", 2, 0.6)
    view.epoch("t1", 3, 0.7)
    view.trial_finished("t1", ok=True)
    assert view.finished == 3 and view.bar.tasks[0].completed == 3


def test_tune_failing_to_save_the_studys_state_for_want_of_space_stops_it_without_a_traceback(tmp_path, capfd):
    """Tune logs each failed sync of its state to the storage with a traceback, and goes on: every later
    checkpoint would fail too. Its log is read as the study's cue to stop, and not printed."""
    from ablation import tracking
    from ablation.driver.halts import Halted, Halts
    from ablation.driver.state import StudyOutcome
    from ray.tune.stopper import NoopStopper

    uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "runs" / "full")
    experiment_id, parent = tracking.open_study(uri, "full", params={}, spec_yaml="name: full\n")
    halts = Halts(NoopStopper(), storage)
    with halts:
        try:
            raise OSError(28, "Error writing bytes to file. Detail: [errno 28] No space left on device")
        except OSError:  # as Ray's syncer logs it
            logging.getLogger("ray.train._internal.syncer").warning(
                f"Last sync command failed with the following error:\n{traceback.format_exc()}")
    assert "Traceback" not in capfd.readouterr().err
    assert halts.stop_all()
    with pytest.raises(Halted) as stopped:
        halts.check(parent, StudyOutcome(uri, experiment_id, parent.run_id, storage))
    assert str(stopped.value) == (f"the study stopped: no space left on {tmp_path / 'runs'} (the study's --storage) "
                                  "while Ray Tune saved the study's state; trials that finished are kept; free space "
                                  f"there, then continue with:  ablate resume {storage}")
    assert MlflowClient(uri).get_run(parent.run_id).info.status == "KILLED"


@pytest.fixture
def small_disk(tmp_path):
    """A 30 MB file system, too small for one ResNet-18 checkpoint (weights and momentum, ~90 MB)."""
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(where)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield where
    subprocess.run(["umount", "--lazy", str(where)], check=False)  # lazy: Ray's helpers may still hold it


@pytest.mark.slow
def test_a_storage_with_no_room_for_a_checkpoint_stops_the_study_at_once(tmp_path, small_disk):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([*ABLATE, "run", str(spec_file(tmp_path, "full", epochs=2)), "--tracking-uri", uri,
                           "--storage", str(small_disk)], capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 3, output
    assert not shows_a_stack(output), output
    assert re.search(rf"the study stopped: no space left on {small_disk} \(the study's --storage\) while saving the "
                     rf"checkpoint of trial placement=\w+,seed=0; trials that finished are kept; free space there, "
                     rf"then continue with: ablate resume {small_disk}/full", one_line(output)), output
    runs = trial_runs(uri, "full")  # a trial stopped before it started has none
    assert all(r.data.tags.get("ablate.attempts", "1") == "1" for r in runs)  # none retried
    assert all(r.info.status != "RUNNING" for r in runs)
    full = [r for r in runs if "no space left" in r.data.tags.get("ablate.error", "")]
    assert full and all(r.info.status == "FAILED" and epochs_logged(uri, r) == [1] for r in full)  # its epoch kept
    parent = MlflowClient(uri).get_run(runs[0].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "KILLED"  # as an interrupted study's: `ablate resume` continues it
    assert not list(small_disk.rglob("*.partial"))  # a half-written checkpoint would hold the room it took


def restore_permissions(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)



def an_epoch_logged(uri: str, study: str) -> bool:
    """A trial has logged an epoch and is still training. Call it once the study's state file exists:
    the store and the experiment exist by then."""
    return any(r.info.status == "RUNNING" and epochs_logged(uri, r) for r in trial_runs(uri, study))


def break_store(store: Path, how: str) -> None:
    if how == "read-only":
        for path in [*store.rglob("*"), store]:
            path.chmod(0o555 if path.is_dir() else 0o444)
    else:
        (store / "mlflow.db").unlink()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["read-only", "deleted"])
def test_a_store_that_fails_mid_study_stops_it_in_one_line(tmp_path, how):
    store = tmp_path / "store"
    store.mkdir()
    db, uri = store / "mlflow.db", f"sqlite:///{store / 'mlflow.db'}"
    folder, log = tmp_path / "runs" / "broken", tmp_path / "driver.log"
    path = spec_file(tmp_path, "broken", epochs=3, per_class=30)
    with log.open("w") as out:  # a file, not a pipe nobody reads while waiting: a full pipe would stall the driver
        driver = subprocess.Popen([*AS_A_USER, *ABLATE, "run", str(path), "--tracking-uri", uri, "--storage",
                                   str(tmp_path / "runs")], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while_driver_runs(driver, log, lambda: (folder / "ablate_study.json").exists())
        while_driver_runs(driver, log, lambda: an_epoch_logged(uri, "broken"))
        logged = {r.info.run_id: epochs_logged(uri, r) for r in trial_runs(uri, "broken")}
        break_store(store, how)
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:  # the test failed: take the driver's Ray down with it
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        restore_permissions(store)
    output = log.read_text()
    assert driver.returncode == 3, output
    assert not shows_a_stack(output), output
    assert not list(folder.rglob("error.txt"))  # no trial failed in Tune's eyes, so none was retried
    if how == "deleted":
        assert f"the study stopped: the MLflow store {db} was deleted or moved while the study ran; its runs went " \
               f"with it, the trials' checkpoints are kept; put it back, then continue with: ablate resume " \
               f"{folder}" in one_line(output), output
        assert not db.exists()  # no new, empty store in its place
        return
    assert f"the study stopped: the MLflow store {db} can no longer be written (attempt to write a readonly " \
           f"database); trials that finished are kept; when it can be written again, continue with: ablate " \
           f"resume {folder}" in one_line(output), output
    for run_id, epochs in logged.items():  # what was stored stays
        assert epochs_logged(uri, MlflowClient(uri).get_run(run_id))[:len(epochs)] == epochs

    resumed = subprocess.run([*ABLATE, "resume", str(folder)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    runs = trial_runs(uri, "broken")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert all(epochs_logged(uri, r) == [1, 2, 3] for r in runs)  # each epoch once, across both drivers
