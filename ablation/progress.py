"""The live view of a running study: one bar over all epochs of all trials, and the trials in flight.

Plain rich; `study.py` feeds it from Ray Tune's callbacks, so it knows nothing of Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

_ROWS = 12  # trials shown at once; a 48-trial study should not scroll the bar away
_ORDER = {"running": 0, "error": 1, "done": 2, "pending": 3}


@dataclass
class _Row:
    name: str
    status: str = "pending"
    epoch: int = 0
    value: float | None = None


class StudyProgress:
    """Call `trial_started/epoch/trial_finished` from any thread; the view redraws itself."""

    def __init__(self, console: Console, *, trials: int, epochs: int, metric: str) -> None:
        self.metric, self.epochs = metric, epochs
        self.rows: dict[str, _Row] = {}
        self.arms: list[tuple[str, int, int, str]] = []  # a race's, when the study is one
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("epochs"), TimeElapsedColumn(), console=console,
        )
        self.task = self.bar.add_task(f"{trials} trials", total=trials * epochs)
        self.live = Live(Group(self.bar, self._table()), console=console, refresh_per_second=4,
                         get_renderable=lambda: Group(self.bar, self._table()))

    def __enter__(self) -> StudyProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)

    def trial_started(self, key: str, name: str) -> None:
        self.rows.setdefault(key, _Row(name)).status = "running"

    def epoch(self, key: str, epoch: int, value: float) -> None:
        row = self.rows[key]
        row.epoch, row.value = epoch, value
        self.bar.advance(self.task)

    def trial_finished(self, key: str, ok: bool) -> None:
        row = self.rows[key]
        if not ok:  # epochs it never ran still count, so the bar reaches its end
            self.bar.advance(self.task, self.epochs - row.epoch)
        row.status = "done" if ok else "error"

    def race(self, rows: list[tuple[str, int, int, str]], started: int) -> None:
        """A race's arms (arm, seeds done, seeds running, state); the bar grows as the race adds trials."""
        self.arms = rows
        total = max(self.bar.tasks[0].total or 0, started * self.epochs)
        self.bar.update(self.task, total=total, description=f"{max(started, 1)} trials so far")

    def _table(self) -> Table | Group:
        table = Table(box=None, pad_edge=False, header_style="dim")
        for column in ("trial", "status", "epoch", self.metric):
            table.add_column(column)
        rows = sorted(self.rows.values(), key=lambda r: _ORDER[r.status])
        colour = {"running": "cyan", "done": "green", "error": "red", "pending": "dim"}
        for row in rows[:_ROWS]:
            value = "" if row.value is None else f"{row.value:.4f}"
            table.add_row(row.name, f"[{colour[row.status]}]{row.status}", f"{row.epoch}/{self.epochs}", value)
        if len(rows) > _ROWS:
            table.add_row(f"... {len(rows) - _ROWS} more", "", "", "")
        if not self.arms:
            return table
        race = Table(box=None, pad_edge=False, header_style="dim")
        for column in ("arm", "seeds done", "running", "state"):
            race.add_column(column)
        for arm, done, running, state in self.arms:
            race.add_row(arm, str(done), str(running), state)
        return Group(race, table)
