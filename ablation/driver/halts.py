"""What stops a whole study rather than fail one trial: storage with no room left for checkpoints, an
MLflow store that no longer takes writes (made read-only, deleted or moved), or a study another driver
took over while this one was not heard from.

Tune retries a failed trial under `resources.max_failures`, and a trial that cannot write its checkpoint
or its run fails again at every retry, as does every trial after it: a full disk once cost five minutes
of retries and 37 tracebacks. So such a trial does not fail. It reports why the study cannot go on (`why`,
under `HALT_KEY`) and ends; `Halts`, the study's Tune stopper, then stops every trial, and the driver
ends the study with one line (`Halted`) and a resume hint, since what finished is kept. Tune's own
writes to a full storage are seen too, in its log, whose tracebacks this keeps from the terminal.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from typing import Any

from ray import tune

from ablation import tracking
from ablation.checkpoints import StorageFull
from ablation.tracking.runs import StoreGone, store_failure, unlog_store_failures

HALT_KEY = "halted"  # in a trial's last Tune result: why the study cannot go on
REMEDY_KEY = "halted_remedy"  # what is kept, and what lets `ablate resume` go on
# Where Tune logs its failed writes to the storage: its syncs of the study's state and trial files.
_TUNE_WRITERS = ("ray.train._internal.syncer", "ray.tune.execution.experiment_state")
_NO_ROOM = {errno.ENOSPC: "no space left", errno.EDQUOT: "the disk quota is exceeded"}
_FREE_SPACE = "trials that finished are kept; free space there, then continue with"
_WRITABLE = "trials that finished are kept; when it can be written again, continue with"
_PUT_BACK = "its runs went with it, the trials' checkpoints are kept; put it back, then continue with"
# A lost lease's "remedy": none here, since another driver goes on with the study (its message says so);
# `Halts.check` knows the halt by it.
_TAKEN_OVER = "another driver goes on with the study"


class Halted(RuntimeError):
    """The study stopped because it cannot go on: its message is the line the user reads."""


def _on_storage(storage: str) -> str:
    """The --storage a study folder (`<storage>/<study>`) was made under, as the user named it."""
    return f"{storage.rpartition('/')[0] or storage} (the study's --storage)"


def why(err: BaseException, *, storage: str, uri: str, trial: str) -> dict[str, str] | None:
    """What a trial reports in place of failing with `err`, if `err` means that no trial can go on: its
    checkpoint found no room in the study's `storage`, or its store at `uri` took no write. None for
    any other error, and for a trial Tune is stopping (whatever its end could not record)."""
    if tracking.raised_from(err, (SystemExit, KeyboardInterrupt)) is not None:
        return None
    lost = tracking.raised_from(err, tracking.LeaseLost)
    if lost is not None:
        # Failing, the trial left Tune a trial to retry and, once this driver stopped, Ray an error nobody
        # fetched, which it printed as the worker's stack above the driver's one line.
        return {HALT_KEY: str(lost), REMEDY_KEY: _TAKEN_OVER}
    full = tracking.raised_from(err, StorageFull)
    if full is not None:
        return {HALT_KEY: f"{full.strerror} on {_on_storage(storage)} while saving the checkpoint of trial {trial}",
                REMEDY_KEY: _FREE_SPACE}
    failed = store_failure(err, uri)
    if failed is not None:
        return {HALT_KEY: str(failed), REMEDY_KEY: _remedy(failed)}
    return None


class Halts(tune.Stopper):
    """The study's Tune stopper: stops every trial once one reports that the study cannot go on (`why`),
    or Tune's own writes find no room in the storage, or `other` (the lease's stopper) says so. Held
    (`with`) while Tune runs: Tune's failed writes are then read here rather than printed; `check()`
    afterwards raises `Halted` if the study was stopped so."""

    def __init__(self, other: tune.Stopper, storage: str) -> None:
        self.other, self.storage = other, storage
        self.halted: dict[str, str] | None = None  # a trial's report
        self.tune_failed: str | None = None  # Tune's own write, which a trial's report is preferred to

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its settings to `tuner.pkl`, which `ablate resume` never unpickles.
        return {"other": self.other, "storage": self.storage, "halted": None, "tune_failed": None}

    def __call__(self, trial_id: str, result: dict) -> bool:
        if result.get(HALT_KEY):
            self.halted = self.halted or {HALT_KEY: result[HALT_KEY], REMEDY_KEY: result.get(REMEDY_KEY, "")}
            return True
        return self.other(trial_id, result)

    def stop_all(self) -> bool:
        return self.halted is not None or self.tune_failed is not None or self.other.stop_all()

    def filter(self, record: logging.LogRecord) -> bool:
        """Tune's log of a write that found no room (with the traceback of its sync, at every retry): noted,
        so the study stops, and not printed. (A logger takes any object with this method as a filter.)"""
        raised = record.exc_info[1] if record.exc_info else None
        text = record.getMessage()
        for code, said in _NO_ROOM.items():
            if getattr(raised, "errno", None) == code or os.strerror(code) in text:
                self.tune_failed = self.tune_failed or f"{said} on {_on_storage(self.storage)} while Ray Tune saved " \
                                                       "the study's state"
                return False
        return True

    def __enter__(self) -> Halts:
        unlog_store_failures()
        for name in _TUNE_WRITERS:
            logging.getLogger(name).addFilter(self)
        return self

    def __exit__(self, *exc) -> None:
        for name in _TUNE_WRITERS:
            logging.getLogger(name).removeFilter(self)

    def check(self, parent: tracking.TrackedRun, outcome) -> None:
        """If the study was stopped because it cannot go on, end it as an interrupted one (its trial runs
        and its `parent` run KILLED, unless the store is what failed: `ablate resume` continues it) and
        raise `Halted`, saying why and how to go on."""
        if self.halted is None and self.tune_failed is None:
            return
        if self.halted and self.halted[REMEDY_KEY] == _TAKEN_OVER:
            raise tracking.LeaseLost(self.halted[HALT_KEY])  # the study is another driver's: no write here
        what, remedy = (self.halted[HALT_KEY], self.halted[REMEDY_KEY]) if self.halted else \
            (self.tune_failed, _FREE_SPACE)
        # A failed store is not written again: a deleted one would be created anew, empty, by the attempt.
        ends = [] if remedy in (_WRITABLE, _PUT_BACK) else [
            lambda: tracking.close_open_runs(outcome.tracking_uri, outcome.experiment_id, parent.run_id),
            lambda: parent.finish(tracking.Status.KILLED)]
        for end in ends:
            with contextlib.suppress(Exception):  # the store may fail too
                end()
        raise Halted(f"the study stopped: {what}; {remedy}:  ablate resume {self.storage}")


def store_stopped(err: BaseException, uri: str, storage: str) -> str | None:
    """The line for a store that failed the driver's own writes, after the trials (None for another error)."""
    failed = store_failure(err, uri)
    if failed is None:
        return None
    return f"the study stopped: {failed}; {_remedy(failed)}:  ablate resume {storage}"


def _remedy(failed: BaseException) -> str:
    return _PUT_BACK if isinstance(failed, StoreGone) else _WRITABLE
