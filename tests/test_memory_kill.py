"""A worker Ray's memory monitor kills is a trial failure, never the driver's end (issue 24).

Real Ray, real kills: the driver runs in a subprocess whose Ray has its memory threshold set a few GB
above what the machine uses now, and one trial worker allocates memory until the monitor kills it (a
`sitecustomize` on the workers' path: in its start-up, or once its first checkpoint is stored). A dead
relay actor (the live view's batch counts) is killed with `ray.kill` mid-study. Whatever else Tune raises
ends the run in one line with the resume command; trials that failed alike are said in one line."""

import os
import signal
import subprocess
import sys
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray
import typer
import yaml
from mlflow.tracking import MlflowClient
from rich.console import Console
from typer.testing import CliRunner

from ablation.cli import main as cli

from ablation.driver import progress, study
from ablation.cli.main import app
from processes import shows_a_stack
from mlflow_runs import epochs_logged, trial_runs

# Real studies under Ray. The tests that kill by memory run alone: Ray's memory monitor, and the size of the
# hog, go by the whole machine's memory, so another test's trials would be in their sights. The others share it.

ABLATE = [sys.executable, "-m", "ablation.cli"]
# Above what a study here adds to the machine's use (driver, Ray, two trial workers: 2.7 GB at its peak,
# measured), so only the worker that allocates crosses it; others' use may grow by ~3.8 GB meanwhile.
MARGIN = 6.5 * 2**30

# Imported by every Python process Ray starts (PYTHONPATH): a trial worker (one importing MLflow to open its
# trial's run, or ablation.engine to wait for its checkpoint) allocates until killed, the first to claim the
# flag file only. Allocating `b"\1" * n` touches each page
# and holds the GIL throughout, so the trial stalls where it is until Ray's monitor kills it.
HOG = '''
import os, sys, threading, time

FLAG, WHEN = os.environ.get("ABLATE_TEST_HOG_FLAG"), os.environ.get("ABLATE_TEST_HOG_WHEN", "")


def hog():
    try:
        os.close(os.open(FLAG, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    available = next(int(l.split()[1]) * 1024 for l in open("/proc/meminfo") if l.startswith("MemAvailable:"))
    global held
    held = b"\\1" * max(0, min(available - 2**30, 16 * 2**30))
    time.sleep(60)  # in the start-up: it never ends (unless nothing killed it, which the test then says)


def after_checkpoint():
    while not (os.path.isdir(WHEN) and any(n.endswith(".pt") for n in os.listdir(WHEN))):
        time.sleep(0.02)
    hog()


class Finder:
    def find_spec(self, name, path=None, target=None):
        # In its start-up: once Tune has handed the worker its trial, which imports MLflow to open its run.
        # (Hogging while the actor's class loads, before any trial is its, Tune absorbs: it places the
        # trial on the other actor, and no trial fails.) Otherwise from when the trial's code loads.
        if name == ("mlflow" if WHEN == "start-up" else "ablation.engine"):
            sys.meta_path.remove(self)
            if WHEN == "start-up":
                hog()
            else:
                threading.Thread(target=after_checkpoint, daemon=True).start()
        return None


if FLAG and sys.argv and sys.argv[0].endswith("default_worker.py"):
    sys.meta_path.insert(0, Finder())
'''


def spec_file(tmp_path: Path, name: str, *, epochs: int, placements: list[str], max_failures: int,
              per_class: int = 8) -> Path:
    spec = {"name": name, "model": {"arch": "resnet18", "attention": "identity_cbam"},
            "data": {"image_size": 32, "train_per_class": per_class, "val_per_class": 4, "test_per_class": 4},
            "train": {"epochs": epochs, "batch_size": 16, "lr": 0.01},
            "search": {"space": {"model.placement": placements}, "seeds": [0]},
            "resources": {"cpu": 1, "max_failures": max_failures}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def memory_kill_env(tmp_path: Path, when: str) -> dict[str, str]:
    """The driver's environment: Ray's threshold at today's use plus `MARGIN`, checked every 100 ms, and
    the hook that makes one trial worker cross it (`when`: "start-up", or a folder its checkpoint goes to)."""
    info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in open("/proc/meminfo")}
    total, used = info["MemTotal"], info["MemTotal"] - info["MemAvailable"]
    threshold = (used + MARGIN) / total
    if threshold > 0.9:
        pytest.skip(f"the machine uses {used / 2**30:.1f} of {total / 2**30:.1f} GB: no room to set a threshold")
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(HOG)
    path = os.pathsep.join(p for p in (str(tmp_path / "hook"), os.environ.get("PYTHONPATH")) if p)
    return os.environ | {"RAY_memory_usage_threshold": f"{threshold:.4f}", "RAY_memory_monitor_refresh_ms": "100",
                         "PYTHONPATH": path, "ABLATE_TEST_HOG_FLAG": str(tmp_path / "hogged"),
                         "ABLATE_TEST_HOG_WHEN": when}


