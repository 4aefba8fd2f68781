"""One trial under Ray Tune: the function Tune runs, which opens the trial's MLflow run, trains it
with `engine.fit` (from its checkpoint, on a retry), logs, checkpoints and reports each epoch, keeps
its weights if the study's policy does, and records how it ended; and the Tune config that names
the trial, which the driver (`study.py`) writes and reads back.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import ray
import torch
from ray import tune

from ablation import engine, tracking
from ablation.checkpoints import CheckpointStore, save_model
from ablation.data import classes_of
from ablation.driver import halts
from ablation.driver.worker_memory import keep_freed_memory, peak_rss_mb, release_freed_memory
from ablation.driver.prepare import model_costs
from ablation.core import StudySpec, Trial, label
from ablation.driver.state import StudyContext
from ablation.tracking.runs import store_failure, unlog_store_failures

STEP_KEY = "epoch"
DIVERGED_KEY = "diverged"  # in a trial's Tune result: its loss blew up, so its metrics are nan
RELAY_WAIT = 5.0  # seconds a trial waits for the study's relay to answer before it asks the store instead


def _failure(err: BaseException) -> tracking.Failure:
    """What kind of failure an exception is (a divergence is none: `trainable` records it as a result)."""
    if isinstance(err, (KeyboardInterrupt, SystemExit)):
        # Tune stops the trials of an interrupted study by raising in them; that is not their failure.
        return tracking.Failure.INTERRUPTED
    if isinstance(err, MemoryError) or "out of memory" in str(err).lower():
        return tracking.Failure.OUT_OF_MEMORY
    return tracking.Failure.ERROR


def trainable(config: dict[str, Any], context: StudyContext, relay: ray.actor.ActorHandle | None = None) -> None:
    """One trial (`_trial`). One that cannot go on because no trial can (the storage has no room for its
    checkpoint, the store takes no writes, another driver took the study over) reports why and ends rather
    than fail: Tune would retry it, and it would fail again each time. The driver then stops the study
    (`halts`)."""
    unlog_store_failures()
    try:
        _trial(config, context, relay)
    except Exception as err:
        halted = halts.why(err, storage=context.storage, uri=context.tracking_uri, trial=trial_name(config))
        if halted is None:
            raise
        tune.report({STEP_KEY: -1, StudySpec.model_validate(context.spec).metric: float("nan")} | halted)


def _trial(config: dict[str, Any], context: StudyContext, relay: ray.actor.ActorHandle | None) -> None:
    """Open the trial's run, train with callbacks that log, checkpoint and report each epoch (from its
    checkpoint if this is a retry), and record how it ended."""
    study = StudySpec.model_validate(context.spec)
    trial = trial_of(study, config)
    # Ray sets OMP_NUM_THREADS for the worker, but torch was imported before it could apply.
    torch.set_num_threads(max(1, int(study.resources.cpu)))
    keep_freed_memory()  # until the trial ends (`release_freed_memory`)
    store = checkpoint_store(context.storage, trial.id)
    resume = store.load()  # an earlier attempt's, if Tune is retrying this trial or the study resumed
    fence = tracking.lease_check(context.tracking_uri, context.experiment_id, study.name, context.lease_token,
                                 context.lease_ttl)
    # The relay knows which trials have a run: the first attempt of a new trial need not search the store.
    opened = tracking.open_trial(context.tracking_uri, context.experiment_id, context.parent_run_id,
                                 name=trial.name, trial_id=trial.id, params=trial.params(), fence=fence,
                                 new=ask_relay(relay, "claim", trial.id) is True)
    if store.set_aside:  # an unreadable checkpoint, renamed: the trial begins again
        opened.run.set_tags({tracking.Tag.CHECKPOINT_SET_ASIDE: store.set_aside})
    if opened.finished:
        # Restarted after its last epoch (the driver died before it heard): tell Tune how it ended.
        tune.report(opened.run.latest_metrics() | {STEP_KEY: study.train.epochs})
        opened.run.finish()
        return

    def kept(score: float) -> None:  # the trial's run now says it keeps its weights: its arm's others count them
        if relay is not None:
            relay.kept.remote(trial.arm, trial.id, score)

    epochs = _Epochs(study, opened, store, resume, kept=kept,
                     keep=lambda best, score: _keep_model(context, study, trial, opened, best, score, relay))
    key = tune.get_context().get_trial_id()
    on_batch = every(1.0, lambda done, total: relay.put.remote(key, done, total)) if relay else None
    if relay and resume:  # the view shows the epochs it had done at once, not 0 until its next epoch ends
        relay.restored.remote(key, resume["epoch"])
    device = _start(opened, trial, resume)  # its timer is stopped in the `finally` below
    try:
        engine.fit(trial.spec, trial.seed, on_epoch=epochs.on_epoch, on_best=epochs.on_best, resume=resume,
                   device=device, on_batch=on_batch)
    except engine.Diverged as err:
        # A result, not a crash: recorded and not retried (retrying would diverge again).
        opened.fail(tracking.Failure.DIVERGENCE, str(err))
        tune.report({STEP_KEY: -1, DIVERGED_KEY: 1.0, study.metric: float("nan")})
        return
    except tracking.LeaseLost:
        raise  # the study is another driver's now: this attempt writes nothing more, not even its end
    except BaseException as err:
        failure = _failure(err)
        if store_failure(err, context.tracking_uri) is not None:
            pass  # a store that takes no writes takes no record of it either
        elif failure == tracking.Failure.INTERRUPTED and epochs.last == study.train.epochs:
            opened.finish()  # stopped as its last report arrived: it had finished
        else:
            opened.fail(failure, f"{type(err).__name__}: {err}")
        raise
    finally:
        store.close()
        opened.stop_system_metrics()
        release_freed_memory()
    opened.finish()
    store.delete()  # a finished trial is never resumed


def _start(opened: tracking.TrialRun, trial: Trial, resume: dict[str, Any] | None) -> str:
    """Record this attempt on the trial's run, and unless an earlier attempt did, its model's size; returns
    its device. (An earlier attempt may have died before it recorded anything: its worker killed in its
    start-up by Ray's memory monitor, whose kill the driver recorded on a run it made.)"""
    gpus = ray.get_gpu_ids()
    device = "cuda" if gpus and torch.cuda.is_available() else "cpu"
    costed = opened.attempts and tracking.PARAMS_TOTAL in opened.run.latest_metrics()  # a retry only reads
    # Latency is timed by the driver after the trials, when they no longer share the machine.
    opened.start(node_id=ray.get_runtime_context().get_node_id(), pid=os.getpid(), device=device, gpu_ids=gpus,
                 resumed_from_epoch=resume["epoch"] if resume else 0,
                 costs={} if costed else model_costs(trial.spec),
                 gpu_name=torch.cuda.get_device_name(torch.device(device)) if device == "cuda" else "",
                 cpu_kernels=torch.backends.cpu.get_cpu_capability())
    return device


class _Epochs:
    """What `engine.fit` calls back: each epoch logged to MLflow once, checkpointed and reported to
    Tune; the best weights held for the end, when the study's policy decides whether they are kept."""

    def __init__(self, study: StudySpec, opened: tracking.TrialRun, store: CheckpointStore,
                 resume: dict[str, Any] | None, keep: Callable[..., tracking.ModelKept],
                 kept: Callable[[float], Any]) -> None:
        self.study, self.opened, self.store, self.keep, self.kept = study, opened, store, keep, kept
        self.last = resume["epoch"] if resume else 0
        self.best: tuple[dict[str, torch.Tensor], int] | None = None

    def on_epoch(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None) -> None:
        epoch = self.last = int(metrics[STEP_KEY])
        self.store.wait()  # so an epoch in MLflow means the one before it is checkpointed
        # After the last epoch, what becomes of the weights is said in that epoch's write.
        last = epoch == self.study.train.epochs
        score = metrics[tracking.best(self.study.metric)] if last else None
        tags = {tracking.Tag.MODEL: self.keep(self.best, score)} if last else {}
        logged = {k: v for k, v in metrics.items() if k != STEP_KEY} | {tracking.PEAK_RSS_MB: peak_rss_mb()}
        self.opened.log_epoch(logged, epoch, tags)
        if tags.get(tracking.Tag.MODEL) == tracking.ModelKept.KEPT:  # its run says so now: the arm's others see it
            self.kept(score)
        if checkpoint is not None:  # none after the last epoch: nothing resumes from it
            self.store.save(checkpoint)
        tune.report(metrics)

    def on_best(self, weights: dict[str, torch.Tensor], epoch: int) -> None:
        self.best = (weights, epoch)


def _keep_model(context: StudyContext, study: StudySpec, trial: Trial, opened: tracking.TrialRun,
                best: tuple[dict[str, torch.Tensor], int] | None, score: float,
                relay: ray.actor.ActorHandle | None = None) -> tracking.ModelKept:
    """Store the trial's best weights as its run's model if the study keeps them: always, never, or
    while this seed is among the k best of its arm so far, by the relay's account of the arm's kept weights
    (or the store's, without a relay). The driver removes the weights of seeds a better one superseded once
    the trials end (two that ended at once may both keep theirs), so an arm ends with its k best."""
    k = study.models_kept_per_arm
    if k is not None and k > 0:
        kept = ask_relay(relay, "kept_scores", trial.arm)
        if kept is None:
            kept = dict(tracking.kept_models(context.tracking_uri, context.experiment_id, context.parent_run_id,
                                             trial.arm, study.metric))
        # Its own earlier attempt's (a retry of its last epoch) is not another seed's.
        others = [v for who, v in kept.items() if who not in (trial.id, opened.run.run_id)]
        as_good = [v for v in others if (v >= score if study.mode == "max" else v <= score)]
        k = 0 if len(as_good) >= k else k
    if best is None or k == 0:
        return tracking.ModelKept.NOT_KEPT
    weights, epoch = best
    opened.upload_model(lambda file: save_model(file, trial.spec.model_dump_json(), classes_of(trial.spec.data),
                                                epoch, weights))
    return tracking.ModelKept.KEPT


def ask_relay(relay: ray.actor.ActorHandle | None, method: str, *args: Any) -> Any:
    """The study relay's answer (`relay.StudyRelay`), or None without one, or when it died or does not
    answer: its caller then asks the store, as the relay spares it."""
    if relay is None:
        return None
    try:
        return ray.get(getattr(relay, method).remote(*args), timeout=RELAY_WAIT)
    except ray.exceptions.RayError:
        return None


def checkpoint_folder(storage: str) -> str:
    return f"{storage}/checkpoints"


def checkpoint_store(storage: str, trial_id: str) -> CheckpointStore:
    return CheckpointStore(f"{checkpoint_folder(storage)}/{trial_id}.pt")


def listed_config(trial: Trial) -> dict[str, Any]:
    """The Tune config of a trial the driver lists (a grid's, a race's): `trial_of` reads it back."""
    return {"trial": {"id": trial.id, "name": trial.name, "arm": trial.arm, "overrides": trial.overrides}}


def trial_of(study: StudySpec, config: dict[str, Any]) -> Trial:
    """The spec trial a Tune config stands for: listed by the driver (grid), or drawn by a searcher,
    whose values are JSON strings so every searcher's categorical choices accept them."""
    if "trial" in config:
        return Trial.create(study, config["trial"]["overrides"], arm=config["trial"]["arm"])
    return Trial.create(study, drawn(config) | {"seed": config["seed"]})


def drawn(config: dict[str, Any]) -> dict[str, Any]:
    return {key: json.loads(value) for key, value in config["axes"].items()}


def trial_name(config: dict[str, Any]) -> str:
    if "trial" in config:
        return config["trial"]["name"]
    return f"{label(drawn(config))},seed={config['seed']}"  # as Trial.name spells it


def tune_trial_id(trial) -> str:
    return trial.config["trial"]["id"]


def every(seconds: float, send: Callable[[int, int], None], clock: Callable[[], float] = time.monotonic
          ) -> Callable[[int, int], None]:
    """`send(done, total)` at most once per `seconds`: what a trial calls after every batch."""
    last = -float("inf")

    def on_batch(done: int, total: int) -> None:
        nonlocal last
        if clock() - last >= seconds:
            last = clock()
            send(done, total)

    return on_batch
