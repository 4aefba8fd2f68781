"""Ray's memory monitor, seen from the driver: a trial whose worker it kills is a trial failure, never
the study's end.

When a node's memory use passes `RAY_memory_usage_threshold` (default 0.95), Ray kills the newest
workers. The trial's process dies without recording anything. With Ray 2.60, Tune then receives a
`ray.exceptions.OutOfMemoryError` for the killed actor's task. That is neither the actor error nor the
task error its actor manager expects, so it raises `RuntimeError: Caught unexpected exception: ...`
out of `Tuner.fit` and the whole study stops. A kill during the actor's `__init__` reaches Tune by
another path, which it handles.

`handle_memory_kills` makes Tune's actor manager take such a kill as what it is, a dead actor
(`MemoryKilled`), on both paths: Tune retries the trial from its last checkpoint under
`resources.max_failures`, then fails it for good, and the other trials go on. `MemoryKillRecorder`
records each kill on the trial's MLflow run (`ablate.failure=oom`, Ray's reason in `ablate.error`), and
`cause` turns Ray's message into the one line the driver prints.

The kernel's OOM killer (a machine or container out of memory before Ray's monitor acted, or with it
off) kills a worker without a word to Ray: Tune sees an actor that died, as it would for a lost node.
The kernel counts its kills (`/proc/vmstat`), so a worker that died while that count rose is taken as
its kill, recorded as `oom` too, with the container's memory limit if it has one (`KernelOomKills`).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from ray import tune
from ray.exceptions import OutOfMemoryError, RayActorError, RayTaskError

from ablation import tracking
from ablation.core import StudySpec
from ablation.driver.state import StudyContext
from ablation.driver.trainable import ask_relay, trial_of

_KILLED = "running low on memory"  # in every message Ray gives for a worker its memory monitor killed
_THRESHOLD = re.compile(r"\(([\d.]+)% of (\d+)B limit\)")  # "OOM kill reason: ... (95.0% of 25276194816B limit)"
_PATCHED = "_ablate_memory_kills"


class MemoryKilled(RayActorError):
    """Ray's memory monitor killed a trial's worker: its actor is dead, as Tune expects of a lost worker."""

    def __init__(self, message: str) -> None:
        super().__init__(error_msg=message)


def is_memory_kill(error: BaseException | str | None) -> bool:
    """Whether an error (or its text) says Ray's memory monitor killed the worker. A task error is the
    trial's own exception, recorded by the trial itself."""
    if error is None or isinstance(error, RayTaskError):
        return False
    return isinstance(error, (OutOfMemoryError, MemoryKilled)) or _KILLED in str(error)


def cause(text: str) -> str | None:
    """The one line a memory kill is summed up in ("killed by Ray's memory monitor at 95% of 23.5 GB"),
    from Ray's message; None for any other error."""
    if _KILLED not in text:
        return None
    found = _THRESHOLD.search(text)
    if not found:
        return "killed by Ray's memory monitor (the node ran low on memory)"
    return f"killed by Ray's memory monitor at {float(found[1]):g}% of {int(found[2]) / 2**30:.1f} GB"


def reason(text: str) -> str:
    """Ray's own account of a kill, for the run: the memory used, the limit and the threshold, in one line
    (what follows in Ray's message is the object store's figures and advice)."""
    lines = []
    for line in text.strip().splitlines():
        if line.startswith(("Object store memory usage", "Refer to the documentation")):
            break
        lines.append(line.strip())
    return " ".join(lines)


class KernelOomKills:
    """The kernel's count of processes its OOM killer killed, on this machine (a cluster's other nodes
    keep their own): `new()` says whether it rose since the last look."""

    def __init__(self, vmstat: Path = Path("/proc/vmstat")) -> None:
        self.vmstat = vmstat
        self.seen = self._count()

    def _count(self) -> int | None:
        try:
            for line in self.vmstat.read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return None  # not Linux, or a kernel before 4.13: no kill is ever taken for the kernel's

    def new(self) -> bool:
        now = self._count()
        rose = now is not None and self.seen is not None and now > self.seen
        self.seen = now
        return rose


def kernel_cause() -> str:
    """The one line for a worker the kernel's OOM killer killed, with this container's memory limit."""
    limit = _cgroup_limit()
    where = f"its container's limit of {limit / 2**30:.1f} GB" if limit else "the machine's memory"
    return f"killed by the kernel's OOM killer ({where} ran out)"


