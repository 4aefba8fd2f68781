"""Running a study's trials under Ray Tune, once `launch.py` has checked the study, joined Ray and opened
the study's MLflow parent run: the Tuner over them, the trials' outcomes, and the study's own on its
parent run.

With `cluster.py`, `trainable.py` (the trial's side) and `memory_kills.py`, the only modules that import
Ray. Each Tune trial is exactly one `core.Trial`: a grid's are listed to Tune (`ListedTrials`), drawn ones
are mapped back (`trial_of`). Every trial logs to MLflow itself through the absolute tracking URI it is
given, so nothing depends on Ray's result files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import ray
from ray import tune

from ablation import tracking
from ablation.checkpoints import remove_partial_writes
from ablation.core import Study, StudySpec, Trial
from ablation.driver.cluster import StudyStopped
from ablation.driver.halts import Halts
from ablation.driver.listed import ListedTrials, as_many_pending
from ablation.driver.memory_kills import MemoryKillRecorder, handle_memory_kills
from ablation.driver.memory_kills import cause as memory_kill
from ablation.driver.prepare import costs_key, latencies
from ablation.driver.progress import ProgressCallback, ViewFactory
from ablation.driver.race import RaceSearcher
from ablation.driver.relay import StudyRelay
from ablation.driver.state import StudyContext, StudyOutcome, config_of
from ablation.driver.trainable import (DIVERGED_KEY, STEP_KEY, checkpoint_folder, checkpoint_store, trainable,
                                       trial_name, trial_of, tune_trial_id)
from ablation.stats import racing
from ablation.stats.analysis import clip, mean_ci, metric_range


def _search(spec: StudySpec, pending: list[Trial], *, redo: list[dict[str, Any]] = (),
            samples: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tune's param space and the TuneConfig settings that pick and stop trials: the pending trials of a
    grid, or `samples` draws (default the spec's `num_samples`), the configurations in `redo` first."""
    s = spec.search
    settings: dict[str, Any] = {}
    if s.scheduler == "asha":
        settings["scheduler"] = tune.schedulers.ASHAScheduler(
            time_attr=STEP_KEY, max_t=spec.train.epochs, grace_period=s.grace_period,
            reduction_factor=s.reduction_factor)
    elif s.scheduler == "hyperband":
        settings["scheduler"] = tune.schedulers.HyperBandScheduler(
            time_attr=STEP_KEY, max_t=spec.train.epochs, reduction_factor=s.reduction_factor)
    if s.method == "grid":
        settings |= {"search_alg": ListedTrials(pending), "num_samples": -1, "trial_name_creator": tune_trial_id,
                     "trial_dirname_creator": tune_trial_id}
        return {}, settings
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


def _trainable_for(spec: StudySpec, context: StudyContext, relay):
    memory = {"memory": int(context.memory_mb * 2**20)} if context.memory_mb else {}
    return tune.with_resources(tune.with_parameters(trainable, context=context, relay=relay),
                               {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu} | memory)


def _tuner(spec: StudySpec, context: StudyContext, pending: list[Trial], *, redo: list[dict[str, Any]] = (),
           samples: int | None = None, race: RaceSearcher | None = None,
           callbacks: Sequence[tune.Callback] = (), relay=None, stop: tune.Stopper | None = None) -> tune.Tuner:
    """A Tuner over the pending trials (a grid), or drawing `samples` trials (default the spec's), the
    configurations in `redo` first (sampled trials a resumed study continues), or running a race."""
    if race is not None:  # it suggests every trial, from MLflow's finished runs
        space, settings = {}, {"search_alg": race, "num_samples": -1, "trial_name_creator": tune_trial_id,
                               "trial_dirname_creator": tune_trial_id}
    else:
        space, settings = _search(spec, pending, redo=redo, samples=samples)
    storage, _, name = context.storage.rpartition("/")
    return tune.Tuner(
        _trainable_for(spec, context, relay),
        param_space=space,
        tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, reuse_actors=True, **settings),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=0, stop=stop,
            failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
            callbacks=list(callbacks),
        ),
    )


def _time_latencies(study: Study, outcome: StudyOutcome, console) -> None:
    """Time each model the study trained that has no latency yet, one after another now that no trial
    shares the machine, and log it to every run of that model."""
    records = [r for r in tracking.study_trials(outcome.tracking_uri, outcome.experiment_id, outcome.parent_run_id)
               if tracking.LATENCY_MS not in r.metrics]
    spec = study.spec
    if spec.search.method == "grid":
        planned = {t.id: t for t in study.every_trial}
        trials = {r.run_id: planned[r.trial_id] for r in records if r.trial_id in planned}
    else:
        trials = {r.run_id: trial_of(spec, config_of(spec, r)) for r in records}
    timed = latencies(trials.values(), console)
    tracking.log_latencies(outcome.tracking_uri, {run: timed[costs_key(t.spec)].metrics() for run, t in trials.items()})


