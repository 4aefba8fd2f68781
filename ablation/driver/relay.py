"""The actor trials put their batch counts to, and the driver takes them from. It runs in a process
of its own, so this module imports nothing: an actor that unpickled a module importing torch would
hold a trial worker's memory (about 1 GB) to relay a few numbers.
"""

from __future__ import annotations


class BatchRelay:
    """The latest batch count of each trial, from the trials to the driver: the driver hosts one as a
    Ray actor that trials `put` to and the driver `take`s from, to call its view's `batches`."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[int, int]] = {}

    def put(self, key: str, done: int, total: int) -> None:
        self.latest[key] = (done, total)

    def take(self) -> dict[str, tuple[int, int]]:
        latest, self.latest = self.latest, {}
        return latest
