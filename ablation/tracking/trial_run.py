"""A trial's child run: one per trial however often the trial restarts (`open_trial`), and what each
attempt writes to it (`TrialRun`): where it runs and its model's costs, each epoch once, how it ended.

An attempt's start is written halfway to its system metrics' first sample (`start_delay`, 0.5 s), from a
timer's thread, and the sampling starts then; an attempt whose first epoch ends sooner writes its start
with that epoch. A tiny trial (a smoke test's, a benchmark's, a race's on a few images) thus makes one write
where it made two, and starts no monitor that would never take a sample: on a SQLite store, each write is
a transaction per kind of entity, the bulk of such a trial's overhead (benchmarks/mlflow_overhead.py). A
run killed before its start was written has no params; a retry, or the driver's record of a memory kill,
writes them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablation.core.names import MODEL_FILE, TAG_LIMIT, TRAIN_LOSS, Failure, Kind, Status, Tag
from ablation.tracking import system_metrics
from ablation.tracking.provenance import machine_tags
from ablation.tracking.runs import Batch, StoreGone, TrackedRun
from ablation.tracking.store import connect, sqlite_path

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


def start_delay() -> float:
    """Seconds into an attempt before its start is written and its system metrics start: half the time to
    their first sample."""
    return system_metrics.first_sample() / 2


@dataclass
class TrialRun:
    run: TrackedRun
    logged_epochs: set[int]  # steps already logged by an earlier attempt of this trial
    attempts: int  # how many times this trial started before
    lost: bool = False  # the earlier attempt died without closing its run: its worker or node was lost
    finished: bool = False  # the trial finished in an earlier attempt; nothing is left to do
    params: Mapping[str, Any] = field(default_factory=dict)  # a new run's, logged with its start
    uri: str = ""  # the store's, for the system metrics' own client; none: no system metrics
    # Called before each write; raises `LeaseLost` once the study has passed to another driver.
    fence: Callable[[], None] = field(default=lambda: None, repr=False)
    _unwritten: Batch = field(default_factory=Batch, repr=False)  # the start, until it is written
    _failed: BaseException | None = field(default=None, repr=False)  # the timer's write's error, for the trial
    _stopped: bool = field(default=False, repr=False)  # no sampling from now on
    _timer: threading.Timer | None = field(default=None, repr=False)
    _monitor: Any = field(default=None, repr=False)  # sampling the system metrics
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # the timer's thread against the trial's

    def start(self, *, node_id: str, pid: int, device: str, gpu_ids: list, resumed_from_epoch: int,
              costs: Mapping[str, float] = {}, gpu_name: str = "", cpu_kernels: str = "") -> None:
        """Record where this attempt runs (node, device, the machine's host, CPU and GPU models, and the
        instruction set torch's CPU kernels use), which attempt it is, and that the one before was lost; and
        a new run's params and its model's `costs`: all in one write, `start_delay()` in or with the first
        epoch. Then sample the system metrics (`watch_system`) until `stop_system_metrics`."""
        tags = {Tag.NODE_ID: node_id, Tag.PID: pid, Tag.DEVICE: device, Tag.GPU_IDS: ",".join(map(str, gpu_ids)),
                Tag.ATTEMPTS: self.attempts + 1, Tag.RESUMED_FROM_EPOCH: resumed_from_epoch}
        tags |= machine_tags(gpu_name, cpu_kernels)
        if self.lost:
            tags[Tag.LAST_FAILURE] = Failure.LOST_WORKER
        self._unwritten = Batch.of(params=self.params, tags=tags, metrics=costs)
        self._timer = threading.Timer(start_delay(), self._started)
        self._timer.name, self._timer.daemon = "TrialRunStart", True
        self._timer.start()

    def _started(self) -> None:
        """In the timer's thread: write the start, then start sampling. An error is the trial's to raise
        at its next write (`_write`), as it would have raised at the start."""
        with self._lock:
            if self._stopped:  # the trial is ending: its last write carries the start, if it may write
                return
            try:
                self._flush(Batch())
            except BaseException as err:  # noqa: BLE001 - handed to the trial's thread
                self._failed = err
                return
        if not self.uri:
            return
        monitor = system_metrics.watch_system(self.uri, self.run.run_id, resume=bool(self.attempts),
                                              first_sample=system_metrics.first_sample() - start_delay())
        with self._lock:
            self._monitor, stopped = monitor, self._stopped
        if stopped:  # the trial stopped it while it started
            self.stop_system_metrics()

    def _write(self, batch: Batch) -> None:
        """`batch`, with the start if it is not yet written, in one write after the fence; first, what the
        timer's write raised, if it did."""
        with self._lock:
            failed, self._failed = self._failed, None
            if failed is not None:  # raised once: the trial's record of its failure may yet be written
                raise failed
            self._flush(batch)

    def _flush(self, batch: Batch) -> None:
        """Write `batch` and the start not yet written, with the lock held."""
        batch = self._unwritten + batch
        if batch:
            self.fence()
            self.run.write(batch)
        self._unwritten = Batch()  # only once written: a write that failed is tried again with the next

    def stop_system_metrics(self) -> None:
        """Stop sampling, at once and without a write (the samples are written as they are taken); a start
        not yet written waits for the run's next write."""
        with self._lock:
            self._stopped = True
            monitor, self._monitor = self._monitor, None
        if self._timer is not None:
            self._timer.cancel()
        if monitor is not None:
            monitor.finish()

    def upload_model(self, write: Callable[[Path], None]) -> None:
        """The trained weights, as MODEL_FILE: `write(path)` writes them to a file of that name, which is
        uploaded; the epoch's write then tags the run `ModelKept.KEPT`."""
        self.fence()
        self.run.log_file(MODEL_FILE, write)

    def log_epoch(self, metrics: Mapping[str, float], epoch: int, tags: Mapping[str, Any] = {}) -> None:
        """One epoch's metrics, and `tags` in the same write (the last epoch's say what became of the weights)."""
        if epoch in self.logged_epochs:  # an earlier attempt logged it before dying
            metrics = {}
        self._write(Batch.of(metrics=metrics, tags=tags, step=epoch))

    def fail(self, failure: Failure, error: str) -> None:
        """End the run as failed, saying how: KILLED if the study was interrupted, else FAILED."""
        self.stop_system_metrics()
        self._write(Batch.of(tags={Tag.FAILURE: failure, Tag.ERROR: error[:TAG_LIMIT]}))
        self.run.finish(Status.KILLED if failure == Failure.INTERRUPTED else Status.FAILED)

    def finish(self) -> None:
        self.stop_system_metrics()
        self._write(Batch())
        self.fence()
        self.run.finish()


def _trial_runs(client: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str) -> list:
    return client.search_runs([experiment_id], filter_string=(
        f"tags.`{Tag.PARENT}` = '{parent_run_id}' and tags.`{Tag.TRIAL_ID}` = '{trial_id}'"))


def _clear_failure(client: MlflowClient, run) -> None:
    """Drop an earlier attempt's failure tags from a run that goes on."""
    for stale in (Tag.ERROR, Tag.FAILURE):
        if stale in run.data.tags:
            client.delete_tag(run.info.run_id, stale)


def open_trial(uri: str, experiment_id: str, parent_run_id: str, *, name: str, trial_id: str,
               params: Mapping[str, Any], fence: Callable[[], None] = lambda: None, new: bool = False) -> TrialRun:
    """The trial's child run under the study's parent: the one an earlier attempt left unfinished
    (a retry continues it, so each trial has one run and each epoch is logged once), else a new one.
    `new`: the caller knows the trial has no run yet (the study's relay said so), so none is searched for.
    `fence` is called before each write (see `store.lease_check`)."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():  # connecting would create a new, empty store in its place
        raise StoreGone(f"the MLflow store {db} was deleted or moved while the study ran")
    client = connect(uri)
    earlier = [] if new else _trial_runs(client, experiment_id, parent_run_id, trial_id)
    done = [r for r in earlier if r.info.status == Status.FINISHED]
    if done:  # Tune restarted a trial that had finished before its driver could record it
        return TrialRun(TrackedRun(client, done[0].info.run_id), set(), 1, finished=True, fence=fence)
    fence()
    if not earlier:
        run = client.create_run(experiment_id, run_name=name,
                                tags={Tag.PARENT: parent_run_id, Tag.KIND: Kind.TRIAL, Tag.TRIAL_ID: trial_id})
        return TrialRun(TrackedRun(client, run.info.run_id), set(), 0, params=params, uri=uri, fence=fence)
    run = earlier[0]
    lost = run.info.status == Status.RUNNING
    client.update_run(run.info.run_id, status=Status.RUNNING)
    _clear_failure(client, run)  # the earlier attempt's; this one may succeed
    logged = {m.step for m in client.get_metric_history(run.info.run_id, TRAIN_LOSS)}
    attempts = int(run.data.tags.get(Tag.ATTEMPTS, "1"))
    # An attempt that died between creating the run and its first write left it without params.
    return TrialRun(TrackedRun(client, run.info.run_id), logged, attempts, lost,
                    params={} if run.data.params else params, uri=uri, fence=fence)


def mark_stopped_early(uri: str, experiment_id: str, parent_run_id: str, trial_id: str, *, epoch: int) -> None:
    """Record that the scheduler stopped a trial after `epoch`: a finished run, tagged as stopped early."""
    client = connect(uri)
    for run in _trial_runs(client, experiment_id, parent_run_id, trial_id):
        client.set_tag(run.info.run_id, Tag.STOPPED_EARLY, "true")
        client.set_tag(run.info.run_id, Tag.STOPPED_AT_EPOCH, str(epoch))
        _clear_failure(client, run)
        client.set_terminated(run.info.run_id, Status.FINISHED)


def close_open_runs(uri: str, experiment_id: str, parent_run_id: str, status: str = Status.KILLED) -> None:
    """Mark the study's child runs that are still RUNNING (their trial was killed) as `status`."""
    client = connect(uri)
    for run in client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{Tag.PARENT}` = '{parent_run_id}' and attributes.status = '{Status.RUNNING}'",
    ):
        client.set_terminated(run.info.run_id, status)