class LeaseStopper(tune.Stopper):
    """Stops every trial once another driver has taken the study over (this one was suspended, or cut
    off from the store): Tune asks after each step, and the lease reads its record only when its last
    answer has grown old, so this costs a read every few seconds at most."""

    def __init__(self, lease) -> None:
        self.lease = lease

    def __getstate__(self) -> dict:
        # Tune pickles its settings to `tuner.pkl`, which `ablate resume` never unpickles; a lease's thread
        # cannot be pickled, and a copy of it would hold nothing.
        return {"lease": None}

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        if self.lease is None:
            return False
        try:
            self.lease.check()
        except tracking.LeaseLost:
            return True
        except Exception:  # noqa: BLE001 - an unreadable record is not a lost lease; its heartbeat decides
            return False
        return False


def _known_runs(records: Sequence[tracking.TrialRecord], metric: str) -> tuple[list[str], dict[str, dict[str, float]]]:
    """What the study's relay starts from (`StudyRelay`), read from the study's runs in the store: the trials
    that have a run already (a re-run's, a resumed study's), and the best scores of the weights each arm
    keeps, by trial id."""
    kept: dict[str, dict[str, float]] = {}
    for r in records:
        if r.trial_id and "arm" in r.params and r.tags.get(tracking.Tag.MODEL) == tracking.ModelKept.KEPT:
            kept.setdefault(r.params["arm"], {})[r.trial_id] = r.metrics.get(tracking.best(metric), float("nan"))
    return [r.trial_id for r in records if r.trial_id], kept


def _what_stopped(err: BaseException) -> str:
    """One line for an error out of `Tuner.fit` (Ray's messages run to dozens of lines)."""
    text = str(err).strip()
    killed = memory_kill(text)
    if killed:
        return f"a worker was {killed}"
    first = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {first[:300]}" if first else type(err).__name__


def fit(study: Study, context: StudyContext, trials: list[Trial], parent: tracking.TrackedRun,
        outcome: StudyOutcome, console, make_view: ViewFactory, *, records: Sequence[tracking.TrialRecord],
        redo: list[dict[str, Any]] = (), samples: int | None = None, lease) -> StudyOutcome:
    """Hand `trials` (a grid's pending ones; or `samples` draws, `redo` first; or a race) to Tune on the Ray this
    process has joined, each logging under `parent`, whose runs the store held as `records` when the driver
    read them (`tracking.study_trials`), and record what came of them: the trials that failed,
    diverged, were stopped early or never finished, the race's decisions, the weights kept, the models'
    latencies and the study's outcome on `parent`."""
    spec = study.spec
    sampled = spec.search.method != "grid"
    count = (spec.search.num_samples if samples is None else samples) if sampled else len(trials)
    view = make_view(trials=count, epochs=spec.train.epochs, metric=spec.metric,
                         pending=[] if sampled or spec.search.race else [t.name for t in trials])
    relay = ray.remote(num_cpus=0)(StudyRelay).remote(*_known_runs(records, spec.metric))
    progress = ProgressCallback(spec.metric, view, relay)
    handle_memory_kills()  # a worker Ray's memory monitor kills is a trial failure, not the study's end
    kills = MemoryKillRecorder(spec, context, relay)
    race = RaceSearcher(study, where=(context.tracking_uri, context.experiment_id, context.parent_run_id),
                        on_change=view.race) if spec.search.race else None
    halts = Halts(LeaseStopper(lease), context.storage)  # a full storage, an unwritable store: no trial can go on
    tuner = _tuner(spec, context, trials, redo=redo, samples=samples, race=race, callbacks=[progress, kills],
                   relay=relay, stop=halts)
    try:
        with view, halts, as_many_pending() if not sampled and race is None else contextlib.nullcontext():
            results = tuner.fit()
        lease.check()  # taken over while this driver was suspended: everything below is the new holder's
    except KeyboardInterrupt:
        lease.check()
        parent.finish(tracking.Status.KILLED)
        raise
    except tracking.LeaseLost:
        raise
    except Exception as err:  # Ray or Tune failed, not a trial: say so in one line, and how to go on
        lease.check()
        with contextlib.suppress(Exception):
            parent.finish(tracking.Status.KILLED)  # as an interrupted study's: a resume continues it
        raise StudyStopped(f"Ray stopped the study ({_what_stopped(err)}); trials that finished are kept. "
                           f"Continue with:  ablate resume {outcome.storage}") from err
    finally:
        with contextlib.suppress(Exception):  # it may be dead already
            ray.kill(relay)
        # A trial stopped mid-write (the study halted for a full disk, or an earlier driver was killed) left
        # its half; none runs now. A trial that overwrites a half before this simply finishes its write.
        with contextlib.suppress(OSError):
            remove_partial_writes(checkpoint_folder(outcome.storage))
    halts.check(parent, outcome)
    outcome.memory_kills = dict(kills.killed)
    early = spec.search.scheduler != "fifo"
    settled: set[str] = set()  # names of the trials that ended one way or another
    configs = [result.config or (progress.failed.get(result.path) if result.error is not None else None)
               for result in results]
    for result, config in zip(results, configs):
        if not config:  # never started
            continue
        name, metrics = trial_name(config), result.metrics or {}
        if result.error is not None:
            text = str(result.error).strip() or type(result.error).__name__
            outcome.errors[name] = memory_kill(text) or kills.killed.get(name) or text.splitlines()[-1]
        elif metrics.get(DIVERGED_KEY):
            outcome.diverged.append(name)
        elif metrics.get(STEP_KEY) == spec.train.epochs:
            pass
        elif early and metrics.get(STEP_KEY):
            # The scheduler stopped it: a result of the search, recorded as such, not an interruption.
            outcome.stopped_early[name] = int(metrics[STEP_KEY])
            trial_id = trial_of(spec, config).id
            tracking.mark_stopped_early(outcome.tracking_uri, outcome.experiment_id, outcome.parent_run_id,
                                        trial_id, epoch=int(metrics[STEP_KEY]))
            checkpoint_store(outcome.storage, trial_id).delete()  # finished, as far as the study goes
        else:
            continue
        settled.add(name)
    if sampled:  # a searcher may draw one configuration twice; count draws, not names
        ended = sum(1 for c in configs if c and trial_name(c) in settled)
        outcome.unfinished = ["(a drawn trial)"] * (count - ended)
    else:
        outcome.unfinished = [t.name for t in (race.started if race else trials) if t.name not in settled]
    if race is not None:
        race.refresh()
        outcome.race = race.decisions
        _log_race(parent, race)
    tracking.drop_superseded(outcome.tracking_uri, outcome.experiment_id, outcome.parent_run_id,
                             keep=spec.models_kept_per_arm, metric=spec.metric, mode=spec.mode)
    _time_latencies(study, outcome, console)
    # A trial killed mid-write may not have closed its run; none may stay RUNNING after the study.
    tracking.close_open_runs(outcome.tracking_uri, outcome.experiment_id, outcome.parent_run_id)
    records = tracking.study_trials(outcome.tracking_uri, outcome.experiment_id, outcome.parent_run_id)
    summary, best_arm = study_outcome(records, spec.metric, spec.mode)
    tracking.finish_study(parent, failed=len(outcome.errors), diverged=len(outcome.diverged),
                          unfinished=len(outcome.unfinished), outcome=summary, best_arm=best_arm)
    return outcome


