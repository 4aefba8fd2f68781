"""Ray Tune glue: the trainable that wraps `engine.fit`, and the driver that runs a study.

The only module that imports Ray. Trials are expanded by the spec (one per grid point and seed)
and handed to Tune as one grid, so each Tune trial is exactly one `spec.Trial`. Every trial logs
to MLflow itself through the absolute tracking URI it is given, so nothing depends on Ray's
result files.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from . import engine, tracking
from .data import build_splits
from .data.records import Skipped
from .models import check_weights
from .progress import StudyProgress
from .spec import StudySpec, Trial

_STEP_KEY = "epoch"

# Tune's own console output would fight the live view: the legacy reporter at verbose=0 is silent.
# Checkpoint-sync warnings fire on every small fast trial and say nothing actionable here.
_TUNE_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


class ResourceError(ValueError):
    """The study asks for more than the Ray cluster has; nothing was started."""


@dataclass(frozen=True)
class StudyContext:
    """What every trial of a study shares, shipped once through Ray's object store."""

    spec: dict[str, Any]
    tracking_uri: str
    experiment_id: str
    parent_run_id: str


def _trainable(config: dict[str, Any], context: StudyContext) -> None:
    """One trial: train, log each epoch to MLflow, report it (with a checkpoint) to Tune."""
    study = StudySpec.model_validate(context.spec)
    trial = Trial.create(study, config["trial"]["overrides"], arm=config["trial"]["arm"])
    # Ray sets OMP_NUM_THREADS for the worker, but torch was imported before it could apply.
    torch.set_num_threads(max(1, int(study.resources.cpu)))
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"

    run = tracking.start_trial(context.tracking_uri, context.experiment_id, context.parent_run_id,
                               name=trial.name, trial_id=trial.id, params=trial.params())
    run.set_tags({"ablate.node_id": ray.get_runtime_context().get_node_id(), "ablate.device": device})

    def on_epoch(metrics: dict[str, float], checkpoint: dict[str, Any]) -> None:
        step = int(metrics[_STEP_KEY])
        run.log_metrics({k: v for k, v in metrics.items() if k != _STEP_KEY}, step=step)
        with tempfile.TemporaryDirectory() as folder:
            engine.save_checkpoint(checkpoint, Path(folder) / "checkpoint.pt")
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    try:
        engine.fit(trial.spec, trial.seed, on_epoch=on_epoch, on_start=run.log_metrics, device=device)
    except BaseException as err:
        run.set_tags({"ablate.error": f"{type(err).__name__}: {err}"[:5000]})
        # Tune stops trials of an interrupted study by raising in them; that is not their failure.
        run.finish("KILLED" if isinstance(err, (KeyboardInterrupt, SystemExit)) else "FAILED")
        raise
    run.finish("FINISHED")


def connect(address: str | None) -> None:
    """Join the cluster at `address`, or start a private Ray on this machine, on loopback only."""
    if ray.is_initialized():  # a caller (a notebook, the tests) already chose the cluster
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": True}
    if address:
        ray.init(address=address, **quiet)
        return
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        # Ray's defaults assume a large machine; trials hold their data in process memory, not here.
        object_store_memory=min(2 * 2**30, memory // 10),
        **quiet,
    )


def _check_resources(spec: StudySpec) -> None:
    have = ray.cluster_resources()
    for key, name in (("cpu", "CPU"), ("gpu", "GPU")):
        wanted, available = getattr(spec.resources, key), have.get(name, 0.0)
        if wanted > available:
            raise ResourceError(
                f"resources.{key}: a trial asks for {wanted} but the Ray cluster has {available:g} {name}s"
            )


def _trial_id(trial) -> str:
    return trial.config["trial"]["id"]


class _ProgressCallback(tune.Callback):
    """Forwards Tune's trial events to the live view."""

    def __init__(self, view: StudyProgress, metric: str) -> None:
        self.view, self.metric = view, metric

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run config into the experiment state; a live terminal view cannot go
        # there, and a restored study draws its own.
        return {"view": None, "metric": self.metric}

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.view.trial_started(trial.trial_id, trial.config["trial"]["name"])

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.view.epoch(trial.trial_id, int(result[_STEP_KEY]), result[self.metric])

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.view.trial_finished(trial.trial_id, ok=True)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.view.trial_finished(trial.trial_id, ok=False)


