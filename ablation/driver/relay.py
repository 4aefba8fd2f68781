"""The actor trials put their batch counts to, and the driver takes them from. It runs in a process
of its own, so this module imports nothing: an actor that unpickled a module importing torch would
hold a trial worker's memory (about 1 GB) to relay a few numbers.
"""

from __future__ import annotations


class BatchRelay:
    """The latest batch count of each trial, and the epoch a trial resumed after, from the trials to the
    driver: the driver hosts one as a Ray actor that trials `put` and `restored` to and the driver
    `take`s from, to call its view's `batches` and `restored`."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[int, int]] = {}
        self.resumed: dict[str, int] = {}

    def put(self, key: str, done: int, total: int) -> None:
        self.latest[key] = (done, total)

    def restored(self, key: str, epoch: int) -> None:
        self.resumed[key] = epoch

    def take(self) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
        latest, resumed, self.latest, self.resumed = self.latest, self.resumed, {}, {}
        return latest, resumed
