"""Ray Tune glue: the trainable that wraps `engine.fit`, and the driver that runs a study.

With `cluster.py`, the only module that imports Ray. Trials are expanded by the spec (one per grid
point and seed) and handed to Tune as one grid, so each Tune trial is exactly one `spec.Trial`.
Every trial logs to MLflow itself through the absolute tracking URI it is given, so nothing depends
on Ray's result files.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import ray
import torch
from ray import tune

from . import engine, tracking
from .checkpoints import CheckpointStore, pack_model
from .cluster import ResourceError, check_local_resources, check_resources, connect, quiet_tune
from .data import classes_of
from .models import check_weights
from .prepare import costs_key, latencies, model_costs, prepare_data
from .progress import StudyProgress
from .race import RaceSearcher
from .spec import StudySpec, Trial, label
from .state import StudyContext, StudyOutcome, StudyState, storage_location

_STEP_KEY = "epoch"
_DIVERGED_KEY = "diverged"  # in a trial's Tune result: its loss blew up, so its metrics are nan


def _failure(err: BaseException) -> tracking.Failure:
    """What kind of failure an exception is (a divergence is none: `_trainable` records it as a result)."""
    if isinstance(err, (KeyboardInterrupt, SystemExit)):
        # Tune stops the trials of an interrupted study by raising in them; that is not their failure.
        return tracking.Failure.INTERRUPTED
    if isinstance(err, MemoryError) or "out of memory" in str(err).lower():
        return tracking.Failure.OUT_OF_MEMORY
    return tracking.Failure.ERROR


def _trainable(config: dict[str, Any], context: StudyContext) -> None:
    """One trial: open its run, train with callbacks that log, checkpoint and report each epoch (from
    its checkpoint if this is a retry), and record how it ended."""
    study = StudySpec.model_validate(context.spec)
    trial = _trial_of(study, config)
    # Ray sets OMP_NUM_THREADS for the worker, but torch was imported before it could apply.
    torch.set_num_threads(max(1, int(study.resources.cpu)))
    store = _checkpoints(context.storage, trial.id)
    resume = store.load()  # an earlier attempt's, if Tune is retrying this trial or the study resumed
    opened = tracking.open_trial(context.tracking_uri, context.experiment_id, context.parent_run_id,
                                 name=trial.name, trial_id=trial.id, params=trial.params())
    if opened.finished:
        # Restarted after its last epoch (the driver died before it heard): tell Tune how it ended.
        tune.report(opened.run.latest_metrics() | {_STEP_KEY: study.train.epochs})
        opened.run.finish()
        return
    device = _start(opened, trial, resume)
    epochs = _Epochs(study, opened, store, resume)
    try:
        final = engine.fit(trial.spec, trial.seed, on_epoch=epochs.on_epoch, on_best=epochs.on_best, resume=resume,
                           device=device)
    except engine.Diverged as err:
        # A result, not a crash: recorded and not retried (retrying would diverge again).
        opened.fail(tracking.Failure.DIVERGENCE, str(err))
        tune.report({_STEP_KEY: -1, _DIVERGED_KEY: 1.0, study.metric: float("nan")})
        return
    except BaseException as err:
        failure = _failure(err)
        if failure == tracking.Failure.INTERRUPTED and epochs.last == study.train.epochs:
            opened.run.finish()  # stopped as its last report arrived: it had finished
        else:
            opened.fail(failure, f"{type(err).__name__}: {err}")
        raise
    finally:
        store.close()
    _keep_model(context, study, trial, opened, epochs.best, final.get(tracking.best(study.metric), math.nan))
    opened.run.finish()
    store.delete()  # a finished trial is never resumed


def _start(opened: tracking.TrialRun, trial: Trial, resume: dict[str, Any] | None) -> str:
    """Record this attempt on the trial's run, and on the first its model's size; returns its device."""
    gpus = ray.get_gpu_ids()
    device = "cuda" if gpus and torch.cuda.is_available() else "cpu"
    # Latency is timed by the driver after the trials, when they no longer share the machine.
    opened.start(node_id=ray.get_runtime_context().get_node_id(), pid=os.getpid(), device=device, gpu_ids=gpus,
                 resumed_from_epoch=resume["epoch"] if resume else 0,
                 costs={} if opened.attempts else model_costs(trial.spec))
    return device


class _Epochs:
    """What `engine.fit` calls back: each epoch logged to MLflow once, checkpointed and reported to
    Tune; the best weights held for the end, when the study's policy decides whether they are kept."""

    def __init__(self, study: StudySpec, opened: tracking.TrialRun, store: CheckpointStore,
                 resume: dict[str, Any] | None) -> None:
        self.study, self.opened, self.store = study, opened, store
        self.last = resume["epoch"] if resume else 0
        self.best: tuple[dict[str, torch.Tensor], int] | None = None

    def on_epoch(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None) -> None:
        epoch = self.last = int(metrics[_STEP_KEY])
        self.store.wait()  # so an epoch in MLflow means the one before it is checkpointed
        self.opened.log_epoch({k: v for k, v in metrics.items() if k != _STEP_KEY}, epoch)
        if checkpoint is not None:  # none after the last epoch: nothing resumes from it
            self.store.save(checkpoint)
        tune.report(metrics)

    def on_best(self, weights: dict[str, torch.Tensor], epoch: int) -> None:
        self.best = (weights, epoch)


