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
"""

from __future__ import annotations

import functools
import re
from typing import Any

from ray import tune
from ray.exceptions import OutOfMemoryError, RayActorError, RayTaskError

from ablation import tracking
from ablation.core import StudySpec
from ablation.driver.state import StudyContext
from ablation.driver.trainable import trial_of

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

    def __init__(self, spec: StudySpec, context: StudyContext) -> None:
        self.study: tuple[StudySpec, StudyContext] | None = (spec, context)
        self.killed: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "study": None}

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._record(trial.config)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._record(trial.config)

    def _record(self, config: dict[str, Any]) -> None:
        error = _handling
        if self.study is None or not is_memory_kill(error) or not config:
            return
        spec, context = self.study
        text = str(error)
        found = trial_of(spec, config)
        self.killed[found.name] = cause(text) or text
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
