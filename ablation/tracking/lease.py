"""One driver per study: a lease held while `ablate run` or `ablate resume` works on a study.

Two drivers of one study on one store would train the same trials and log every epoch twice,
with nothing in MLflow to stop them. A driver therefore holds the study's lease from before Ray
starts until it is done, and a second driver is refused with the holder's host, pid and start.

- On a store on this machine (SQLite), the lease is an exclusive `flock` on a file beside the
  store. The kernel drops it when its holder dies, however it dies (SIGKILL included), so a
  `resume` after a killed driver never waits.
- On a server, the lease is a record the holder rewrites every `ttl / 4` seconds (a heartbeat).
  A record whose heartbeat is older than `ttl` belongs to a dead driver and is taken over; so is,
  at once, the record of a holder that ran on this machine (its host and process namespace) and
  whose pid has gone.
  Writers race only within one heartbeat: each writes its own token, waits, and reads back;
  the one whose token stayed holds the lease.
- A holder that was not heard from (suspended, or cut off) may find on waking that another driver took
  its study over. Its token is then a fencing token: the heartbeat reads the record before rewriting
  it, the driver asks `check()` before it writes, and each trial asks a `LeaseCheck` before its writes.
  One that has lost the lease writes nothing more and stops with `LeaseLost`, naming the new holder.

Nothing here knows MLflow: `tracking/store.py` hands the record's read, write and delete in.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

DEFAULT_TTL = 30.0  # seconds without a heartbeat before a server lease counts as abandoned
TTL_ENV = "ABLATE_LEASE_TTL"  # another ttl, for a store reached over a slow or unsteady network


def ttl_setting() -> float:
    """The server lease's ttl: $ABLATE_LEASE_TTL seconds if set (a positive number), else DEFAULT_TTL."""
    text = os.environ.get(TTL_ENV, "")
    try:
        value = float(text) if text else DEFAULT_TTL
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ValueError(f"${TTL_ENV}={text!r}: expected a positive number of seconds (default {DEFAULT_TTL:.0f})")
    return value


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    since: str  # ISO 8601, UTC
    token: str = ""
    heartbeat: float = 0.0  # time.time() of the last heartbeat (server leases)
    pid_namespace: str = ""  # where `pid` means something: two containers may share a host name

    @classmethod
    def me(cls) -> Holder:
        return cls(socket.gethostname(), os.getpid(), datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   uuid.uuid4().hex, time.time(), _pid_namespace())

    def gone(self) -> bool:
        """Known to be dead: it ran on this machine, in this process namespace, and its pid is not there.
        Anywhere else, only its heartbeat can tell."""
        if self.host != socket.gethostname() or not self.pid_namespace or self.pid_namespace != _pid_namespace():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False

    @classmethod
    def parse(cls, text: str | None) -> Holder | None:
        try:
            return cls(**json.loads(text)) if text else None
        except (TypeError, ValueError):
            return None  # not a record of ours: nobody holds it

    def dump(self) -> str:
        return json.dumps(asdict(self))

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}, running since {self.since}"


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:  # not Linux: a pid is then never taken as proof of anything
        return ""


class StudyBusy(RuntimeError):
    """Another driver holds the study's lease."""

    def __init__(self, study: str, holder: Holder | None, where: str) -> None:
        self.holder = holder
        who = str(holder) if holder else "a driver that is still starting"
        super().__init__(f"study {study!r} is already running on {where}: {who}. Wait for it to finish, or "
                         f"stop it (Ctrl-C), then run `ablate resume` or `ablate run` again")


class LeaseLost(RuntimeError):
    """Another driver took the study's lease over while this one was not heard from: it must write no more.
    Its one argument is its message, so Ray can copy it out of a trial (`copy.copy` rebuilds from `args`)."""

    @classmethod
    def to(cls, study: str, holder: Holder | None, where: str) -> LeaseLost:
        who = f"by {holder}" if holder else "(its record is gone: another driver held it and finished)"
        return cls(f"study {study!r} on {where} was taken over {who} while this driver was not heard from "
                   f"(suspended, or cut off from the store); this driver stopped and wrote nothing more")