def _keep_model(context: StudyContext, study: StudySpec, trial: Trial, opened: tracking.TrialRun,
                best: tuple[dict[str, torch.Tensor], int] | None, score: float) -> None:
    """Store the trial's best weights as its run's model if the study keeps them: always, never, or
    while this seed is among the k best of its arm so far (the driver removes the weights of seeds a
    better one supersedes once the trials end, so an arm ends with its k best)."""
    k = study.models_kept_per_arm
    if k is not None and k > 0:
        kept = tracking.kept_models(context.tracking_uri, context.experiment_id, context.parent_run_id, trial.arm,
                                    study.metric)
        as_good = [v for _, v in kept if (v >= score if study.mode == "max" else v <= score)]
        k = 0 if len(as_good) >= k else k
    if best is None or k == 0:
        opened.drop_model()
        return
    weights, epoch = best
    opened.keep_model(pack_model(trial.spec.model_dump_json(), classes_of(trial.spec.data), epoch, weights))


def _checkpoints(storage: str, trial_id: str) -> CheckpointStore:
    return CheckpointStore(f"{storage}/checkpoints/{trial_id}.pt")


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
        if self.view and not result.get(_DIVERGED_KEY):
            self.view.epoch(trial.trial_id, int(result[_STEP_KEY]), result[self.metric])

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if self.view:
            self.view.trial_finished(trial.trial_id, ok=not (trial.last_result or {}).get(_DIVERGED_KEY))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        if self.view:
            self.view.trial_finished(trial.trial_id, ok=False)


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
    skipped = prepare_data(trials, console)
    if not address:
        check_local_resources(spec)  # before the lease creates the store
    with tracking.hold_study(uri, spec.name), ThreadPoolExecutor(1) as background:
        # A new store's tables take seconds to create, and so does Ray: side by side, on a local Ray
        # (whose resources were checked above, so no store is made for a study that cannot start).
        store = None if address else background.submit(tracking.create_store, uri)
        quiet_tune()
        connect(address)
        check_resources(spec)
        if store:
            store.result()
        pretrained = {(t.spec.model.arch, t.spec.model.pretrained) for t in trials if t.spec.model.pretrained}
        for arch, weights in pretrained:
            check_weights(arch, weights)
        experiment_id, parent = tracking.open_study(
            uri, spec.name, params=spec.params() | {"search.seeds": spec.search.seeds, "trials": len(trials)},
            spec_yaml=spec_yaml,
        )
        tracking.describe_study(parent, axes=spec.axes(), design=spec.search.design, metric=spec.metric,
                                mode=spec.mode, storage=f"{storage}/{spec.name}",
                                skipped=[{"path": s.path, "reason": s.reason} for s in skipped])
        # A grid knows its trials, so a re-run skips those that finished; a search draws new ones.
        done = tracking.finished_trials(uri, experiment_id, parent.run_id) if spec.search.method == "grid" else set()
        pending = [t for t in trials if t.id not in done]
        outcome = StudyOutcome(uri, experiment_id, parent.run_id, f"{storage}/{spec.name}",
                               already_finished=len(trials) - len(pending))
        if not pending and not spec.search.race:  # a race may still want seeds beyond its start
            parent.finish()
            return outcome
        context = StudyContext(spec.model_dump(mode="json"), uri, experiment_id, parent.run_id, outcome.storage)
        StudyState(context, [t.id for t in pending]).save(outcome.storage)
        return _fit(spec, context, pending, parent, outcome, console)


