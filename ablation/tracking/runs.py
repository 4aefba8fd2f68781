"""Writing runs: a run through a client bound to an explicit URI (`TrackedRun`), and a trial's child run
(`TrialRun`, `open_trial`): where each attempt ran, its epochs logged once however often it restarts,
how it ended. Also the metrics added to finished runs (latencies, explanation scores)."""

from __future__ import annotations

import errno
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablation.core.names import MODEL_FILE, TAG_LIMIT, TRAIN_LOSS, Failure, Kind, Status, Tag, as_param, explanation
from ablation.tracking.provenance import machine_tags
from ablation.tracking.store import StoreUnusable, raised_from, connect, no_progress_bars, sqlite_path
from ablation.tracking.system_metrics import watch_system

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


class StoreFailed(RuntimeError):
    """The study's store stopped taking writes mid-study: made read-only, deleted or moved, or full. Every
    trial would fail on it alike, so the study stops rather than retry them (`store_failure`)."""


class StoreGone(StoreFailed):
    """The store's file was deleted or moved: the runs in it went with it."""


# Refusals of the file system under a local artifact store, as an artifact's copy meets them.
_REFUSED = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def store_failure(err: BaseException | None, uri: str) -> StoreFailed | None:
    """The `StoreFailed` that `err` is or was raised from: SQLite refusing a write because of its file
    (read-only, deleted or moved, full, unreadable), under MLflow's and SQLAlchemy's wrappers; None for
    any other error."""
    import sqlite3

    if (failed := raised_from(err, StoreFailed)) is not None:
        return failed
    cause = raised_from(err, sqlite3.OperationalError)
    if cause is None:
        return None
    where = sqlite_path(uri) or uri
    code = getattr(cause, "sqlite_errorcode", 0)
    # A deleted file still takes writes through the connections open on it, until SQLite notices
    # (DBMOVED); a connection opened since finds a new, empty file.
    if code == sqlite3.SQLITE_READONLY_DBMOVED or "no such table" in str(cause):
        return StoreGone(f"the MLflow store {where} was deleted or moved while the study ran")
    if code & 0xFF in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN):
        return StoreFailed(f"the MLflow store {where} can no longer be written ({cause})")
    return None


class _StoreFailureUnlogged(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and store_failure(record.exc_info[1], ""))


def unlog_store_failures() -> None:
    """MLflow logs each failed query with its traceback before raising it: a store that fails mid-study
    would print one per write, where the study's end says it once."""
    logger = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _StoreFailureUnlogged) for f in logger.filters):
        logger.addFilter(_StoreFailureUnlogged())


def _now_ms() -> int:
    return int(time.time() * 1000)


class TrackedRun:
    """One MLflow run, written through a client bound to an explicit URI."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, as_param(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's batch limit for params
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        ts = _now_ms()
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log(self, *, params: Mapping[str, Any] = {}, tags: Mapping[str, Any] = {},
            metrics: Mapping[str, float] = {}, step: int = 0) -> None:
        """Params, tags and metrics in as few writes as MLflow's batch limits allow (one, for a trial's
        start): each write to a SQLite store is a transaction, which dominates a short trial's cost."""
        from mlflow.entities import Metric, Param, RunTag

        ts = _now_ms()
        params_ = [Param(k, as_param(v)) for k, v in params.items()]
        tags_ = [RunTag(k, str(v)) for k, v in tags.items()]
        metrics_ = [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        while params_ or tags_ or metrics_:  # MLflow's limits: 100 params, 100 tags, 1000 entities in all
            batch_params, params_ = params_[:100], params_[100:]
            batch_tags, tags_ = tags_[:100], tags_[100:]
            room = 1000 - len(batch_params) - len(batch_tags)
            batch_metrics, metrics_ = metrics_[:room], metrics_[room:]
            self.client.log_batch(self.run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags)

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, text, path)

    def log_folder(self, folder: Path, artifact_path: str) -> None:
        """Upload a folder's files; `StoreUnusable` if the store will not take them (read-only, say)."""
        from mlflow.exceptions import MlflowException

        no_progress_bars()
        try:
            self.client.log_artifacts(self.run_id, str(folder), artifact_path)
        except (OSError, MlflowException) as err:
            raise StoreUnusable(f"{type(err).__name__}: {' '.join(str(err).split())}") from None

    def log_file(self, name: str, write: Callable[[Path], None]) -> None:
        """An artifact `name`, which `write(path)` writes to a file of that name: written to disk, not
        held in memory, whatever its size."""
        no_progress_bars()
        with tempfile.TemporaryDirectory() as folder:
            write(Path(folder) / name)
            try:
                self.client.log_artifact(self.run_id, str(Path(folder) / name))
            except OSError as err:
                if err.errno not in _REFUSED:
                    raise
                raise StoreFailed(f"the MLflow store's artifacts can no longer be written ({err.strerror}: "
                                  f"{err.filename})") from None

    def latest_metrics(self) -> dict[str, float]:
        return dict(self.client.get_run(self.run_id).data.metrics)

    def finish(self, status: str = Status.FINISHED) -> None:
        self.client.set_terminated(self.run_id, status)


