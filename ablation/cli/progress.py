"""The live view of a running study: one bar over all epochs of all trials with the study's ETA, and
its trials, running (with their elapsed time and, within an epoch, batches done), pending and done.
Without a terminal (output piped to `tee` or a file, a batch job's log) it prints a plain line per
trial started, epoch and trial ended instead, each with the study's epochs done and ETA.

Plain rich; the driver feeds it from Ray Tune's callbacks (`driver.progress.ProgressView` is what it
calls), so it knows nothing of Ray. A trial's start and its epochs suffice for elapsed times and the
ETA; `batches` (fed from the trainable, through `StudyRelay`) moves the bar within an epoch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ablation.cli.views import Name, counted

_ROWS = 12  # trials shown at once; a 48-trial study should not scroll the bar away
_ORDER = {"running": 0, "error": 1, "pending": 2, "done": 3}
_COLOUR = {"running": "cyan", "done": "green", "error": "red", "pending": "dim"}
FIRST_EPOCH = "ETA: after the first epoch"


@dataclass
class _Row:
    name: str
    status: str = "pending"
    epoch: int = 0  # epochs finished
    counted: int = 0  # epochs it added to the bar: a retry trains again some it had finished
    value: float | None = None
    batches: tuple[int, int] | None = None  # (done, total) of the epoch under way
    started: float | None = None
    ended: float | None = None

    @property
    def partial(self) -> float:
        """The share of its epoch under way that a running trial has done, below 1 (none while a retry
        trains again an epoch the bar has counted)."""
        if self.status != "running" or not self.batches or not self.batches[1] or self.epoch < self.counted:
            return 0.0
        return min(self.batches[0] / self.batches[1], 0.99)


def clock(seconds: float) -> str:
    """`1:02:03`, as rich's elapsed column spells it."""
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class StudyProgress:
    """Call `trial_started/epoch/batches/trial_finished` from any thread; the view redraws itself.

    `pending` names the trials known before they start (a grid's), listed until they do; the others
    are counted. The ETA is the epochs left at the pace of the epochs this run has finished so far
    (all trials together, so it counts how many run at once).
    """

    def __init__(self, console: Console, *, trials: int, epochs: int, metric: str, pending: Sequence[str] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.metric, self.epochs, self.trials, self.clock = metric, epochs, trials, clock
        self.rows: dict[str, _Row] = {}
        self.pending = list(pending)
        self.arms: list[tuple[str, int, int, str]] = []  # a race's, when the study is one
        self.most: int | None = None  # the trials a race may start in all, when the study is one
        self.plain = not console.is_terminal
        self.console = console
        self.lock = threading.RLock()
        self.finished = 0.0  # epochs ended: trained, or never to run (a trial that stopped)
        self.trained = 0  # epochs trained in this run, the pace of the ETA
        self.began: float | None = None  # when the first trial of this run started
        self.bar = Progress(
            # The bar moves with batches; the count says whole epochs, as the ETA's "first epoch" does.
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=24), TextColumn("{task.fields[epochs]}"),
            TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
            console=console, get_time=clock,
        )
        self.task = self.bar.add_task(f"{trials} trials", total=trials * epochs, eta=FIRST_EPOCH, epochs="")
        self.live = Live(console=console, refresh_per_second=4, get_renderable=self.render)

    def __enter__(self) -> StudyProgress:
        if not self.plain:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if not self.plain:
            self.live.__exit__(*exc)

    def _say(self, text: str) -> None:
        """A plain line, without a terminal: the time since the first trial started, what happened, and
        the study's epochs done and ETA."""
        if not self.plain:
            return
        since = clock(self.clock() - self.began) if self.began is not None else clock(0)
        total = self.bar.tasks[0].total or 0
        self.console.print(f"[{since}] {text}  ({int(self.finished)}/{total:g} epochs, {self.eta()})",
                           markup=False, highlight=False, soft_wrap=True)

    def trial_started(self, key: str, name: str) -> None:
        with self.lock:
            now = self.clock()
            self.began = now if self.began is None else self.began
            row = self.rows.setdefault(key, _Row(name))
            row.status, row.started, row.ended = "running", row.started or now, None
            if name in self.pending:
                self.pending.remove(name)
            self._say(f"{name} started")

    def epoch(self, key: str, epoch: int, value: float) -> None:
        with self.lock:
            row = self.rows[key]
            # A trial resumed from a checkpoint reports its first epoch after the ones it had done; one that
            # Tune retries (from its checkpoint, or from the start) reports again epochs the bar has counted.
            self.finished += max(0, epoch - row.counted)
            self.trained += 1
            row.epoch, row.value, row.batches, row.counted = epoch, value, None, max(row.counted, epoch)
            self._advance()
            self._say(f"{row.name} epoch {epoch}/{self.epochs} {self.metric} {value:.4f}")

    def restored(self, key: str, epoch: int) -> None:
        """A trial went on from its checkpoint after `epoch`: those epochs are done (a resume's trial read
        0/2 until its next epoch ended)."""
        with self.lock:
            row = self.rows.get(key)
            if row is not None and epoch > row.counted:
                self.finished += epoch - row.counted
                row.epoch, row.counted = epoch, epoch
                self._advance()

    def batches(self, key: str, done: int, total: int) -> None:
        """Batches done of the epoch a trial is training (only a started trial's are shown)."""
        with self.lock:
            row = self.rows.get(key)
            if row is not None and row.status == "running" and row.epoch < self.epochs:
                row.batches = (done, total)
                self._advance()

    def trial_finished(self, key: str, ok: bool, name: str | None = None) -> None:
        with self.lock:
            if key not in self.rows:  # it failed before it started (its worker was killed in its start-up)
                self.rows[key] = _Row(name or key, started=self.clock())
                if name in self.pending:
                    self.pending.remove(name)
            row = self.rows[key]
            # Epochs it will never run still count (it failed, or a scheduler stopped it), so the bar ends.
            self.finished += max(0, self.epochs - row.counted)
            row.counted = self.epochs
            row.status, row.ended, row.batches = "done" if ok else "error", self.clock(), None
            self._advance()
            self._say(f"{row.name} {'done' if ok else 'failed'} after {clock(row.ended - (row.started or row.ended))}")

    def race(self, rows: list[tuple[str, int, int, str]], started: int, most: int) -> None:
        """A race's arms (arm, seeds done, seeds running, state), the trials it has started and the most
        it may start; the bar grows as the race adds trials."""
        with self.lock:
            decided = {arm: state for arm, _, _, state in rows} != {arm: state for arm, _, _, state in self.arms}
            self.arms, self.most = rows, max(most, started)
            self.trials = max(self.trials, started)
            total = max(self.bar.tasks[0].total or 0, started * self.epochs)
            self.bar.update(self.task, total=total, description=f"{counted(max(started, 1), 'trial')} so far")
            if decided and self.began is not None:
                self._say("race: " + ", ".join(f"{arm} {state} ({done} seeds)" for arm, done, _, state in rows))

    def eta(self) -> str:
        """What is left at the pace so far: the trained epochs, and the running ones' batches done."""
        with self.lock:
            done = self.trained + sum(row.partial for row in self.rows.values())
            left = (self.bar.tasks[0].total or 0) - self.finished - sum(row.partial for row in self.rows.values())
            if not self.trained or self.began is None:
                return FIRST_EPOCH
            pace = (self.clock() - self.began) / done
            least = max(0.0, left) * pace
            if self.most is None or self.most * self.epochs <= (self.bar.tasks[0].total or 0):
                return f"ETA {clock(least)}"
            more = self.most * self.epochs - (self.bar.tasks[0].total or 0)  # epochs of trials not yet started
            return f"ETA {clock(least)} to {clock(least + more * pace)}"

    def _advance(self) -> None:
        self.bar.update(self.task, completed=self.finished + sum(row.partial for row in self.rows.values()))

    def render(self) -> Group:
        with self.lock:
            total = self.bar.tasks[0].total or 0
            self.bar.update(self.task, eta=self.eta(), epochs=f"[green]{int(self.finished)}/{total:g}[/] epochs")
            return Group(self.bar, *self._tables())

    def _tables(self) -> list[Table]:
        table = Table(box=None, pad_edge=False, header_style="dim")
        table.add_column("trial")
        for column in ("status", "epoch", "batch", self.metric, "time"):
            table.add_column(column, no_wrap=True, justify="left" if column == "status" else "right")
        now = self.clock()
        # Running first, then failed, pending and done; of those that ended, the newest first.
        rows = sorted([*self.rows.values(), *map(_Row, self.pending)],
                      key=lambda r: (_ORDER[r.status], -(r.ended or 0)))
        for row in rows[:_ROWS]:
            value = "" if row.value is None else f"{row.value:.4f}"
            batch = f"{row.batches[0]}/{row.batches[1]}" if row.partial else ""
            took = "" if row.started is None else clock((row.ended or now) - row.started)
            table.add_row(Name(row.name), f"[{_COLOUR[row.status]}]{row.status}", f"{row.epoch}/{self.epochs}",
                          batch, value, took)
        unnamed = max(0, self.trials - len(self.rows) - len(self.pending))  # a search's draws to come
        hidden = rows[_ROWS:]
        if hidden or unnamed:
            counts = {s: sum(r.status == s for r in hidden) for s in _ORDER}
            counts["pending"] += unnamed
            more = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            table.add_row(f"[dim]... {len(hidden) + unnamed} more ({more})", "", "", "", "", "")
        if not self.arms:
            return [table]
        race = Table(box=None, pad_edge=False, header_style="dim")
        for column in ("arm", "seeds done", "running", "state"):
            race.add_column(column)
        for arm, done, running, state in self.arms:
            race.add_row(Name(arm), str(done), str(running), state)
        return [race, table]