def _cgroup_limit() -> int | None:
    """This process's memory cgroup's limit in bytes (cgroup v2, else v1), or None without one."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        candidates = {"": ("/sys/fs/cgroup", "memory.max"), "memory": ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")}
        if controllers in candidates:
            root, name = candidates[controllers]
            try:
                text = (Path(root + path) / name).read_text().strip()
            except OSError:
                continue
            if text.isdigit() and int(text) < 2**60:  # "max", or v1's huge number: no limit
                return int(text)
    return None


_handling: BaseException | None = None  # the failure Tune is processing now; its callbacks run within it


def handle_memory_kills() -> None:
    """Patch Ray Tune's actor manager (once) so that a memory kill is a dead actor on both of its paths,
    a task of the actor and the actor's start (`__init__`). Without the private methods (another Ray), it
    does nothing: `Tuner.fit` then raises, and the driver stops the study with a resume hint."""
    try:
        from ray.air.execution._internal.actor_manager import RayActorManager
    except ImportError:
        return
    for name in ("_actor_task_failed", "_actor_start_failed"):
        method = getattr(RayActorManager, name, None)
        if method is not None and not getattr(method, _PATCHED, False):
            setattr(RayActorManager, name, _as_actor_failure(method))


def _as_actor_failure(method):
    @functools.wraps(method)
    def failed(self, *args, **kwargs):  # Tune calls them with keywords: (tracked_actor[_task]=, exception=)
        global _handling
        if "exception" in kwargs:
            kwargs["exception"] = exception = _actor_error(kwargs["exception"])
        else:
            *args, exception = *args[:-1], _actor_error(args[-1])
        _handling = exception
        try:
            return method(self, *args, **kwargs)
        finally:
            _handling = None

    setattr(failed, _PATCHED, True)
    return failed


def _actor_error(exception: Exception) -> Exception:
    return MemoryKilled(str(exception)) if isinstance(exception, OutOfMemoryError) else exception


class MemoryKillRecorder(tune.Callback):
    """Records a memory kill on the trial's MLflow run as Tune handles it, retried or failed for good:
    `ablate.failure=oom` with Ray's reason and `ablate.last_failure=oom`, the run FAILED until a retry
    reopens it (which drops the failure and keeps `last_failure`). A trial killed before it opened its run
    gets one, with its params. The driver makes one per fit and reads `killed` (trial name -> `cause`);
    Tune's pickled experiment state carries neither the spec nor the context (`__getstate__`)."""

    def __init__(self, spec: StudySpec, context: StudyContext, relay=None) -> None:
        self.study: tuple[StudySpec, StudyContext] | None = (spec, context)
        self.relay = relay  # the study's relay: a run made here is one the trial's retry must look for
        self.killed: dict[str, str] = {}
        self.kernel: KernelOomKills | None = KernelOomKills()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "study": None, "kernel": None, "relay": None}

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._record(trial.config)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._record(trial.config)

    def _record(self, config: dict[str, Any]) -> None:
        error = _handling
        if self.study is None or not config:
            return
        if is_memory_kill(error):
            text = str(error)
            said = cause(text) or text
        elif isinstance(error, RayActorError) and self.kernel is not None and self.kernel.new():
            said = text = kernel_cause()  # a dead worker while the kernel's count of OOM kills rose
        else:
            return
        spec, context = self.study
        found = trial_of(spec, config)
        self.killed[found.name] = said
        ask_relay(self.relay, "claim", found.id)  # the run is opened here, not by the trial's next attempt
        try:
            opened = tracking.open_trial(context.tracking_uri, context.experiment_id, context.parent_run_id,
                                         name=found.name, trial_id=found.id, params=found.params())
            if opened.finished:  # it had finished before the kill: the retry only reports it
                return
            tags = {tracking.Tag.LAST_FAILURE: tracking.Failure.OOM, tracking.Tag.ATTEMPTS: max(1, opened.attempts)}
            opened.run.log(params=opened.params, tags=tags)  # params: a run the kill left without them
            opened.fail(tracking.Failure.OOM, reason(text))
        except Exception:  # noqa: BLE001 - a store that fails now must not stop the study; the summary still says it
            pass
