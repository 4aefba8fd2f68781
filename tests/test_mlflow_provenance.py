"""MLflow the way its users expect: system metrics on every trial, where the code came from, the data
as a dataset input, an experiment description, a parent run with the study's own settings and its
outcome, and a link that opens the study grouped by arm. All against a real SQLite store in tmp_path
(what is logged, worked out without one, is test_mlflow_logged_values.py's)."""

from __future__ import annotations

import json
import math
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from scipy import stats

from ablation import tracking

from ablation.cli import help as cli_help
from ablation.data.digest import data_digest, digests
from ablation.core import DataSpec
from ablation.driver.study import study_outcome
from ablation.tracking import system_metrics


@pytest.fixture(scope="module")
def _empty_store(tmp_path_factory) -> Path:
    """A new store's tables take MLflow seconds to create: once per module, copied into each test."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def store(tmp_path, _empty_store) -> str:
    shutil.copy(_empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _study(uri: str, name: str = "s", **kwargs):
    return tracking.open_study(uri, name, params={}, spec_yaml=f"name: {name}\n", **kwargs)


def _trial(uri: str, experiment_id: str, parent: tracking.TrackedRun, trial_id: str = "t0") -> tracking.TrialRun:
    return tracking.open_trial(uri, experiment_id, parent.run_id, name=trial_id, trial_id=trial_id,
                               params={"arm": "a", "seed": 0})


def _start(opened: tracking.TrialRun) -> None:
    opened.start(node_id="node", pid=1, device="cpu", gpu_ids=[], resumed_from_epoch=0)


# ------------------------------------------------------------------------------------ system metrics

def _writers(monkeypatch) -> list[tuple[str, set[str]]]:
    """Each `log_batch` from now on, as (the thread that made it, the kinds of entity it wrote)."""
    writers = []
    log_batch = MlflowClient.log_batch

    def counted(self, run_id, metrics=(), params=(), tags=(), **kwargs):
        kinds = {kind for kind, items in (("metrics", metrics), ("params", params), ("tags", tags)) if items}
        writers.append((threading.current_thread().name, kinds))
        return log_batch(self, run_id, metrics, params, tags, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", counted)
    return writers


def _trial_and_its_writes(uri: str, monkeypatch) -> tuple[tracking.TrialRun, list[tuple[str, set[str]]]]:
    experiment_id, parent = _study(uri)
    return _trial(uri, experiment_id, parent), _writers(monkeypatch)


def test_a_trial_shorter_than_one_interval_logs_system_metrics_written_off_the_trials_own_path(
        store, monkeypatch):
    uri = store
    opened, writers = _trial_and_its_writes(uri, monkeypatch)
    _start(opened)
    time.sleep(tracking.FIRST_SAMPLE + 1.0)  # a trial of two seconds: a fifth of an interval
    started = time.perf_counter()
    opened.stop_system_metrics()
    stopped_in = time.perf_counter() - started
    opened.log_epoch({"train_loss": 1.0}, 1, {tracking.Tag.MODEL: tracking.ModelKept.NOT_KEPT})
    opened.finish()
    # The trial's own thread writes its last epoch; its start and the sample were written while it trained.
    assert [name for name, _ in writers] == ["TrialRunStart", "SystemMetricsMonitor", "MainThread"], writers
    # A stop that waited for its interval would take most of one (10 s); what a stop costs is
    # benchmarks/mlflow_overhead.py's to measure (0.2-0.3 ms).
    assert stopped_in < system_metrics.SYSTEM_INTERVAL / 2

    client = MlflowClient(uri)
    run = client.get_run(opened.run.run_id)
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(run.data.metrics)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")] == [0]
    assert not (Path.cwd() / "mlflow.db").exists()  # never MLflow's default store


def test_a_trial_whose_epoch_ends_before_its_start_is_written_writes_both_at_once_and_samples_nothing(
        store, monkeypatch):
    uri = store
    opened, writers = _trial_and_its_writes(uri, monkeypatch)
    opened.start(node_id="node", pid=1, device="cpu", gpu_ids=[], resumed_from_epoch=0, costs={"macs": 5.0})
    assert writers == []  # nothing written yet: the start waits for its delay or the first epoch
    opened.log_epoch({"train_loss": 1.0}, 1, {tracking.Tag.MODEL: tracking.ModelKept.NOT_KEPT})
    opened.stop_system_metrics()
    opened.finish()
    time.sleep(tracking.trial_run.start_delay() + 0.2)  # had the timer not been stopped, it would write now
    assert writers == [("MainThread", {"metrics", "params", "tags"})], writers
    assert not any(t.name == "SystemMetricsMonitor" for t in threading.enumerate())

    client = MlflowClient(uri)
    run = client.get_run(opened.run.run_id)
    assert run.data.params == {"arm": "a", "seed": "0"}
    assert run.data.tags[tracking.Tag.NODE_ID] == "node" and run.data.tags[tracking.Tag.MODEL] == tracking.ModelKept.NOT_KEPT
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "macs")] == [(0, 5.0)]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1]
    assert not any(key.startswith("system/") for key in run.data.metrics)
    assert run.info.status == "FINISHED"


def test_a_trial_that_fails_before_its_start_is_written_still_records_its_params_and_where_it_ran(store):
    uri = store
    experiment_id, parent = _study(uri)
    opened = _trial(uri, experiment_id, parent)
    _start(opened)
    opened.fail(tracking.Failure.ERROR, "RuntimeError: at once")
    run = MlflowClient(uri).get_run(opened.run.run_id)
    assert run.data.params == {"arm": "a", "seed": "0"} and run.data.tags[tracking.Tag.PID] == "1"
    assert run.data.tags[tracking.Tag.FAILURE] == tracking.Failure.ERROR and run.info.status == "FAILED"


def test_an_error_writing_the_start_in_its_thread_is_raised_at_the_trials_next_write(store):
    """The start is written from a timer's thread: what its write raised (the store refused it, the lease
    passed to another driver) must stop the trial as it would have at the start; and the start, unwritten,
    goes with the trial's record of its failure."""
    uri = store
    experiment_id, parent = _study(uri)
    refused = RuntimeError("database is locked")

    def fence():
        if threading.current_thread().name == "TrialRunStart":
            raise refused

    opened = tracking.open_trial(uri, experiment_id, parent.run_id, name="t0", trial_id="t0",
                                 params={"arm": "a", "seed": 0}, fence=fence)
    _start(opened)
    time.sleep(tracking.trial_run.start_delay() + 0.3)
    assert MlflowClient(uri).get_run(opened.run.run_id).data.params == {}  # nothing written past the fence
    with pytest.raises(RuntimeError) as raised:
        opened.log_epoch({"train_loss": 1.0}, 1)
    assert raised.value is refused
    opened.fail(tracking.Failure.ERROR, "RuntimeError: database is locked")
    run = MlflowClient(uri).get_run(opened.run.run_id)
    assert run.data.params == {"arm": "a", "seed": "0"} and run.data.tags[tracking.Tag.PID] == "1"
    assert run.data.tags[tracking.Tag.FAILURE] == tracking.Failure.ERROR and run.info.status == "FAILED"


