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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
import torch
from ray import tune

from . import engine, tracking
from .data import build_splits
from .data.records import Skipped
from .models import check_weights
from .progress import StudyProgress
from .spec import StudySpec, Trial, label

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


def _failure(err: BaseException) -> str:
    """What kind of failure an exception is, for the `ablate.failure` tag."""
    if isinstance(err, engine.Diverged):
        return "divergence"
    if isinstance(err, MemoryError) or "out of memory" in str(err).lower():
        return "out_of_memory"
    return "error"


def _trainable(config: dict[str, Any], context: StudyContext) -> None:
    """One trial: train (from Tune's checkpoint if this is a retry), log each epoch to MLflow once,
    report it with a checkpoint to Tune."""
    study = StudySpec.model_validate(context.spec)
    trial = _trial_of(study, config)
    # Ray sets OMP_NUM_THREADS for the worker, but torch was imported before it could apply.
    torch.set_num_threads(max(1, int(study.resources.cpu)))
    gpus = ray.get_gpu_ids()
    device = "cuda" if gpus and torch.cuda.is_available() else "cpu"

    resume = None
    if (saved := tune.get_checkpoint()) is not None:
        with saved.as_directory() as folder:
            resume = engine.load_checkpoint(Path(folder) / "checkpoint.pt")
    opened = tracking.open_trial(context.tracking_uri, context.experiment_id, context.parent_run_id,
                                 name=trial.name, trial_id=trial.id, params=trial.params())
    run = opened.run
    if opened.finished or (resume and resume["epoch"] >= study.train.epochs):
        # Restarted after its last epoch (the driver died before it heard): tell Tune how it ended.
        tune.report(run.latest_metrics() | {_STEP_KEY: study.train.epochs})
        run.finish("FINISHED")
        return
    run.set_tags({"ablate.node_id": ray.get_runtime_context().get_node_id(), "ablate.pid": os.getpid(),
                  "ablate.device": device,
                  "ablate.gpu_ids": ",".join(map(str, gpus)), "ablate.attempts": opened.attempts + 1,
                  "ablate.resumed_from_epoch": resume["epoch"] if resume else 0})
    if opened.lost:
        run.set_tags({"ablate.last_failure": "lost_worker"})

    last = {"epoch": resume["epoch"] if resume else 0}

    def on_epoch(metrics: dict[str, float], checkpoint: dict[str, Any]) -> None:
        step = last["epoch"] = int(metrics[_STEP_KEY])
        if step not in opened.logged_epochs:  # an earlier attempt may have logged it before dying
            run.log_metrics({k: v for k, v in metrics.items() if k != _STEP_KEY}, step=step)
        with tempfile.TemporaryDirectory() as folder:
            engine.save_checkpoint(checkpoint, Path(folder) / "checkpoint.pt")
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    try:
        engine.fit(trial.spec, trial.seed, on_epoch=on_epoch, resume=resume, device=device,
                   on_start=None if opened.attempts else run.log_metrics)
    except engine.Diverged as err:
        # A result, not a crash: recorded and not retried (retrying would diverge again).
        run.set_tags({"ablate.failure": "divergence", "ablate.error": str(err)})
        run.finish("FAILED")
        tune.report({_STEP_KEY: -1, "diverged": 1.0, study.metric: float("nan")})
        return
    except BaseException as err:
        # Tune stops trials of an interrupted study by raising in them; that is not their failure.
        interrupted = isinstance(err, (KeyboardInterrupt, SystemExit))
        if interrupted and last["epoch"] == study.train.epochs:  # stopped as its last report arrived
            run.finish("FINISHED")
            raise
        run.set_tags({"ablate.error": f"{type(err).__name__}: {err}"[:5000],
                      "ablate.failure": "interrupted" if interrupted else _failure(err)})
        run.finish("KILLED" if interrupted else "FAILED")
        raise
    run.finish("FINISHED")