def ablate(*args: str, env: dict[str, str] | None = None, cgroup: Path | None = None) -> tuple[int, str]:
    """`ablate ARGS` in its own process group (with the Ray it starts), and in `cgroup` if given: its exit
    status and output."""
    join = (lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid()))) if cgroup else None
    driver = subprocess.Popen([*ABLATE, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True, preexec_fn=join)
    try:
        output, _ = driver.communicate(timeout=240)
    finally:
        if driver.poll() is None:  # it hung: take its Ray down with it
            os.killpg(driver.pid, signal.SIGKILL)
            driver.communicate()
    return driver.returncode, output




@pytest.mark.slow
@pytest.mark.alone  # kills by memory
def test_a_trial_killed_for_memory_in_its_start_up_fails_alone_in_one_line_and_resume_finishes_it(tmp_path,
                                                                                                     own_ray):
    uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "runs"
    path = spec_file(tmp_path, "oom", epochs=1, placements=["none", "layer4"], max_failures=0)
    status, output = ablate("run", str(path), "--tracking-uri", uri, "--storage", str(storage),
                            env=memory_kill_env(tmp_path, "start-up"))
    assert (tmp_path / "hogged").exists(), output
    assert status == 1, output  # trials failed for good; the study went on to its end
    assert not shows_a_stack(output) and "Caught unexpected exception" not in output, output
    [line] = [line for line in output.splitlines() if "memory monitor" in line]
    assert "failed: killed by Ray's memory monitor at " in line and "% of " in line, output
    assert f"`ablate resume {storage / 'oom'}` retries" in line, output

    runs = trial_runs(uri, "oom")
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert failed, output  # the killed trial's run (the driver made it: the trial never got to)
    for run in failed:
        assert run.data.tags["ablate.failure"] == "oom"
        assert "killed due to the node running low on memory" in run.data.tags["ablate.error"]
        assert "exceeded threshold" in run.data.tags["ablate.error"]  # Ray's usage and threshold
        assert run.data.params["arm"] in ("placement=none", "placement=layer4")

    resumed = CliRunner().invoke(app, ["resume", str(storage / "oom")])  # on this process's Ray, no threshold
    assert resumed.exit_code == 0, resumed.output
    runs = trial_runs(uri, "oom")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs), resumed.output
    assert all("params_total" in r.data.metrics for r in runs)  # the retry measured the model the kill did not
    killed = {r.info.run_id for r in failed}
    assert all(r.data.tags["ablate.last_failure"] == "oom" for r in runs if r.info.run_id in killed)


@pytest.mark.slow
@pytest.mark.alone  # kills by memory
def test_a_trial_killed_for_memory_mid_training_is_retried_from_its_checkpoint(tmp_path, own_ray):
    uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "runs"
    path = spec_file(tmp_path, "oom_retry", epochs=3, placements=["layer4"], max_failures=2, per_class=24)
    status, output = ablate("run", str(path), "--tracking-uri", uri, "--storage", str(storage),
                            env=memory_kill_env(tmp_path, str(storage / "oom_retry" / "checkpoints")))
    assert (tmp_path / "hogged").exists(), output
    assert status == 0, output
    assert not shows_a_stack(output) and "Caught unexpected exception" not in output, output
    [line] = [line for line in output.splitlines() if "memory monitor" in line]
    assert "1 trial was killed by Ray's memory monitor at " in line and "last checkpoint" in line, output

    [run] = trial_runs(uri, "oom_retry")
    assert run.info.status == "FINISHED", output
    assert run.data.tags["ablate.last_failure"] == "oom"
    assert int(run.data.tags["ablate.attempts"]) >= 2 and int(run.data.tags["ablate.resumed_from_epoch"]) >= 1
    assert "ablate.failure" not in run.data.tags  # dropped when the retry went on
    assert epochs_logged(uri, run) == [1, 2, 3]  # each epoch once, across the attempts


@pytest.fixture
def memory_cgroup():
    """A memory cgroup (v1, as on this machine) of 5 GB under this process's own: the driver, its Ray and
    two trial workers hold about 3.6 GB, so only the worker that allocates makes the kernel kill."""
    line = next((l for l in Path("/proc/self/cgroup").read_text().splitlines() if l.split(":")[1] == "memory"), None)
    if line is None:
        pytest.skip("no cgroup v1 memory controller here to confine the study to")
    group = Path("/sys/fs/cgroup/memory" + line.split(":", 2)[2]) / f"ablate-test-{os.getpid()}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(5 * 2**30))
    except OSError as err:
        pytest.skip(f"cannot make a memory cgroup here ({err})")
    yield group
    group.rmdir()


