"""Writing runs: a run through a client bound to an explicit URI (`TrackedRun`), what it writes in one go
(`Batch`), and the metrics added to finished runs (latencies, explanation scores); and what a store that
stops taking writes mid-study looks like (`store_failure`). A trial's own run is `trial_run.py`'s."""

from __future__ import annotations

import errno
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablation.core.names import Status, Tag, as_param, explanation
from ablation.tracking.store import StoreUnusable, connect, no_progress_bars, raised_from, sqlite_path

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


@dataclass(frozen=True)
class Batch:
    """Params, tags and metrics (each metric with its own step) to write to a run together."""

    params: tuple = ()  # of mlflow.entities.Param
    tags: tuple = ()  # RunTag
    metrics: tuple = ()  # Metric

    @classmethod
    def of(cls, *, params: Mapping[str, Any] = {}, tags: Mapping[str, Any] = {}, metrics: Mapping[str, float] = {},
           step: int = 0) -> Batch:
        from mlflow.entities import Metric, Param, RunTag

        ts = _now_ms()
        return cls(tuple(Param(k, as_param(v)) for k, v in params.items()),
                   tuple(RunTag(k, str(v)) for k, v in tags.items()),
                   tuple(Metric(k, float(v), ts, step) for k, v in metrics.items()))

    def __add__(self, other: Batch) -> Batch:
        return Batch(self.params + other.params, self.tags + other.tags, self.metrics + other.metrics)

    def __bool__(self) -> bool:
        return bool(self.params or self.tags or self.metrics)


class TrackedRun:
    """One MLflow run, written through a client bound to an explicit URI."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.write(Batch.of(params=params))

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        self.write(Batch.of(metrics=metrics, step=step))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.write(Batch.of(tags=tags))

    def log(self, *, params: Mapping[str, Any] = {}, tags: Mapping[str, Any] = {},
            metrics: Mapping[str, float] = {}, step: int = 0) -> None:
        self.write(Batch.of(params=params, tags=tags, metrics=metrics, step=step))

    def write(self, batch: Batch) -> None:
        """A batch in as few writes as MLflow's limits allow (one, for a trial's): each write to a SQLite
        store is a transaction per kind of entity, which dominates a short trial's cost."""
        params, tags, metrics = list(batch.params), list(batch.tags), list(batch.metrics)
        while params or tags or metrics:  # MLflow's limits: 100 params, 100 tags, 1000 entities in all
            batch_params, params = params[:100], params[100:]
            batch_tags, tags = tags[:100], tags[100:]
            room = 1000 - len(batch_params) - len(batch_tags)
            batch_metrics, metrics = metrics[:room], metrics[room:]
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
