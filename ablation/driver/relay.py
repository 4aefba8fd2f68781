"""The actor a running study's trials and its driver share. It runs in a process of its own, so this module
imports nothing: an actor that unpickled a module importing torch would hold a trial worker's memory
(about 1 GB) to relay a few numbers.
"""

from __future__ import annotations


class StudyRelay:
    """What the trials and the driver of a running study tell each other, through one Ray actor the driver
    hosts:

    - to the driver, for its view: each trial's latest batch count (`put`) and the epoch a trial resumed
      after (`restored`), which it `take`s;
    - to the trials, what they would otherwise search the store for, twice each: whether a trial is the
      first to open a run (`claim`), and the scores of the weights its arm keeps so far (`kept_scores`,
      which each trial that keeps its weights adds to with `kept` once its run says so).

    The driver seeds it from the store: the trials that have a run already, and the weights kept. A trial
    whose relay is gone asks the store, as it would without one.
    """

    def __init__(self, opened: list[str] | None = None, kept: dict[str, dict[str, float]] | None = None) -> None:
        self.latest: dict[str, tuple[int, int]] = {}
        self.resumed: dict[str, int] = {}
        self.opened = set(opened or ())  # trial ids that have a run, or whose run is being opened
        self.weights = {arm: dict(scores) for arm, scores in (kept or {}).items()}  # arm -> trial id -> score

    def put(self, key: str, done: int, total: int) -> None:
        self.latest[key] = (done, total)

    def restored(self, key: str, epoch: int) -> None:
        self.resumed[key] = epoch

    def take(self) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
        latest, resumed, self.latest, self.resumed = self.latest, self.resumed, {}, {}
        return latest, resumed

    def claim(self, trial_id: str) -> bool:
        """True once for a trial that had no run: its caller creates the run without searching for one.
        Everyone after (the trial's retry, the driver recording a memory kill) gets False, and searches."""
        if trial_id in self.opened:
            return False
        self.opened.add(trial_id)
        return True

    def kept_scores(self, arm: str) -> dict[str, float]:
        """The best scores of the arm's trials whose runs keep their weights, by trial id."""
        return dict(self.weights.get(arm, {}))

    def kept(self, arm: str, trial_id: str, score: float) -> None:
        self.weights.setdefault(arm, {})[trial_id] = score