def connect(address: str | None) -> None:
    """Join the cluster at `address`, or start a private Ray on this machine, on loopback only."""
    if ray.is_initialized():  # a caller (a notebook, the tests) already chose the cluster
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": True}
    if address:
        # The package travels with the job, so workers need only its dependencies (the image), not ablate.
        package = Path(__file__).resolve().parent
        # A cluster on this machine's loopback (`ray start --head --node-ip-address 127.0.0.1`) must be
        # joined from loopback too, or Ray looks for it at the machine's outward address.
        local = address.split(":")[0] in ("127.0.0.1", "localhost")
        ray.init(address=address, runtime_env={"py_modules": [str(package)]},
                 **({"_node_ip_address": "127.0.0.1"} if local else {}), **quiet)
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


def _trial_of(study: StudySpec, config: dict[str, Any]) -> Trial:
    """The spec trial a Tune config stands for: listed by the driver (grid), or drawn by a searcher,
    whose values are JSON strings so every searcher's categorical choices accept them."""
    if "trial" in config:
        return Trial.create(study, config["trial"]["overrides"], arm=config["trial"]["arm"])
    return Trial.create(study, _drawn(config) | {"seed": config["seed"]})


def _drawn(config: dict[str, Any]) -> dict[str, Any]:
    return {key: json.loads(value) for key, value in config["axes"].items()}


def _trial_name(config: dict[str, Any]) -> str:
    if "trial" in config:
        return config["trial"]["name"]
    return f"{label(_drawn(config))},seed={config['seed']}"  # as Trial.name spells it


def _trial_id(trial) -> str:
    return trial.config["trial"]["id"]