def test_system_metrics_are_sampled_each_interval_and_a_retry_continues_their_steps(store, monkeypatch):
    monkeypatch.setattr(system_metrics, "SYSTEM_INTERVAL", 0.3)
    monkeypatch.setattr(system_metrics, "FIRST_SAMPLE", 0.1)
    uri = store
    experiment_id, parent = _study(uri)
    opened = _trial(uri, experiment_id, parent)
    _start(opened)
    time.sleep(1.5)
    opened.fail(tracking.Failure.ERROR, "RuntimeError: a crash")
    client = MlflowClient(uri)
    steps = [m.step for m in client.get_metric_history(opened.run.run_id, "system/cpu_utilization_percentage")]
    assert len(steps) >= 3 and steps == list(range(len(steps)))

    retry = _trial(uri, experiment_id, parent)  # the same run, continued
    _start(retry)
    time.sleep(0.5)
    retry.finish()
    again = [m.step for m in client.get_metric_history(opened.run.run_id, "system/cpu_utilization_percentage")]
    assert again[:len(steps)] == steps and again[len(steps)] == len(steps)


def test_stopping_system_metrics_waits_for_no_interval_and_writes_nothing_unsampled(store, monkeypatch):
    """A trial ends whenever it ends: its monitor must stop then, not at the end of an interval, and
    write no sample of the unfinished one. (What a start and a stop cost: benchmarks/mlflow_overhead.py.)"""
    monkeypatch.setattr(system_metrics, "FIRST_SAMPLE", 60.0)
    monkeypatch.setattr(system_metrics, "SYSTEM_INTERVAL", 60.0)
    uri = store
    experiment_id, parent = _study(uri)
    started = time.monotonic()
    for _ in range(3):
        monitor = tracking.watch_system(uri, parent.run_id)
        monitor.finish()
        assert monitor._process is None  # MLflow's monitor has joined its thread
    assert time.monotonic() - started < 60.0  # had any stop waited for its interval, this could not hold
    assert MlflowClient(uri).get_metric_history(parent.run_id, "system/cpu_utilization_percentage") == []