def log_metrics(uri: str, run_id: str, metrics: Mapping[str, float]) -> None:
    """Add metrics to a finished run."""
    TrackedRun(connect(uri), run_id).log_metrics(metrics)


def log_explanation(uri: str, run_id: str, scores: Mapping[str, float], *, layer: str, images: int) -> None:
    """Add `ablate explain --score`'s scores to a trial's run, each as `explanation(score)`, with the
    layer Grad-CAM looked at and the number of images as tags."""
    log_metrics(uri, run_id, {explanation(k): v for k, v in scores.items()})
    connect(uri).set_tag(run_id, Tag.EXPLAIN_LAYER, layer)
    connect(uri).set_tag(run_id, Tag.EXPLAIN_IMAGES, str(images))


def log_latencies(uri: str, latencies: Mapping[str, Mapping[str, float]]) -> None:
    """Each run's model latency metrics, run id -> metrics."""
    client = connect(uri)
    for run_id, metrics in latencies.items():
        TrackedRun(client, run_id).log_metrics(metrics)


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
    _monitor: Any = field(default=None, repr=False)  # sampling the system metrics, from `start`

    def start(self, *, node_id: str, pid: int, device: str, gpu_ids: list, resumed_from_epoch: int,
              costs: Mapping[str, float] = {}, gpu_name: str = "", cpu_kernels: str = "") -> None:
        """Record where this attempt runs (node, device, the machine's host, CPU and GPU models, and the
        instruction set torch's CPU kernels use), which attempt it is, and that the one before was lost; and
        a new run's params and its model's `costs`, all in one write. Then sample the system metrics
        (`watch_system`) until `stop_system_metrics`."""
        tags = {Tag.NODE_ID: node_id, Tag.PID: pid, Tag.DEVICE: device, Tag.GPU_IDS: ",".join(map(str, gpu_ids)),
                Tag.ATTEMPTS: self.attempts + 1, Tag.RESUMED_FROM_EPOCH: resumed_from_epoch}
        tags |= machine_tags(gpu_name, cpu_kernels)
        if self.lost:
            tags[Tag.LAST_FAILURE] = Failure.LOST_WORKER
        self.fence()
        self.run.log(params=self.params, tags=tags, metrics=costs)
        if self.uri:
            self._monitor = watch_system(self.uri, self.run.run_id, resume=bool(self.attempts))

    def stop_system_metrics(self) -> None:
        """Stop sampling, at once and without a write (the samples are written as they are taken)."""
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None

    def upload_model(self, write: Callable[[Path], None]) -> None:
        """The trained weights, as MODEL_FILE: `write(path)` writes them to a file of that name, which is
        uploaded; the epoch's write then tags the run `ModelKept.KEPT`."""
        self.fence()
        self.run.log_file(MODEL_FILE, write)

    def log_epoch(self, metrics: Mapping[str, float], epoch: int, tags: Mapping[str, Any] = {}) -> None:
        """One epoch's metrics, and `tags` in the same write (the last epoch's say what became of the weights)."""
        self.fence()
        if epoch not in self.logged_epochs:  # an earlier attempt may have logged it before dying
            self.run.log(metrics=metrics, tags=tags, step=epoch)
        elif tags:
            self.run.set_tags(tags)

    def fail(self, failure: Failure, error: str) -> None:
        """End the run as failed, saying how: KILLED if the study was interrupted, else FAILED."""
        self.stop_system_metrics()
        self.fence()
        self.run.set_tags({Tag.FAILURE: failure, Tag.ERROR: error[:TAG_LIMIT]})
        self.run.finish(Status.KILLED if failure == Failure.INTERRUPTED else Status.FAILED)

    def finish(self) -> None:
        self.stop_system_metrics()
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
               params: Mapping[str, Any], fence: Callable[[], None] = lambda: None) -> TrialRun:
    """The trial's child run under the study's parent: the one an earlier attempt left unfinished
    (a retry continues it, so each trial has one run and each epoch is logged once), else a new one.
    `fence` is called before each write (see `store.lease_check`)."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():  # connecting would create a new, empty store in its place
        raise StoreGone(f"the MLflow store {db} was deleted or moved while the study ran")
    client = connect(uri)
    earlier = _trial_runs(client, experiment_id, parent_run_id, trial_id)
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
