"""Reading a study back: its trials' runs as `TrialRecord`s, its parent run as a `StudyRecord`, one
run, an artifact, a metric's history. Reading never creates a local store."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from typing import NamedTuple
from pathlib import Path

from ablation.core.names import DEFAULT_METRIC, TEST_ACCURACY, Failure, Kind, Outcome, Status, Tag, best
from ablation.tracking.runs import TrackedRun
from ablation.tracking.store import connect, connect_to_read, latest_parent, no_progress_bars


class StudyNotFound(LookupError):
    """No study of that name in the store."""


class RunNotFound(LookupError):
    """No run with that id, or it lacks the artifact asked for."""


@dataclass(frozen=True)
class TrialRecord:
    run_id: str
    name: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]  # the latest value of each metric
    tags: dict[str, str] = field(default_factory=dict)
    start_time: int | None = None  # MLflow's, in ms since the epoch
    end_time: int | None = None  # None while the run has not ended

    @classmethod
    def of(cls, run) -> TrialRecord:
        return cls(run.info.run_id, run.info.run_name, run.info.status, dict(run.data.params),
                   dict(run.data.metrics), dict(run.data.tags), run.info.start_time, run.info.end_time)

    @property
    def trial_id(self) -> str | None:
        return self.tags.get(Tag.TRIAL_ID)

    @property
    def failure(self) -> str | None:
        """The `Failure` the run ended with, if it failed."""
        return self.tags.get(Tag.FAILURE)

    @property
    def outcome(self) -> Outcome:
        if self.tags.get(Tag.STOPPED_EARLY) == "true":
            return Outcome.STOPPED_EARLY
        if self.status == Status.FINISHED and TEST_ACCURACY in self.metrics:
            return Outcome.FINISHED
        if self.failure == Failure.DIVERGENCE:
            return Outcome.DIVERGED
        if self.status == Status.FAILED:
            return Outcome.FAILED
        return Outcome.UNFINISHED

    @property
    def ended(self) -> bool:
        """Whether the trial has nothing left to do: it finished, or it diverged (which a retry repeats)."""
        return self.status == Status.FINISHED or self.failure == Failure.DIVERGENCE


def study_trials(uri: str, experiment_id: str, parent_run_id: str) -> list[TrialRecord]:
    """Every child run of a study's parent run, as logged."""
    client = connect(uri)
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{Tag.PARENT}` = '{parent_run_id}'",
                              max_results=50_000)
    return [TrialRecord.of(r) for r in runs]


@dataclass(frozen=True)
class StudyRecord:
    """A study's parent run as logged: its params (the spec's keys) and tags (axes, design, metric)."""

    experiment_id: str
    run: TrackedRun
    params: dict[str, str]
    tags: dict[str, str]

    @property
    def axes(self) -> list[str]:
        return [a for a in self.tags.get(Tag.AXES, "").split(",") if a]

    @property
    def metric(self) -> str:
        return self.tags.get(Tag.METRIC, DEFAULT_METRIC)


def find_study(uri: str, name: str) -> StudyRecord:
    """The study called `name`: its experiment and latest parent run."""
    client = connect_to_read(uri)
    experiment = client.get_experiment_by_name(name)
    parent = None if experiment is None else latest_parent(client, experiment.experiment_id)
    if parent is None:
        known = sorted(e.name for e in client.search_experiments() if e.name != "Default")
        raise StudyNotFound(f"{uri} has no study named {name!r}"
                            + (f" (it has: {', '.join(known)})" if known else " (it has none)"))
    return StudyRecord(parent.info.experiment_id, TrackedRun(client, parent.info.run_id), dict(parent.data.params),
                       dict(parent.data.tags))


class RunRow(NamedTuple):
    """A trial's run as `ablate runs` lists it."""

    run_id: str
    arm: str
    seed: int | None
    outcome: str  # an `Outcome`
    metric: str  # the study's metric, best epoch's
    value: float | None
    weights: str  # a `ModelKept` ("kept", "not_kept", ...), or "unknown" for a run that has not said


def runs_of_study(uri: str, name: str) -> list[RunRow]:
    """The study's trial runs (its latest parent run's), by arm and seed."""
    study = find_study(uri, name)
    key = best(study.metric)
    rows = []
    for r in study_trials(uri, study.experiment_id, study.run.run_id):
        arm = r.params.get("arm") or ",".join(f"{a}={r.params.get(a, '')}" for a in study.axes)
        seed = int(r.params["seed"]) if r.params.get("seed", "").lstrip("-").isdigit() else None
        rows.append(RunRow(r.run_id, arm, seed, str(r.outcome), key, r.metrics.get(key),
                           r.tags.get(Tag.MODEL, "unknown")))
    return sorted(rows, key=lambda row: (row.arm, -1 if row.seed is None else row.seed))


def dataset_profiles(study: StudyRecord) -> dict[str, tuple[str, dict]]:
    """The datasets the study's parent run logged as its inputs: digest -> (name, profile)."""
    inputs = study.run.client.get_run(study.run.run_id).inputs
    found = {}
    for given in inputs.dataset_inputs if inputs else ():
        try:
            profile = json.loads(given.dataset.profile or "{}")
        except ValueError:
            profile = {}
        found[given.dataset.digest] = (given.dataset.name, profile)
    return found


def find_parent(uri: str, experiment_id: str, parent_run_id: str) -> None:
    """Check that the store holds a study's parent run, without creating anything if it does not."""
    from mlflow.exceptions import MlflowException

    try:
        run = connect_to_read(uri).get_run(parent_run_id)
    except MlflowException:
        run = None
    if run is None or run.info.experiment_id != experiment_id or run.data.tags.get(Tag.KIND) != Kind.STUDY:
        raise StudyNotFound(f"{uri} has no study run {parent_run_id} (the parent run the study's folder names); "
                            "expected the store the study ran against: pass it with --tracking-uri")


def trial_record(uri: str, run_id: str) -> TrialRecord:
    """One run, as logged."""
    from mlflow.exceptions import MlflowException

    try:
        return TrialRecord.of(connect_to_read(uri).get_run(run_id))
    except MlflowException:
        raise RunNotFound(f"{uri} has no run {run_id!r}") from None


def read_artifact(uri: str, run_id: str, path: str) -> bytes:
    """The bytes of one artifact of a run (downloaded, if the store is remote)."""
    from mlflow.exceptions import MlflowException

    no_progress_bars()
    with tempfile.TemporaryDirectory() as folder:
        try:
            local = connect(uri).download_artifacts(run_id, path, folder)
        except (MlflowException, OSError):
            raise RunNotFound(f"run {run_id} has no artifact {path}") from None
        return Path(local).read_bytes()


def metric_history(uri: str, run_id: str, key: str) -> dict[int, float]:
    """`key` of one run, step -> value."""
    return {m.step: m.value for m in connect(uri).get_metric_history(run_id, key)}


def trials_frame(study: str, tracking_uri: str | None = None):
    """A study's trials as a pandas DataFrame, one row per trial run of its latest `ablate run`: the
    run id, trial id, arm, seed and outcome, then every param (the spec's dotted keys, as logged)
    and the latest value of every metric. For a notebook: `frame.groupby("arm")["test_macro_f1"]`."""
    import pandas as pd

    from ablation.tracking.store import resolve_uri

    uri = resolve_uri(tracking_uri)
    found = find_study(uri, study)
    rows = []
    for record in study_trials(uri, found.experiment_id, found.run.run_id):
        params = {k: v for k, v in record.params.items() if k not in ("arm", "seed")}
        seed = record.params.get("seed")
        rows.append({"run_id": record.run_id, "trial": record.trial_id, "arm": record.params.get("arm"),
                     "seed": int(seed) if seed is not None else None, "outcome": str(record.outcome),
                     **params, **record.metrics})
    return pd.DataFrame(rows)