# ------------------------------------------------------------------------------------ provenance

def _git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder, check=True,
                   capture_output=True)


def test_git_tags_name_the_commit_branch_and_dirty_state_and_nothing_outside_a_checkout(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-b", "study")
    (repo / "spec.yaml").write_text("name: x\n")
    _git(repo, "add", "spec.yaml")
    _git(repo, "commit", "-m", "first")
    _git(repo, "remote", "add", "origin", "https://someone:s3cret@example.com/lab/studies.git")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()

    tags = tracking.git_tags(repo)
    assert tags == {"mlflow.source.git.commit": commit, "mlflow.source.git.branch": "study",
                    "mlflow.source.git.dirty": "false",
                    "mlflow.source.git.repoURL": "https://example.com/lab/studies.git"}  # no credentials
    (repo / "spec.yaml").write_text("name: y\n")
    assert tracking.git_tags(repo)["mlflow.source.git.dirty"] == "true"
    outside = tmp_path / "plain"
    outside.mkdir()
    assert tracking.git_tags(outside) == {}


def test_the_parent_run_carries_provenance_and_the_trials_their_machine_in_their_one_start_write(tmp_path, store,
                                                                                                  monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-b", "main")
    _git(repo, "commit", "--allow-empty", "-m", "first")
    (repo / "s.yaml").write_text("name: s\n")
    monkeypatch.chdir(repo)
    uri = store
    argv = ["/venv/bin/ablate", "run", "s.yaml", "--tracking-uri", "https://me:s3cret@mlflow.example/"]
    experiment_id, parent = _study(uri, argv=argv, spec_path=Path("s.yaml"))
    tags = MlflowClient(uri).get_run(parent.run_id).data.tags
    assert tags["mlflow.source.name"] == str(repo.resolve() / "s.yaml")  # the spec file the caller names
    assert tags["ablate.command"] == "ablate run s.yaml --tracking-uri https://mlflow.example/"  # no credentials
    for key in ("mlflow.source.name", "mlflow.source.type", "mlflow.source.git.commit", "mlflow.source.git.branch",
                "mlflow.source.git.dirty", "ablate.version.torch", "ablate.version.ray", "ablate.version.mlflow",
                "ablate.host", "ablate.cpu", "ablate.gpu"):
        assert tags.get(key), key
    assert tags["ablate.version.ablate"].startswith(tracking.versions()["ablate.version.ablate"])

    opened = _trial(uri, experiment_id, parent)
    _start(opened)
    opened.finish()
    trial_tags = MlflowClient(uri).get_run(opened.run.run_id).data.tags
    assert trial_tags["ablate.cpu"] == tags["ablate.cpu"] and trial_tags["ablate.host"] == tags["ablate.host"]
    assert "ablate.gpu" not in trial_tags  # a CPU trial: no GPU named


# ------------------------------------------------------------------------------------ the dataset input

def test_the_parent_run_gets_the_dataset_input_and_the_experiment_its_description_and_view(store):
    uri = store
    experiment_id, parent = _study(uri, description="Where does *one* module help?")
    data = DataSpec(train_per_class=4, val_per_class=2, test_per_class=2)
    tracking.describe_study(parent, axes=["model.placement"], design="grid", metric="val_macro_f1", mode="max",
                            storage="/x", skipped=[], experiment_id=experiment_id,
                            datasets=digests([data, data.model_copy()]).values())
    client = MlflowClient(uri)
    run = client.get_run(parent.run_id)
    [logged] = run.inputs.dataset_inputs  # one dataset, however many trials share it
    assert logged.dataset.digest == tracking.dataset_input(data_digest(data)).dataset.digest
    assert run.data.tags["mlflow.note.content"] == "Where does *one* module help?"

    tags = client.get_experiment(experiment_id).tags
    assert tags["mlflow.note.content"] == "Where does *one* module help?"
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # the UI's model-training view
    envelope = json.loads(tags["mlflow.sharedViewState.ablate"])
    view = json.loads(envelope["state"])
    assert envelope["name"] == tracking.VIEW_NAME and isinstance(envelope["createdAt"], int)
    assert view["groupBy"]["groupByKeys"] == [{"mode": "param", "groupByData": "arm"}]
    assert view["orderByKey"] == "metrics.`best_val_macro_f1`" and view["orderByAsc"] is False
    assert "params.`model.placement`" in view["selectedColumns"]
    # Nothing the parent alone carries (its best.* metrics, its ablate.best tag, its dataset input): "-" on
    # every trial's row.
    assert not any("best." in c or "Dataset" in c for c in view["selectedColumns"]), view["selectedColumns"]


# ------------------------------------------------------------------------------------ the outcome

def test_the_parent_run_ends_with_the_best_arm_its_interval_the_seeds_the_failures_and_the_trial_hours(store):
    uri = store
    experiment_id, parent = _study(uri)
    scores = {"a": [0.60, 0.64, 0.65], "b": [0.70, 0.74, 0.71]}
    for arm, values in scores.items():
        for seed, value in enumerate(values):
            opened = tracking.open_trial(uri, experiment_id, parent.run_id, name=f"{arm},{seed}",
                                         trial_id=f"{arm}{seed}", params={"arm": arm, "seed": seed})
            opened.run.log(params=opened.params, metrics={"best_val_macro_f1": value, "test_accuracy": value})
            opened.run.finish()
    crashed = tracking.open_trial(uri, experiment_id, parent.run_id, name="b,3", trial_id="b3",
                                  params={"arm": "b", "seed": 3})
    crashed.fail(tracking.Failure.ERROR, "RuntimeError: gone")

    def finish(mode: str, failed: int) -> None:
        summary, best_arm = study_outcome(tracking.study_trials(uri, experiment_id, parent.run_id),
                                          "val_macro_f1", mode)
        tracking.finish_study(parent, failed=failed, diverged=0, unfinished=0, outcome=summary, best_arm=best_arm)

    finish("max", failed=1)

    run = MlflowClient(uri).get_run(parent.run_id)
    values = scores["b"]
    low, high = stats.t.interval(0.95, len(values) - 1, loc=statistics.fmean(values),
                                 scale=statistics.stdev(values) / math.sqrt(len(values)))
    assert run.data.tags["ablate.best"] == "b"
    assert run.data.metrics["best.mean"] == pytest.approx(statistics.fmean(values))
    assert (run.data.metrics["best.low"], run.data.metrics["best.high"]) == pytest.approx((low, high))
    assert run.data.metrics["seeds_run"] == 3 and run.data.metrics["trials_failed"] == 1
    children = MlflowClient(uri).search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.run_id}'")
    assert run.data.metrics["trial_hours"] == pytest.approx(
        sum(c.info.end_time - c.info.start_time for c in children) / 3.6e6)
    assert run.info.status == "FAILED"  # a trial failed

    finish("min", failed=0)  # lower is better: the other arm
    assert MlflowClient(uri).get_run(parent.run_id).data.tags["ablate.best"] == "a"


def test_the_parent_runs_interval_stays_inside_what_its_metric_can_take(store):
    """Two seeds' 95% t interval of an F1 runs past 1 (t is 12.7): the parent's best.high read 1.065 in the
    MLflow UI where the report printed 1.000 and marked it clipped. It now stops at 1 too."""
    experiment_id, parent = _study(store)
    for seed, value in enumerate([0.81, 0.77]):
        opened = tracking.open_trial(store, experiment_id, parent.run_id, name=f"a,{seed}", trial_id=f"a{seed}",
                                     params={"arm": "a", "seed": seed})
        opened.run.log(params=opened.params, metrics={"best_val_macro_f1": value, "test_accuracy": value})
        opened.run.finish()
    summary, _ = study_outcome(tracking.study_trials(store, experiment_id, parent.run_id), "val_macro_f1", "max")
    low, high = stats.t.interval(0.95, 1, loc=0.79, scale=statistics.stdev([0.81, 0.77]) / math.sqrt(2))
    assert high > 1
    assert (summary["best.low"], summary["best.high"]) == pytest.approx((low, 1.0))


# ------------------------------------------------------------------------------------ the link

def test_ui_and_the_end_of_a_run_print_the_link_and_never_create_a_store(tmp_path, store):
    absent = f"sqlite:///{tmp_path / 'absent' / 'mlflow.db'}"
    assert "experiments/" not in cli_help.ui_banner(absent, "127.0.0.1", 5000)
    assert not (tmp_path / "absent").exists()
    assert cli_help.next_step("s", absent).startswith("Next, its statistics")

    uri = store
    experiment_id, parent = _study(uri, name="placement")
    tracking.describe_study(parent, axes=["model.placement"], design="grid", metric="val_macro_f1", mode="max",
                            storage="/x", skipped=[], experiment_id=experiment_id)
    link = tracking.study_link("http://127.0.0.1:5001", experiment_id)
    assert f"placement:  {link}" in cli_help.ui_banner(uri, "127.0.0.1", 5001)
    lines = cli_help.next_step("placement", uri).splitlines()
    assert tracking.study_link("http://127.0.0.1:5000", experiment_id) in lines[0]
    assert lines[-1].endswith(f"--tracking-uri {uri}[/bold]")  # the report command stays the last line


# ------------------------------------------------------------------------------------ end to end

@pytest.mark.slow
def test_a_study_run_shows_its_system_metrics_provenance_dataset_and_outcome_and_ends_with_its_link(
        tiny_spec, tmp_path, own_ray, monkeypatch):
    from typer.testing import CliRunner

    from ablation.cli.main import app

    # MLflow's own setting, which the trials' Ray workers inherit: a sample every 0.2 s (so also 0.2 s in),
    # however fast the machine runs the tiny trials.
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = CliRunner().invoke(app, ["run", str(tiny_spec), "--tracking-uri", uri, "--storage", str(tmp_path / "r"),
                                      "--set", "description=Does layer4 help?"])
    assert result.exit_code == 0, result.output
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny")
    assert experiment.tags["mlflow.note.content"] == "Does layer4 help?"
    assert tracking.study_link("http://127.0.0.1:5000", experiment.experiment_id) in "".join(result.output.split())
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("ablate.kind") == "study"]
    trials = [r for r in runs if r.data.tags.get("ablate.kind") == "trial"]
    assert "model.placement" not in parent.data.params and "search.space.model.placement" in parent.data.params
    assert {"ablate.version.torch", "ablate.cpu", "mlflow.source.name", "ablate.best"} <= set(parent.data.tags)
    assert {"best.mean", "seeds_run", "trials_failed", "trial_hours"} <= set(parent.data.metrics)
    assert parent.inputs.dataset_inputs[0].dataset.name == "synthetic"
    for trial in trials:
        history = client.get_metric_history(trial.info.run_id, "system/cpu_utilization_percentage")
        assert history, trial.info.run_name
        assert trial.data.tags["ablate.cpu"] == parent.data.tags["ablate.cpu"]
        # The kernels' instruction set, which the last digits of its scores depend on, as torch chose it.
        assert trial.data.tags["ablate.cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