def _search(spec: StudySpec, pending: list[Trial]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tune's param space and the TuneConfig settings that pick and stop trials."""
    s = spec.search
    settings: dict[str, Any] = {}
    if s.scheduler == "asha":
        settings["scheduler"] = tune.schedulers.ASHAScheduler(
            time_attr=_STEP_KEY, max_t=spec.train.epochs, grace_period=s.grace_period,
            reduction_factor=s.reduction_factor)
    elif s.scheduler == "hyperband":
        settings["scheduler"] = tune.schedulers.HyperBandScheduler(
            time_attr=_STEP_KEY, max_t=spec.train.epochs, reduction_factor=s.reduction_factor)
    if s.method == "grid":
        space = {"trial": tune.grid_search([{"id": t.id, "name": t.name, "arm": t.arm, "overrides": t.overrides}
                                            for t in pending])}
        settings |= {"trial_name_creator": _trial_id, "trial_dirname_creator": _trial_id}
        return space, settings
    space = {"axes": {key: tune.choice([json.dumps(v) for v in values]) for key, values in s.space.items()},
             "seed": tune.choice(s.seeds)}
    settings["num_samples"] = s.num_samples
    if s.method == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        searcher = OptunaSearch(seed=s.seeds[0])
        settings["search_alg"] = ConcurrencyLimiter(searcher, s.max_concurrent) if s.max_concurrent else searcher
    return space, settings


class _ProgressCallback(tune.Callback):
    """Forwards Tune's trial events to the live view of whichever driver runs the study now.

    Tune pickles its callbacks into the experiment state, and a restored study unpickles them: the
    view is a class attribute the driver sets, so neither the terminal nor a dead driver's view
    travels with them.
    """

    view: StudyProgress | None = None

    def __init__(self, metric: str) -> None:
        self.metric = metric

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if self.view:
            self.view.trial_started(trial.trial_id, _trial_name(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if self.view and not result.get("diverged"):
            self.view.epoch(trial.trial_id, int(result[_STEP_KEY]), result[self.metric])

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if self.view:
            self.view.trial_finished(trial.trial_id, ok=not (trial.last_result or {}).get("diverged"))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        if self.view:
            self.view.trial_finished(trial.trial_id, ok=False)


@dataclass
class StudyOutcome:
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    storage: str  # the study's folder or URI
    errors: dict[str, str] = field(default_factory=dict)  # trial name -> error
    diverged: list[str] = field(default_factory=list)  # trials whose loss blew up (recorded, not retried)
    stopped_early: dict[str, int] = field(default_factory=dict)  # trial name -> the epoch the scheduler stopped it at
    unfinished: list[str] = field(default_factory=list)  # trials an interruption stopped or never started
    already_finished: int = 0  # trials an earlier run of the study finished, not run again


STATE_FILE = "ablate_study.json"


def storage_location(storage: str | None) -> str:
    """Where Tune keeps a study's trials: a `scheme://` URI as given (s3://, gs://: any pyarrow file
    system), else a local folder made absolute (Tune requires it); default ./ablate_runs."""
    if storage and "://" in storage:
        return storage.rstrip("/")
    return str(Path(storage or "ablate_runs").resolve())


@dataclass(frozen=True)
class StudyState:
    """What `ablate resume` needs to continue a study whose driver died; kept in the study's folder."""

    context: StudyContext
    trials: list[str]  # ids of the trials this run of the study started

    def save(self, folder: str) -> None:
        fs, path = pafs.FileSystem.from_uri(folder)
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(f"{path}/{STATE_FILE}") as out:
            out.write(json.dumps({**asdict(self.context), "trials": self.trials}, indent=1).encode())

    @classmethod
    def load(cls, folder: str) -> StudyState:
        fs, path = pafs.FileSystem.from_uri(folder)
        try:
            with fs.open_input_stream(f"{path}/{STATE_FILE}") as stream:
                saved = json.loads(stream.read())
        except FileNotFoundError:
            raise ResourceError(f"{folder} is not a study folder: it has no {STATE_FILE} "
                                "(expected ./ablate_runs/<study>, or the --storage of `ablate run`)") from None
        trials = saved.pop("trials")
        return cls(StudyContext(**saved), trials)


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


def _quiet_tune() -> None:
    for key, value in _TUNE_ENV.items():
        os.environ.setdefault(key, value)
    # After an interruption Tune warns once per trial that never started; the summary says it once.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


def _trainable_for(spec: StudySpec, context: StudyContext):
    return tune.with_resources(tune.with_parameters(_trainable, context=context),
                               {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})


def run_study(spec: StudySpec, spec_yaml: str, *, tracking_uri: str | None = None, storage: str | None = None,
              address: str | None = None, console=None) -> StudyOutcome:
    """Run the trials of `spec` that have not finished before under Ray Tune, logging to MLflow
    under the study's one parent run; returns where the results are."""
    from rich.console import Console

    console = console or Console()
    uri = tracking.resolve_uri(tracking_uri)
    if address and uri.startswith("sqlite:"):
        raise ResourceError(f"--tracking-uri: {uri} is a SQLite file on this machine, and the trials of a Ray "
                            "cluster run on other machines that cannot write to it; start an MLflow server "
                            "(mlflow server --host ...) and pass --tracking-uri http://HOST:PORT")
    storage = storage_location(storage)
    trials = spec.trials()
    _quiet_tune()
    connect(address)
    _check_resources(spec)
    skipped = _prepare_data(trials, console)
    with console.status("checking the pretrained weights"):
        for arch, weights in {(t.spec.model.arch, t.spec.model.pretrained) for t in trials if t.spec.model.pretrained}:
            check_weights(arch, weights)
    experiment_id, parent = tracking.open_study(
        uri, spec.name, params=spec.params() | {"search.seeds": spec.search.seeds, "trials": len(trials)},
        spec_yaml=spec_yaml,
    )
    if skipped:
        parent.log_text(json.dumps([{"path": s.path, "reason": s.reason} for s in skipped], indent=1),
                        "data_skipped.json")
    parent.set_tags({"ablate.data_skipped": len(skipped), "ablate.axes": ",".join(spec.axes()),
                     "ablate.design": spec.search.design, "ablate.metric": spec.metric, "ablate.mode": spec.mode,
                     "ablate.storage": f"{storage}/{spec.name}"})
    # A grid knows its trials, so a re-run skips those that finished; a search draws new ones.
    done = tracking.finished_trials(uri, experiment_id, parent.run_id) if spec.search.method == "grid" else set()
    pending = [t for t in trials if t.id not in done]
    outcome = StudyOutcome(uri, experiment_id, parent.run_id, f"{storage}/{spec.name}",
                           already_finished=len(trials) - len(pending))
    if not pending:
        parent.finish("FINISHED")
        return outcome
    context = StudyContext(spec.model_dump(mode="json"), uri, experiment_id, parent.run_id)
    StudyState(context, [t.id for t in pending]).save(outcome.storage)
    space, settings = _search(spec, pending)
    tuner = tune.Tuner(
        _trainable_for(spec, context),
        param_space=space,
        tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, reuse_actors=True, **settings),
        run_config=tune.RunConfig(
            name=spec.name, storage_path=storage, verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
            callbacks=[_ProgressCallback(spec.metric)],
        ),
    )
    return _fit(tuner, spec, pending, parent, outcome, console)


def resume_study(folder: str, *, tracking_uri: str | None = None, address: str | None = None,
                 console=None) -> tuple[StudySpec, StudyOutcome]:
    """Continue a study whose driver died, under its parent run: finished trials stay finished,
    unfinished and failed ones continue from their last checkpoints."""
    from rich.console import Console

    console = console or Console()
    folder = storage_location(str(folder))
    state = StudyState.load(folder)
    uri = tracking.resolve_uri(tracking_uri or state.context.tracking_uri)
    spec = StudySpec.model_validate(state.context.spec)
    _quiet_tune()
    connect(address)
    _check_resources(spec)
    pending = [t for t in spec.trials() if t.id in set(state.trials)]
    _prepare_data(pending, console)
    context = replace(state.context, tracking_uri=uri)
    parent = tracking.reopen_study(uri, context.parent_run_id)
    tuner = tune.Tuner.restore(folder, _trainable_for(spec, context), resume_unfinished=True,
                               resume_errored=True)
    outcome = StudyOutcome(uri, context.experiment_id, context.parent_run_id, folder)
    return spec, _fit(tuner, spec, pending, parent, outcome, console)


def _fit(tuner: tune.Tuner, spec: StudySpec, trials: list[Trial], parent: tracking.TrackedRun,
         outcome: StudyOutcome, console) -> StudyOutcome:
    sampled = spec.search.method != "grid"
    count = spec.search.num_samples if sampled else len(trials)
    view = StudyProgress(console, trials=count, epochs=spec.train.epochs, metric=spec.metric)
    _ProgressCallback.view = view
    try:
        with view:
            results = tuner.fit()
    except KeyboardInterrupt:
        parent.finish("KILLED")
        raise
    finally:
        _ProgressCallback.view = None
    early = spec.search.scheduler != "fifo"
    settled: set[str] = set()  # names of the trials that ended one way or another
    for result in results:
        if not result.config:  # never started
            continue
        name, metrics = _trial_name(result.config), result.metrics or {}
        if result.error is not None:
            outcome.errors[name] = str(result.error).strip().splitlines()[-1]
        elif metrics.get("diverged"):
            outcome.diverged.append(name)
        elif metrics.get(_STEP_KEY) == spec.train.epochs:
            pass
        elif early and metrics.get(_STEP_KEY):
            # The scheduler stopped it: a result of the search, recorded as such, not an interruption.
            outcome.stopped_early[name] = int(metrics[_STEP_KEY])
            tracking.mark_stopped_early(outcome.tracking_uri, outcome.experiment_id, outcome.parent_run_id,
                                        _trial_of(spec, result.config).id, epoch=int(metrics[_STEP_KEY]))
        else:
            continue
        settled.add(name)
    if sampled:  # a searcher may draw one configuration twice; count draws, not names
        ended = sum(1 for r in results if r.config and _trial_name(r.config) in settled)
        outcome.unfinished = ["(a drawn trial)"] * (count - ended)
    else:
        outcome.unfinished = [t.name for t in trials if t.name not in settled]
    # A trial killed mid-write may not have closed its run; none may stay RUNNING after the study.
    tracking.close_open_runs(outcome.tracking_uri, outcome.experiment_id, outcome.parent_run_id, status="KILLED")
    parent.set_tags({"ablate.trials_failed": len(outcome.errors), "ablate.trials_diverged": len(outcome.diverged),
                     "ablate.trials_unfinished": len(outcome.unfinished)})
    failed = outcome.errors or outcome.diverged
    parent.finish("KILLED" if outcome.unfinished else "FAILED" if failed else "FINISHED")
    return outcome
