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
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
import torch
from ray import tune

from . import engine, tracking
from .accounting import arm_costs
from .checkpoints import MODEL_FILE, Background, CheckpointStore, pack_model
from .data import build_splits, classes_of
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
    storage: str  # the study's folder or URI: trials keep their checkpoints under it
    # Each model's costs, measured by the driver before any trial starts: once per arm rather than per
    # seed, one arm after another so every latency is timed on an otherwise idle machine.
    costs: dict[str, dict[str, float]] = field(default_factory=dict)


def _failure(err: BaseException) -> str:
    """What kind of failure an exception is, for the `ablate.failure` tag."""
    if isinstance(err, engine.Diverged):
        return "divergence"
    if isinstance(err, MemoryError) or "out of memory" in str(err).lower():
        return "out_of_memory"
    return "error"


def _trainable(config: dict[str, Any], context: StudyContext) -> None:
    """One trial: train (from its checkpoint if this is a retry), log each epoch to MLflow once,
    checkpoint it and report it to Tune."""
    study = StudySpec.model_validate(context.spec)
    trial = _trial_of(study, config)
    # Ray sets OMP_NUM_THREADS for the worker, but torch was imported before it could apply.
    torch.set_num_threads(max(1, int(study.resources.cpu)))
    gpus = ray.get_gpu_ids()
    device = "cuda" if gpus and torch.cuda.is_available() else "cpu"

    store = _checkpoints(context.storage, trial.id)
    resume = store.load()  # an earlier attempt's, if Tune is retrying this trial or the study resumed
    opened = tracking.open_trial(context.tracking_uri, context.experiment_id, context.parent_run_id,
                                 name=trial.name, trial_id=trial.id, params=trial.params())
    run = opened.run
    if opened.finished:
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
    if not opened.attempts:
        # A searcher's draws are not known in advance, so their costs are measured here.
        run.log_metrics(context.costs.get(_costs_key(trial.spec)) or _measure_costs(trial.spec))

    last = {"epoch": resume["epoch"] if resume else 0}

    def on_epoch(metrics: dict[str, float], checkpoint: dict[str, Any]) -> None:
        step = last["epoch"] = int(metrics[_STEP_KEY])
        store.wait()  # so an epoch in MLflow means the one before it is checkpointed
        if step not in opened.logged_epochs:  # an earlier attempt may have logged it before dying
            run.log_metrics({k: v for k, v in metrics.items() if k != _STEP_KEY}, step=step)
        if step < study.train.epochs:  # nothing resumes from the last epoch
            store.save(checkpoint)
        tune.report(metrics)

    publisher, classes = Background(), classes_of(trial.spec.data)

    def on_best(weights: dict[str, torch.Tensor], epoch: int) -> None:
        # What `ablate explain` loads, stored while the next epoch trains rather than at the end.
        publisher.submit(lambda: run.log_bytes(pack_model(trial.spec.model_dump_json(), classes, epoch, weights),
                                               MODEL_FILE))

    try:
        engine.fit(trial.spec, trial.seed, on_epoch=on_epoch, on_best=on_best, resume=resume, device=device)
        publisher.wait()
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
    finally:
        store.close()
        publisher.close()
    run.finish("FINISHED")
    store.delete()  # a finished trial is never resumed


def _checkpoints(storage: str, trial_id: str) -> CheckpointStore:
    return CheckpointStore(f"{storage}/checkpoints/{trial_id}.pt")


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
    with _loopback_only():
        ray.init(
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            # Ray's defaults assume a large machine; trials hold their data in process memory, not here.
            object_store_memory=min(2 * 2**30, memory // 10),
            **quiet,
        )


@contextmanager
def _loopback_only():
    """Keep a private Ray on 127.0.0.1. Given that address, Ray still swaps in the machine's outward one
    and its servers then listen on every interface, unless its clusters switch is off: an environment
    variable its processes read at start-up, and a constant this process read when it imported Ray."""
    from ray._private import ray_constants

    saved = os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:  # a later --address in this process must find the outward address again
        if saved[0] is None:
            del os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR]
        else:
            os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = saved[0]
        ray_constants.ENABLE_RAY_CLUSTER = saved[1]


def _check_resources(spec: StudySpec) -> None:
    have = ray.cluster_resources()
    for key, name in (("cpu", "CPU"), ("gpu", "GPU")):
        wanted, available = getattr(spec.resources, key), have.get(name, 0.0)
        if wanted > available:
            raise ResourceError(
                f"resources.{key}: a trial asks for {wanted} but the Ray cluster has {available:g} {name}s"
            )


