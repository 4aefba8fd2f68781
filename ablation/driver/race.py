"""A race on Ray Tune: a searcher that hands each freed slot the next trial whose result can still
change an answer, and decides the arms (`racing.py`) from MLflow's finished runs after every result.

Every arm runs the race's first `start` seeds; an arm still open gets its next seed once its seeds so
far are paired and it is still open (a seed started sooner could be wasted on an arm about to be
decided), the baseline runs every seed an open arm runs, and decided arms get none. Nothing is kept that MLflow does not hold: a re-run or a resumed race starts
from the finished runs, continues unfinished ones from their checkpoints (their trial ids are the
same), and gains no seed once every arm is decided.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.search import Searcher

from ablation import tracking

from ablation.stats import racing
from ablation.core import Study, Trial
from ablation.driver.trainable import listed_config

# Per arm, for the live view: (arm, seeds finished, seeds running, state).
RaceRows = list[tuple[str, int, int, str]]


class RaceSearcher(Searcher):
    def __init__(self, study: Study, *, where: tuple[str, str, str],
                 on_change: Callable[[RaceRows, int, int], None] | None = None) -> None:
        """`where`: the tracking URI, experiment id and parent run id of the study. `on_change(rows, started,
        most)` hears of each change: the arms' rows, the trials started, the most the race may start."""
        super().__init__()  # no metric for Tune to demand of every epoch's result: the race reads MLflow
        spec = study.spec
        self.study, self.spec, self.race = study, spec, spec.search.race
        self.where = where
        self.baseline = study.baseline
        self.arms = study.arm_names
        self.seeds = spec.search.seeds
        self.on_change = on_change
        self.running: dict[str, tuple[str, int]] = {}  # Tune trial id -> (arm, seed)
        self.failed: set[tuple[str, int]] = set()  # seeds that failed for good or diverged: never a result
        self.started: list[Trial] = []  # trials this driver handed to Tune
        self.finished: dict[str, dict[int, float]] = {}
        self.decisions: dict[str, racing.Decision] = {}
        self.refresh()

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its searcher with the experiment state; the live view stays with this driver.
        return {**self.__dict__, "on_change": None}

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: a race is recomputed from MLflow, never restored from Tune's files."""

    def restore(self, checkpoint_path: str) -> None:
        """See `save`."""

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the race knows its metric and its trials; Tune's space is empty

    def refresh(self) -> None:
        """Re-read the finished seeds from MLflow and decide again (the same data, the same decisions)."""
        key = tracking.best(self.spec.metric)
        finished: dict[str, dict[int, float]] = {arm: {} for arm in self.arms}
        for record in tracking.study_trials(*self.where):
            arm = record.params.get("arm")
            if arm not in finished:
                continue
            if record.outcome == tracking.Outcome.FINISHED and key in record.metrics:
                finished[arm][int(record.params["seed"])] = record.metrics[key]
            elif record.outcome == tracking.Outcome.DIVERGED:  # a retry would diverge again
                self.failed.add((arm, int(record.params["seed"])))
        self.finished = finished
        family = [a for a in self.arms if a != self.baseline] if self.race.mode == "baseline" else self.arms
        failed: dict[str, list[int]] = {}
        for arm, seed in self.failed:
            failed.setdefault(arm, []).append(seed)
        self.decisions = racing.decide(
            finished, self.baseline, self.seeds, margin=self.race.margin, alpha=self.race.alpha,
            max_seeds=len(self.seeds), start=self.race.start, mode=self.race.mode,
            higher_is_better=self.spec.mode == "max", arms=family, failed=failed)
        if self.on_change:
            self.on_change(self.rows(), len(self.started), self.most())

    def _open(self) -> list[str]:
        """The arms that still race (an arm whose next seed failed for good is "stopped": decided)."""
        return [a for a, d in self.decisions.items() if not d.decided]

    def wanted(self) -> list[tuple[str, int]]:
        """The trials worth starting now, lowest seeds first, each seed's baseline before its arms."""
        busy = set(self.running.values())
        limits = {}
        for arm in self._open():
            pairs = self.decisions[arm].seeds
            limits[arm] = min(len(self.seeds), max(self.race.start, pairs + 1))
        wanted = []
        for i, seed in enumerate(self.seeds):
            arms = [a for a, limit in limits.items() if i < limit]
            if arms and self.race.mode == "baseline":
                arms = [self.baseline, *arms]
            wanted += [(a, seed) for a in dict.fromkeys(arms)
                       if seed not in self.finished.get(a, {}) and (a, seed) not in busy | self.failed]
        return wanted

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        wanted = self.wanted()
        if not wanted:
            return None if self.running else Searcher.FINISHED
        arm, seed = wanted[0]
        trial = self.study.trial(arm, seed)
        self.running[trial_id] = (arm, seed)
        self.started.append(trial)
        if self.on_change:
            self.on_change(self.rows(), len(self.started), self.most())
        return listed_config(trial)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        arm_seed = self.running.pop(trial_id, None)
        if arm_seed is None:
            return
        if error:  # retried by Tune up to max_failures already: it will not become a result
            self.failed.add(arm_seed)
        self.refresh()

    def most(self) -> int:
        """The trials this driver may yet have started when the race ends: those started, and each seed
        no trial has been given of every arm still open (and of the baseline while any arm is)."""
        open_arms = self._open()
        racing = set(open_arms) | ({self.baseline} if open_arms and self.baseline else set())
        given: dict[str, set[int]] = {arm: set(self.finished.get(arm, {})) for arm in racing}
        for trial in self.started:
            given.get(trial.arm, set()).add(trial.seed)
        for arm, seed in self.failed:
            given.get(arm, set()).add(seed)
        return len(self.started) + sum(len(set(self.seeds) - given[arm]) for arm in racing)

    def rows(self) -> RaceRows:
        running = list(self.running.values())
        return [(arm, len(self.finished.get(arm, {})), sum(1 for a, _ in running if a == arm),
                 "baseline" if arm not in self.decisions else self.decisions[arm].state) for arm in self.arms]