@dataclass
class StudyOutcome:
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    storage: Path
    errors: dict[str, str] = field(default_factory=dict)  # trial name -> error
    unfinished: list[str] = field(default_factory=list)  # trials an interruption stopped or never started


def _prepare_data(trials: list[Trial], console) -> list[Skipped]:
    """Generate or decode each dataset the trials use, once, here rather than in every trial at once
    (on a cluster, other nodes fill their own cache); returns the inputs that could not be used."""
    from rich.progress import Progress

    datasets = {t.spec.data.model_dump_json(): t.spec.data for t in trials}.values()
    skipped: list[Skipped] = []
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("preparing the data", total=None)
        for data in datasets:
            splits = build_splits(data, on_progress=lambda done, total: bar.update(task, completed=done, total=total))
            skipped += splits.skipped
    if skipped:
        reasons = Counter(s.reason.split(":")[0] for s in skipped)
        console.print(f"[yellow]{len(skipped)} input(s) skipped[/yellow] ("
                      + ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
                      + "); the list is the study run's artifact data_skipped.json", highlight=False)
    return skipped


def run_study(spec: StudySpec, spec_yaml: str, *, tracking_uri: str | None = None, storage: Path | None = None,
              address: str | None = None, console=None) -> StudyOutcome:
    """Run every trial of `spec` under Ray Tune, logging to MLflow; returns where the results are."""
    from rich.console import Console

    console = console or Console()
    uri = tracking.resolve_uri(tracking_uri)
    storage = (storage or Path("ablate_runs")).resolve()
    trials = spec.trials()

    for key, value in _TUNE_ENV.items():
        os.environ.setdefault(key, value)
    # After an interruption Tune warns once per trial that never started; the summary says it once.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    connect(address)
    _check_resources(spec)
    skipped = _prepare_data(trials, console)
    with console.status("checking the pretrained weights"):
        for arch, weights in {(t.spec.model.arch, t.spec.model.pretrained) for t in trials if t.spec.model.pretrained}:
            check_weights(arch, weights)
    experiment_id, parent = tracking.start_study(
        uri, spec.name, params=spec.params() | {"search.seeds": spec.search.seeds, "trials": len(trials)},
        spec_yaml=spec_yaml,
    )
    if skipped:
        parent.log_text(json.dumps([{"path": s.path, "reason": s.reason} for s in skipped], indent=1),
                        "data_skipped.json")
    parent.set_tags({"ablate.data_skipped": len(skipped)})
    parent.set_tags({"ablate.axes": ",".join(spec.axes()), "ablate.design": spec.search.design, "ablate.metric": spec.metric,
                     "ablate.mode": spec.mode, "ablate.storage": storage / spec.name})
    context = StudyContext(spec.model_dump(mode="json"), uri, experiment_id, parent.run_id)
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, context=context),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )
    view = StudyProgress(console, trials=len(trials), epochs=spec.train.epochs, metric=spec.metric)
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search([{"id": t.id, "name": t.name, "arm": t.arm, "overrides": t.overrides}
                                                     for t in trials])},
        tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode, reuse_actors=True,
            trial_name_creator=_trial_id, trial_dirname_creator=_trial_id,
        ),
        run_config=tune.RunConfig(
            name=spec.name, storage_path=str(storage), verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[_ProgressCallback(view, spec.metric)],
        ),
    )
    outcome = StudyOutcome(uri, experiment_id, parent.run_id, storage / spec.name)
    try:
        with view:
            results = tuner.fit()
    except KeyboardInterrupt:
        parent.finish("KILLED")
        raise
    finished = set()
    for result in results:
        name = (result.config or {}).get("trial", {}).get("name")  # None: never started
        if result.error is not None:
            outcome.errors[name] = str(result.error).strip().splitlines()[-1]
        elif (result.metrics or {}).get(_STEP_KEY) == spec.train.epochs:
            finished.add(name)
    outcome.unfinished = [t.name for t in trials if t.name not in finished and t.name not in outcome.errors]
    # A trial killed mid-write may not have closed its run; none may stay RUNNING after the study.
    tracking.close_open_runs(uri, experiment_id, parent.run_id, status="KILLED")
    parent.set_tags({"ablate.trials_failed": len(outcome.errors), "ablate.trials_unfinished": len(outcome.unfinished)})
    parent.finish("KILLED" if outcome.unfinished else "FAILED" if outcome.errors else "FINISHED")
    return outcome