def _check_local_resources(spec: StudySpec) -> None:
    """What a private Ray on this machine will have, known before starting it; a Ray this process
    already joined (a notebook's, the tests' fake GPUs) is checked once connected instead."""
    if ray.is_initialized():
        return
    have = {"cpu": os.cpu_count() or 1, "gpu": torch.cuda.device_count() if torch.cuda.is_available() else 0}
    for key, name in (("cpu", "CPU"), ("gpu", "GPU")):
        wanted = getattr(spec.resources, key)
        if wanted > have[key]:
            raise ResourceError(f"resources.{key}: a trial asks for {wanted} but this machine has {have[key]:g} "
                                f"{name}s (pass --address to run on a Ray cluster)")


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


def _search(spec: StudySpec, pending: list[Trial], *, redo: list[dict[str, Any]] = (),
            samples: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tune's param space and the TuneConfig settings that pick and stop trials: the pending trials of a
    grid, or `samples` draws (default the spec's `num_samples`), the configurations in `redo` first."""
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
    settings["num_samples"] = s.num_samples if samples is None else samples
    if s.method == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        searcher = OptunaSearch(seed=s.seeds[0], points_to_evaluate=list(redo) or None)
        settings["search_alg"] = ConcurrencyLimiter(searcher, s.max_concurrent) if s.max_concurrent else searcher
    elif redo:
        from ray.tune.search import BasicVariantGenerator

        settings["search_alg"] = BasicVariantGenerator(points_to_evaluate=list(redo))
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
            trials = saved.pop("trials")
            return cls(StudyContext(**saved), trials)
        except FileNotFoundError:
            raise ResourceError(f"{folder} is not a study folder: it has no {STATE_FILE} "
                                "(expected ./ablate_runs/<study>, or the --storage of `ablate run`)") from None
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise ResourceError(f"{folder}/{STATE_FILE} is damaged ({type(err).__name__}: {err}); expected the JSON "
                                "that `ablate run` writes. Run the study's spec again with `ablate run`: finished "
                                "trials are kept") from None

    def spec(self, folder: str) -> StudySpec:
        """The study's spec as saved (it was valid when the study started)."""
        from pydantic import ValidationError

        try:
            return StudySpec.model_validate(self.context.spec)
        except ValidationError as err:
            raise ResourceError(f"{folder}/{STATE_FILE}: its spec no longer validates ({err.error_count()} "
                                "error(s)); run the study's spec again with `ablate run`") from None


def _costs_key(trial: StudySpec) -> str:
    return trial.model.model_dump_json() + trial.data.model_dump_json()


def _measure_costs(trial: StudySpec) -> dict[str, float]:
    """`params_total`, `params_added`, `macs` and `latency_ms` (CPU, one image) of a trial's model."""
    return arm_costs(trial.model, num_classes=len(classes_of(trial.data)), image_size=trial.data.image_size)


def _costs_of(trials: list[Trial], console) -> dict[str, dict[str, float]]:
    from rich.progress import Progress

    arms = {_costs_key(t.spec): t.spec for t in trials}
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("measuring each arm's cost", total=len(arms))
        costs = {}
        for key, trial in arms.items():
            costs[key] = _measure_costs(trial)
            bar.advance(task)
    return costs


def _prepare_data(trials: list[Trial], console) -> list[Skipped]:
    """Generate or decode each dataset the trials use, once, here rather than in every trial at once
    (on a cluster, other nodes fill their own cache); returns the inputs that could not be used."""
    from rich.progress import Progress

    from .data import check_trainable

    datasets = {t.spec.data.model_dump_json(): t.spec.data for t in trials}.values()
    skipped: list[Skipped] = []
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("preparing the data", total=None)
        for data in datasets:
            splits = build_splits(data, on_progress=lambda done, total: bar.update(task, completed=done, total=total))
            # Sizes only count once decoding has skipped what it could not use.
            check_trainable(data, splits)
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
    tracking.check_store(uri, writing=True)
    storage = storage_location(storage)
    trials = spec.trials()
    # Everything a trial would find wrong with its data is found here, before Ray or MLflow is touched.
    skipped = _prepare_data(trials, console)
    if not address:
        _check_local_resources(spec)  # before the lease creates the store
    with tracking.hold_study(uri, spec.name):
        _quiet_tune()
        connect(address)
        _check_resources(spec)
        pretrained = {(t.spec.model.arch, t.spec.model.pretrained) for t in trials if t.spec.model.pretrained}
        for arch, weights in pretrained:
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
        costs = _costs_of(pending, console) if spec.search.method == "grid" else {}
        context = StudyContext(spec.model_dump(mode="json"), uri, experiment_id, parent.run_id, outcome.storage, costs)
        StudyState(context, [t.id for t in pending]).save(outcome.storage)
        return _fit(_tuner(spec, context, pending), spec, pending, parent, outcome, console)


def _tuner(spec: StudySpec, context: StudyContext, pending: list[Trial], *,
           redo: list[dict[str, Any]] = (), samples: int | None = None) -> tune.Tuner:
    """A Tuner over the pending trials (a grid), or drawing `samples` trials (default the spec's), the
    configurations in `redo` first (sampled trials a resumed study continues)."""
    space, settings = _search(spec, pending, redo=redo, samples=samples)
    storage, _, name = context.storage.rpartition("/")
    return tune.Tuner(
        _trainable_for(spec, context),
        param_space=space,
        tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, reuse_actors=True, **settings),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
            callbacks=[_ProgressCallback(spec.metric)],
        ),
    )


