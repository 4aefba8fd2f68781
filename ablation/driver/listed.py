"""A grid's trials handed to Tune one at a time, in the order the study lists them.

Tune's own `grid_search` deep-copies its whole space for each trial it makes, the list of every trial's
config included, and walks it: at 1,000 trials the first one started 3.4-4.8 s later than with a list of
1,000 plain ids, and than at 100 trials (measured, `docs/benchmarks.md`). A searcher suggests each
config once, as the race's does."""

from __future__ import annotations

from collections import deque
from typing import Any

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