class LeaseCheck:
    """Whether the lease whose token is `token` is still that holder's, as the record read by `read` says.

    An answer is trusted for a quarter of the ttl, and never past half a ttl after the record's last
    heartbeat: another driver may take over only a whole ttl after it. So a trial writing every epoch
    reads the record at most every few seconds, and a process that was suspended reads it again."""

    def __init__(self, study: str, where: str, token: str, read: Callable[[], str | None], ttl: float) -> None:
        self.study, self.where, self.token, self._read, self.ttl = study, where, token, read, ttl
        self._until = -1.0  # time.time() until which the last answer holds

    def __call__(self) -> None:
        """Return if the lease is still the token's; else raise `LeaseLost`."""
        now = time.time()
        if now < self._until:
            return
        holder = Holder.parse(self._read())
        if holder is None or holder.token != self.token:
            raise LeaseLost.to(self.study, holder, self.where)
        self._until = min(now + self.ttl / 4, holder.heartbeat + self.ttl / 2)


class FileLease:
    """An exclusive lock on `path`, holding the holder's record as its content."""

    token, ttl = "", 0.0  # a lock the kernel holds for its process cannot be lost while the process lives

    def __init__(self, path: Path, study: str) -> None:
        self.path, self.study = path, study
        self._fd: int | None = None

    def check(self) -> None:
        """The lock is this process's until it lets go: nothing to check."""

    def acquire(self, *, wait: bool = False) -> FileLease:
        """Take the lock, or raise `StudyBusy` naming its holder (with `wait`, wait for it instead)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by Ray's processes
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise StudyBusy(self.study, self._holder(), str(self.path.parent)) from None
        me = Holder.me()
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.dump().encode(), 0)
        self._fd = fd
        return self

    def _holder(self) -> Holder | None:
        # The holder writes its record just after locking; give it a moment if we looked in between.
        for _ in range(20):
            holder = Holder.parse(self.path.read_text(errors="replace"))
            if holder:
                return holder
            time.sleep(0.05)
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # a stale record would name a driver that has gone
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class HeartbeatLease:
    """A lease kept as a record on a server (read/write/delete of one text value)."""

    def __init__(self, study: str, where: str, *, read: Callable[[], str | None], write: Callable[[str], None],
                 delete: Callable[[], None], ttl: float = DEFAULT_TTL, settle: float = 1.0) -> None:
        self.study, self.where = study, where
        self._read, self._write, self._delete = read, write, delete
        self.ttl, self.settle = ttl, settle
        self._me: Holder | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._lost: LeaseLost | None = None
        self._check: LeaseCheck | None = None

    @property
    def token(self) -> str:
        return self._me.token if self._me else ""

    def check(self) -> None:
        """Raise `LeaseLost` if another driver has taken the lease over (read again if the heartbeat
        has not confirmed it lately: after this process was suspended, say)."""
        if self._lost is None and self._check is not None:
            try:
                self._check()
            except LeaseLost as lost:
                self._lost = lost
        if self._lost is not None:
            raise self._lost

    def _live_other(self) -> Holder | None:
        holder = Holder.parse(self._read())
        if holder and holder.token != (self._me.token if self._me else None) \
                and time.time() - holder.heartbeat < self.ttl and not holder.gone():
            return holder
        return None

    def acquire(self) -> HeartbeatLease:
        if other := self._live_other():
            raise StudyBusy(self.study, other, self.where)
        self._me = Holder.me()
        self._write(self._me.dump())
        time.sleep(self.settle)  # a driver that read the same free lease writes within this window
        if other := self._live_other():
            self._me = None
            raise StudyBusy(self.study, other, self.where)
        self._check = LeaseCheck(self.study, self.where, self._me.token, self._read, self.ttl)
        self._beat = threading.Thread(target=self._heartbeat, name="ablate-lease", daemon=True)
        self._beat.start()
        return self

    def _heartbeat(self) -> None:
        # Read before each rewrite: a beat that overwrote a new holder's record would take the study back.
        while not self._stop.wait(self.ttl / 4):
            try:
                holder = Holder.parse(self._read())
                if holder is None or holder.token != self._me.token:
                    self._lost = LeaseLost.to(self.study, holder, self.where)
                    return
                self._me = Holder(**{**asdict(self._me), "heartbeat": time.time()})
                self._write(self._me.dump())
            except Exception:  # noqa: BLE001 - a missed beat is retried; the lease lapses only after ttl
                continue

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if self._me is not None and self._lost is None and not self._live_other():
            self._delete()
        self._me = None
