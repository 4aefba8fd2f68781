"""Where a study's runs go: the tracking URI made absolute, a store probed before a study relies on it,
a new SQLite store created one process at a time, the study's lease and its experiment.

Everything takes an explicit, absolute tracking URI: a trial that fell back to MLflow's default would
log into Ray's temp directory and be lost. MLflow itself loads only when a client is made.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ablation.core.names import Kind, Tag

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

DEFAULT_STORE = Path("mlruns")
PROBE_TIMEOUT = 5.0  # seconds; MLflow itself would retry an absent server for minutes


class StoreUnusable(RuntimeError):
    """A store that cannot take a study: a server that does not answer, or a store that is read-only."""


class StoreNotFound(LookupError):
    """A local store that does not exist: reading it must not create an empty one."""


def resolve_uri(uri: str | None = None) -> str:
    """The tracking URI to use, made absolute: `--tracking-uri`, else $MLFLOW_TRACKING_URI, else ./mlruns."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri:
        return f"sqlite:///{(DEFAULT_STORE / 'mlflow.db').resolve()}"
    if uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    if "://" not in uri:  # a plain path: a database file, or a folder to hold one
        path = Path(uri).resolve()
        return f"sqlite:///{path if path.suffix == '.db' else path / 'mlflow.db'}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def check_store(uri: str, *, writing: bool) -> None:
    """Fail at once, naming the store, if it cannot be used: a server must answer, and a local store
    that a study writes to must be writable (checked without creating anything)."""
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=PROBE_TIMEOUT)
        except requests.RequestException as err:
            reason = f"no answer within {PROBE_TIMEOUT:.0f} s" if isinstance(err, requests.Timeout) \
                else "connection refused or host unreachable"
            raise StoreUnusable(f"--tracking-uri {uri}: no MLflow server answers there ({reason}); start one "
                                "(mlflow server --host 127.0.0.1 ...) or check the address") from None
        return
    db = sqlite_path(uri)
    if db is None or not writing:
        return
    existing = next(p for p in (db, *db.parents) if p.exists())
    needed = [db, db.parent] if existing == db else [existing]  # SQLite writes its journal beside the file
    needed += [p for p in (db.parent / "artifacts",) if p.exists()]
    for path in needed:
        if not os.access(path, os.W_OK):
            raise StoreUnusable(f"--tracking-uri {uri}: {path} is read-only, and a study writes its runs there; "
                                "pass --tracking-uri a store you can write to")


def connect(uri: str) -> MlflowClient:
    """A client bound to `uri` (a local store that does not exist yet is created by its first write)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def connect_to_write(uri: str) -> MlflowClient:
    """A client for a store a study writes to, created first if it is a new local one."""
    db = sqlite_path(uri)
    if db is not None:  # even if the file exists: another process may be creating its tables right now
        _create_store(db)
    return connect(uri)


def connect_to_read(uri: str) -> MlflowClient:
    """A client for a store that must already exist (a report or an explanation reads, never creates)."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise StoreNotFound(f"there is no MLflow store at {db} (run a study there first, or pass --tracking-uri)")
    return connect(uri)


def create_store(uri: str) -> None:
    """Create a new local store's tables now (seconds of work), rather than at its first write."""
    connect_to_write(uri)


def _create_store(db: Path) -> None:
    """Create a SQLite store's tables one process at a time: two processes creating a new store at
    once race on its tables (`table datasets already exists`)."""
    from ablation.tracking.lease import FileLease

    lock = FileLease(_locks(db) / "store.lock", "the store's creation").acquire(wait=True)
    try:
        connect(f"sqlite:///{db}").search_experiments(max_results=1)
    finally:
        lock.release()


def _locks(db: Path) -> Path:
    return db.parent / f"{db.name}.locks"


def no_progress_bars() -> None:
    """MLflow draws a progress bar for every artifact it moves, into the middle of ablate's own output:
    called before an artifact is uploaded or downloaded (the setting is read at each transfer)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@contextmanager
def hold_study(uri: str, name: str, *, ttl: float | None = None) -> Iterator[None]:
    """Hold the study's lease for the duration (see lease.py); `StudyBusy` names the driver that has it.
    On a server, creates the study's experiment, where the lease is a tag."""
    from ablation.tracking.lease import DEFAULT_TTL, FileLease, HeartbeatLease

    db = sqlite_path(uri)
    if db is not None:  # the lease needs no store: `create_store` makes one, while Ray starts
        lease = FileLease(_locks(db) / f"study-{name}.lock", name)
    else:
        client = connect(uri)
        experiment_id = experiment(client, uri, name)
        lease = HeartbeatLease(
            name, uri, ttl=ttl or DEFAULT_TTL,
            read=lambda: client.get_experiment(experiment_id).tags.get(Tag.LEASE),
            write=lambda text: client.set_experiment_tag(experiment_id, Tag.LEASE, text),
            delete=lambda: client.delete_experiment_tag(experiment_id, Tag.LEASE))
    lease.acquire()
    try:
        yield
    finally:
        lease.release()


def experiment(client: MlflowClient, uri: str, name: str) -> str:
    """The id of the study's experiment, created if new (by whichever of two racing drivers is first)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_location(uri, name))
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Beside a SQLite store, under `artifacts/`; a server decides for itself."""
    db = sqlite_path(uri)
    return (db.parent / "artifacts" / experiment).as_uri() if db else None


def latest_parent(client: MlflowClient, experiment_id: str):
    """The study's most recent parent run, or None."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{Tag.KIND}` = '{Kind.STUDY}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None