@pytest.mark.slow
@pytest.mark.alone  # kills by memory
def test_a_trial_the_kernels_oom_killer_kills_is_recorded_as_oom_and_retried_from_its_checkpoint(
        tmp_path, memory_cgroup, own_ray):
    """Before, a worker the kernel killed (Ray's monitor off, or too slow) was tagged `lost_worker`, as if its
    node had gone, with Ray's tracebacks on the terminal."""
    uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "runs"
    path = spec_file(tmp_path, "kernel_oom", epochs=3, placements=["layer4"], max_failures=2, per_class=24)
    env = memory_kill_env(tmp_path, str(storage / "kernel_oom" / "checkpoints")) | {"RAY_memory_monitor_refresh_ms": "0"}
    status, output = ablate("run", str(path), "--tracking-uri", uri, "--storage", str(storage), env=env,
                            cgroup=memory_cgroup)
    assert (tmp_path / "hogged").exists(), output
    assert status == 0, output
    assert not shows_a_stack(output), output
    lines = [line for line in output.splitlines() if "OOM killer" in line]
    assert len(lines) == 1, output
    [line] = lines
    assert "1 trial was killed by the kernel's OOM killer (its container's limit of 5.0 GB ran out)" in line, output
    assert "last checkpoint" in line, output
    [run] = trial_runs(uri, "kernel_oom")
    assert run.info.status == "FINISHED", output
    assert run.data.tags["ablate.last_failure"] == "oom"
    assert epochs_logged(uri, run) == [1, 2, 3]


@pytest.mark.slow
def test_a_dead_relay_actor_only_stops_the_batch_counts(tmp_path, monkeypatch, own_ray):
    started = progress.ProgressCallback.on_trial_start

    def kill_the_relay(self, *args, **kwargs):  # as Ray's memory monitor might, once a trial runs
        if self.relay is not None:
            ray.kill(self.relay)
        started(self, *args, **kwargs)

    monkeypatch.setattr(progress.ProgressCallback, "on_trial_start", kill_the_relay)
    path = spec_file(tmp_path, "relay", epochs=2, placements=["none"], max_failures=0)
    result = CliRunner().invoke(app, ["run", str(path), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                                      "--storage", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    [run] = trial_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "relay")
    assert run.info.status == "FINISHED"


@pytest.mark.slow
def test_ray_failing_mid_study_is_one_line_with_the_resume_command_and_exit_3(tmp_path, monkeypatch, own_ray):
    class Failing:  # Tune raising out of fit, as it did for a memory kill before Ray's error was handled
        def fit(self):
            raise RuntimeError("Caught unexpected exception: something Ray did not expect\nand 200 lines more")

    monkeypatch.setattr(study, "_tuner", lambda *args, **kwargs: Failing())
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = spec_file(tmp_path, "stopped", epochs=1, placements=["none"], max_failures=0)
    result = CliRunner().invoke(app, ["run", str(path), "--tracking-uri", uri, "--storage", str(tmp_path / "runs")])
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output and "200 lines" not in result.output
    [line] = [line for line in result.output.splitlines() if "error:" in line]
    assert "Ray stopped the study (RuntimeError: Caught unexpected exception: something Ray did not expect)" in line
    assert f"ablate resume {tmp_path / 'runs' / 'stopped'}" in line
    client = MlflowClient(uri)
    [parent] = client.search_runs([client.get_experiment_by_name("stopped").experiment_id])
    assert parent.info.status == "KILLED"  # as an interrupted study's: a resume continues it


def test_trials_that_failed_alike_are_one_line(monkeypatch):
    out = StringIO()
    monkeypatch.setattr(cli, "errors", Console(file=out, width=80))
    monkeypatch.setattr(cli, "_print_ranking", lambda spec, outcome: None)
    killed = "killed by Ray's memory monitor at 95% of 23.5 GB"
    outcome = SimpleNamespace(race=None, stopped_early={}, diverged=[], unfinished=[], tracking_uri="sqlite:///m.db",
                              errors={"a,seed=0": killed, "b,seed=0": killed, "c,seed=1": "ValueError: no"},
                              memory_kills={"a,seed=0": killed, "b,seed=0": killed, "d,seed=0": killed})
    with pytest.raises(typer.Exit) as exit_:
        cli._conclude(SimpleNamespace(name="s", spec=SimpleNamespace(name="s")), outcome, resume_hint="ablate resume /x/s")
    assert exit_.value.exit_code == 1
    assert out.getvalue().splitlines() == [
        "1 trial was killed by Ray's memory monitor at 95% of 23.5 GB and went on from its last checkpoint "
        "(d,seed=0; ablate.last_failure=oom)",
        f"2 trials failed: {killed}; see their runs in MLflow (a,seed=0; b,seed=0); `ablate resume /x/s` retries them",
        "1 trial failed: ValueError: no; see its run in MLflow (c,seed=1); `ablate resume /x/s` retries it"]
