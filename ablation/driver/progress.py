"""Progress from a running study to whoever watches it: a Tune callback that forwards trial events to
a view (and the batch counts trials put to `relay.StudyRelay`), and what a view must offer. The view
itself is the caller's (the CLI's live view); the driver knows only this protocol, and runs without one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import ray
from ray import tune

from ablation.driver.halts import HALT_KEY
from ablation.driver.trainable import DIVERGED_KEY, STEP_KEY, trial_name


class ProgressView(Protocol):
    """What the driver tells a view of a running study (the CLI's `StudyProgress` is one)."""

    def __enter__(self) -> ProgressView: ...
    def __exit__(self, *exc) -> None: ...
    def trial_started(self, key: str, name: str) -> None: ...
    def epoch(self, key: str, epoch: int, value: float) -> None: ...
    def batches(self, key: str, done: int, total: int) -> None: ...
    def restored(self, key: str, epoch: int) -> None: ...
    def trial_finished(self, key: str, ok: bool, name: str | None = None) -> None: ...
    def race(self, rows: list[tuple[str, int, int, str]], started: int, most: int) -> None: ...


# (trials=, epochs=, metric=, pending=) -> a view; the driver calls it once per fit.
ViewFactory = Callable[..., ProgressView]


class NoView:
    """A view that shows nothing: a study run from code, or a benchmark's."""

    def __init__(self, **_: Any) -> None:
        pass

    def __enter__(self) -> NoView:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def trial_started(self, key: str, name: str) -> None:
        pass

    def epoch(self, key: str, epoch: int, value: float) -> None:
        pass

    def batches(self, key: str, done: int, total: int) -> None:
        pass

    def restored(self, key: str, epoch: int) -> None:
        pass

    def trial_finished(self, key: str, ok: bool, name: str | None = None) -> None:
        pass

    def race(self, rows: list[tuple[str, int, int, str]], started: int, most: int) -> None:
        pass


_RELAY_WAIT = 5.0  # seconds the driver waits for the relay's batch counts before it gives up on them


class ProgressCallback(tune.Callback):
    """Forwards Tune's trial events to the live view the driver owns, and the trials' batch counts from
    their relay actor. Tune pickles its callbacks into the experiment state: neither the terminal's
    view nor the relay travels with them (`__getstate__`)."""

    def __init__(self, metric: str, view: ProgressView, relay) -> None:
        self.metric, self.view = metric, view
        self.relay = relay  # the StudyRelay actor that trials put their batch counts to; None once it died
        self.drained = 0.0
        # The config of each trial that failed for good, by its path: Tune's result holds none for a trial
        # that failed before its first report (its worker killed in its start-up, say).
        self.failed: dict[str, dict[str, Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "view": None, "relay": None}

    def on_step_end(self, iteration, trials, **info) -> None:
        # Tune's loop turns many times a second; the trials' batch counts are fetched once a second.
        if self.view and self.relay and time.monotonic() - self.drained >= 1:
            self.drained = time.monotonic()
            try:
                counts, resumed = ray.get(self.relay.take.remote(), timeout=_RELAY_WAIT)
            except ray.exceptions.RayError:
                # Its worker died (Ray's memory monitor may pick it) or hangs: the view goes on, without
                # batch counts, and so does the study. Trials' puts to a dead actor fail only when fetched.
                self.relay = None
                return
            for key, epoch in resumed.items():  # before their batches, which are of the epoch after it
                self.view.restored(key, epoch)
            for key, (done, total) in counts.items():
                self.view.batches(key, done, total)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if self.view:
            self.view.trial_started(trial.trial_id, trial_name(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if self.view and not result.get(DIVERGED_KEY) and not result.get(HALT_KEY):
            self.view.epoch(trial.trial_id, int(result[STEP_KEY]), result[self.metric])

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if self.view:
            last = trial.last_result or {}
            self.view.trial_finished(trial.trial_id, ok=not last.get(DIVERGED_KEY) and not last.get(HALT_KEY))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.failed[trial.path] = trial.config
        if self.view:
            self.view.trial_finished(trial.trial_id, ok=False, name=trial_name(trial.config))