def _log_race(parent: tracking.TrackedRun, race: RaceSearcher) -> None:
    """The race's decisions on the parent run: each arm's state, how many arms it decided (better, worse
    or equivalent), and each decision in full."""
    decisions = race.decisions
    decided = sum(d.state in (racing.BETTER, racing.WORSE, racing.EQUIVALENT) for d in decisions.values())
    tracking.log_race(parent, race.baseline, {arm: d.state for arm, d in decisions.items()}, decided=decided,
                      decisions=[dataclasses.asdict(d) for d in decisions.values()])


def study_outcome(records: list[tracking.TrialRecord], metric: str,
                  mode: str) -> tuple[dict[str, float], str | None]:
    """A study's outcome from its trials' runs, as the parent run's metrics and its best arm: the best arm by
    the mean over its finished seeds of `best(metric)` (in `mode`), with its 95% t-interval (bounds only from
    two seeds on); the seeds run, the failed trials, and the trials' hours (the sum of their runs' durations)."""
    key = tracking.best(metric)
    finished = [r for r in records if r.outcome == tracking.Outcome.FINISHED and key in r.metrics]
    by_arm: dict[str, list[float]] = {}
    for r in finished:
        if r.metrics[key] == r.metrics[key]:  # not nan
            by_arm.setdefault(r.params.get("arm", ""), []).append(r.metrics[key])
    hours = sum((r.end_time - r.start_time) for r in records if r.end_time and r.start_time) / 3.6e6
    summary = {"seeds_run": len({r.params.get("seed") for r in finished}), "trial_hours": hours,
               "trials_failed": sum(r.outcome == tracking.Outcome.FAILED for r in records)}
    if not by_arm:
        return summary, None
    intervals = {arm: mean_ci(values) for arm, values in by_arm.items()}
    arm = (max if mode == "max" else min)(intervals, key=lambda a: intervals[a].mean)
    found = intervals[arm]
    summary |= {"best.mean": found.mean, "best.n": found.n}
    if found.low == found.low:  # two seeds or more; an F1's bounds kept to [0, 1], as the report keeps them
        bounded = clip(found, *metric_range(key))
        summary |= {"best.low": bounded.low, "best.high": bounded.high}
    return summary, arm