def resume_study(folder: str, *, tracking_uri: str | None = None, address: str | None = None,
                 console=None) -> tuple[StudySpec, StudyOutcome]:
    """Continue a study whose driver died, under its parent run: finished trials stay finished,
    unfinished and failed ones continue from their last checkpoints.

    It trusts only what ablate wrote as data: the study's JSON state, MLflow's runs and `weights_only`
    checkpoints. Ray's own experiment state (`tuner.pkl`) is a pickle, and unpickling a crafted one
    runs its code, so a fresh Tuner runs what is left instead of restoring Ray's.
    """
    from rich.console import Console

    console = console or Console()
    folder = storage_location(str(folder))
    state = StudyState.load(folder)
    uri = tracking.resolve_uri(tracking_uri or state.context.tracking_uri)
    tracking.check_store(uri, writing=True)
    context = replace(state.context, tracking_uri=uri, storage=folder)
    tracking.find_parent(uri, context.experiment_id, context.parent_run_id)
    spec = state.spec(folder)
    with tracking.hold_study(uri, spec.name):
        records = tracking.study_trials(uri, context.experiment_id, context.parent_run_id)
        ended = {r.tags.get(tracking.TRIAL_TAG) for r in records if tracking.ended(r)}
        pending = [t for t in spec.trials() if t.id in set(state.trials) and t.id not in ended]
        redo, samples = [], None
        if spec.search.method != "grid":  # drawn trials: continue the unfinished ones, draw the rest anew
            redo = [_config_of(spec, r) for r in records if not tracking.ended(r)]
            samples = max(0, spec.search.num_samples - sum(map(tracking.ended, records)))
            pending = []
        _prepare_data(pending if spec.search.method == "grid" else spec.trials(), console)
        outcome = StudyOutcome(uri, context.experiment_id, context.parent_run_id, folder)
        parent = tracking.reopen_study(uri, context.parent_run_id)
        if not pending and not samples:
            parent.finish("FINISHED")
            return spec, outcome
        _quiet_tune()
        connect(address)
        _check_resources(spec)
        tuner = _tuner(spec, context, pending, redo=redo[:samples], samples=samples)
        return spec, _fit(tuner, spec, pending, parent, outcome, console, samples=samples)


def _config_of(spec: StudySpec, record: tracking.TrialRecord) -> dict[str, Any]:
    """The Tune config of a drawn trial, from its logged params (values matched to the space's own)."""
    axes = {}
    for key, values in spec.search.space.items():
        logged = record.params.get(key)
        axes[key] = next(json.dumps(v) for v in values if tracking.as_param(
            json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else v) == logged)  # as spec.params() logs
    return {"axes": axes, "seed": int(record.params["seed"])}


def _fit(tuner: tune.Tuner, spec: StudySpec, trials: list[Trial], parent: tracking.TrackedRun,
         outcome: StudyOutcome, console, *, samples: int | None = None) -> StudyOutcome:
    sampled = spec.search.method != "grid"
    count = (spec.search.num_samples if samples is None else samples) if sampled else len(trials)
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
            trial_id = _trial_of(spec, result.config).id
            tracking.mark_stopped_early(outcome.tracking_uri, outcome.experiment_id, outcome.parent_run_id,
                                        trial_id, epoch=int(metrics[_STEP_KEY]))
            _checkpoints(outcome.storage, trial_id).delete()  # finished, as far as the study goes
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
