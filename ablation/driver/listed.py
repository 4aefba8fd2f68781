"""A grid's trials handed to Tune one at a time, in the order the study lists them.

Tune's own `grid_search` deep-copies its whole space for each trial it makes, the list of every trial's
config included, and walks it: at 1,000 trials the first one started 3.4-4.8 s later than with a list of
1,000 plain ids, and than at 100 trials (measured, `docs/benchmarks.md`). A searcher suggests each
config once, as the race's does; while the grid runs (`as_many_pending`), Tune keeps as many of its
trials pending as it would of its own grid's."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray
from ray.tune.search import Searcher

from ablation.core import Trial
from ablation.driver.trainable import listed_config


class ListedTrials(Searcher):
    def __init__(self, trials: list[Trial]) -> None:
        super().__init__()  # no metric for Tune to demand of every result: the study reads MLflow
        self.left = deque(trials)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the trials are listed; Tune's space is empty

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        return listed_config(self.left.popleft()) if self.left else Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Nothing to learn: a grid's trials do not depend on each other's results."""

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: `ablate resume` lists what is left from MLflow, never from Tune's files."""

    def restore(self, checkpoint_path: str) -> None:
        """See `save`."""


_PENDING = "TUNE_MAX_PENDING_TRIALS_PG"  # read by Tune as it starts a Tuner's run


@contextmanager
def as_many_pending() -> Iterator[None]:
    """Let Tune keep as many trials pending as it keeps of its own grid (its rule: 200, or 1.1 per CPU of a
    larger cluster), where it keeps one for any searcher. With one, 100 tiny trials took 52 s against 34-36
    s; with 16, each trial's hand-over took 6 ms longer (measured). A value the user set stands."""
    if _PENDING in os.environ:
        yield
        return
    os.environ[_PENDING] = str(max(200, int(ray.cluster_resources().get("CPU", 1.0) * 1.1)))
    try:
        yield
    finally:
        os.environ.pop(_PENDING, None)