def _tuner(spec: StudySpec, context: StudyContext, pending: list[Trial], *, redo: list[dict[str, Any]] = (),
           samples: int | None = None, race: RaceSearcher | None = None) -> tune.Tuner:
    """A Tuner over the pending trials (a grid), or drawing `samples` trials (default the spec's), the
    configurations in `redo` first (sampled trials a resumed study continues), or running a race."""
    if race is not None:  # it suggests every trial, from MLflow's finished runs
        space, settings = {}, {"search_alg": race, "num_samples": -1, "trial_name_creator": _trial_id,
                               "trial_dirname_creator": _trial_id}
    else:
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
        ended = {r.trial_id for r in records if r.ended}
        pending = [t for t in spec.trials() if t.id in set(state.trials) and t.id not in ended]
        redo, samples = [], None
        if spec.search.method != "grid":  # drawn trials: continue the unfinished ones, draw the rest anew
            redo = [_config_of(spec, r) for r in records if not r.ended]
            samples = max(0, spec.search.num_samples - sum(r.ended for r in records))
            pending = []
        prepare_data(pending if spec.search.method == "grid" and not spec.search.race else spec.trials(), console)
        outcome = StudyOutcome(uri, context.experiment_id, context.parent_run_id, folder)
        parent = tracking.reopen_study(uri, context.parent_run_id)
        if not pending and not samples and not spec.search.race:
            parent.finish()
            return spec, outcome
        quiet_tune()
        connect(address)
        check_resources(spec)
        return spec, _fit(spec, context, pending, parent, outcome, console, redo=redo[:samples], samples=samples)


def _time_latencies(spec: StudySpec, outcome: StudyOutcome, console) -> None:
    """Time each model the study trained that has no latency yet, one after another now that no trial
    shares the machine, and log it to every run of that model."""
    records = [r for r in tracking.study_trials(outcome.tracking_uri, outcome.experiment_id, outcome.parent_run_id)
               if tracking.LATENCY_MS not in r.metrics]
    if spec.search.method == "grid":
        planned = {t.id: t for t in spec.trials(every_seed=True)}
        trials = {r.run_id: planned[r.trial_id] for r in records if r.trial_id in planned}
    else:
        trials = {r.run_id: _trial_of(spec, _config_of(spec, r)) for r in records}
    timed = latencies(trials.values(), console)
    tracking.log_latencies(outcome.tracking_uri, {run: timed[costs_key(t.spec)].metrics() for run, t in trials.items()})


def _config_of(spec: StudySpec, record: tracking.TrialRecord) -> dict[str, Any]:
    """The Tune config of a drawn trial, from its logged params (values matched to the space's own)."""
    axes = {}
    for key, values in spec.search.space.items():
        logged = record.params.get(key)
        axes[key] = next(json.dumps(v) for v in values if tracking.as_param(
            json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else v) == logged)  # as spec.params() logs
    return {"axes": axes, "seed": int(record.params["seed"])}


def _fit(spec: StudySpec, context: StudyContext, trials: list[Trial], parent: tracking.TrackedRun,
         outcome: StudyOutcome, console, *, redo: list[dict[str, Any]] = (), samples: int | None = None
         ) -> StudyOutcome:
    sampled = spec.search.method != "grid"
    count = (spec.search.num_samples if samples is None else samples) if sampled else len(trials)
    view = StudyProgress(console, trials=count, epochs=spec.train.epochs, metric=spec.metric)
    _ProgressCallback.view = view
    race = RaceSearcher(spec, where=(context.tracking_uri, context.experiment_id, context.parent_run_id),
                        on_change=view.race) if spec.search.race else None
    tuner = _tuner(spec, context, trials, redo=redo, samples=samples, race=race)
    try:
        with view:
            results = tuner.fit()
    except KeyboardInterrupt:
        parent.finish(tracking.Status.KILLED)
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
        elif metrics.get(_DIVERGED_KEY):
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
        outcome.unfinished = [t.name for t in (race.started if race else trials) if t.name not in settled]
    if race is not None:
        race.refresh()
        outcome.race = race.decisions
        tracking.log_race(parent, race.baseline, race.decisions)
    tracking.drop_superseded(outcome.tracking_uri, outcome.experiment_id, outcome.parent_run_id,
                             keep=spec.models_kept_per_arm, metric=spec.metric, mode=spec.mode)
    _time_latencies(spec, outcome, console)
    # A trial killed mid-write may not have closed its run; none may stay RUNNING after the study.
    tracking.close_open_runs(outcome.tracking_uri, outcome.experiment_id, outcome.parent_run_id)
    tracking.finish_study(parent, failed=len(outcome.errors), diverged=len(outcome.diverged),
                          unfinished=len(outcome.unfinished))
    return outcome
