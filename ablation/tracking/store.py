"""Where a study's runs go: the tracking URI made absolute, a store probed before a study relies on it,
a new SQLite store created one process at a time, the study's lease and its experiment.

Everything takes an explicit, absolute tracking URI: a trial that fell back to MLflow's default would
log into Ray's temp directory and be lost. MLflow itself loads only when a client is made.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ablation.core.names import Kind, Tag

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from ablation.tracking.lease import FileLease, HeartbeatLease

DEFAULT_STORE = Path("mlruns")
PROBE_TIMEOUT = 5.0  # seconds; MLflow itself would retry an absent server for minutes
# A cheap MLflow REST call that every tracking server since MLflow 1.28 answers with JSON: `/health`
# alone is answered by many other web servers, which MLflow's client then meets with a bare 404.
SERVER_PROBE = "/api/2.0/mlflow/experiments/search"
LOCK_WAIT = 5.0  # seconds a busy SQLite store is waited for at start; MLflow would wait 20 s a query, then fail


class StoreUnusable(RuntimeError):
    """A store that cannot take a study: a server that does not answer or is not MLflow, a store that
    is read-only, or one that another process holds locked."""


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
    """Fail at once, naming the store, if it cannot be used: a server must answer as MLflow does, and
    a local store must not be held locked by another process and, if a study writes to it, must be
    writable (checked without creating anything)."""
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
        return
    db = sqlite_path(uri)
    if db is None:
        return
    if writing:
        existing = next(p for p in (db, *db.parents) if p.exists())
        needed = [db, db.parent] if existing == db else [existing]  # SQLite writes its journal beside the file
        needed += [p for p in (db.parent / "artifacts",) if p.exists()]
        for path in needed:
            if not os.access(path, os.W_OK):
                raise StoreUnusable(f"--tracking-uri {uri}: {path} is read-only, and a study writes its runs there; "
                                    "pass --tracking-uri a store you can write to")
    if db.is_file():
        _check_not_locked(uri, db, writing=writing)


def _check_server(uri: str) -> None:
    """One MLflow REST call, made as MLflow's client makes it (its credentials and TLS settings from the
    environment) but without its retries, and its answer checked for MLflow's JSON."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        answer = http_request(get_default_host_creds(uri.rstrip("/")), SERVER_PROBE, "GET",
                              params={"max_results": 1}, max_retries=0, backoff_factor=0, timeout=PROBE_TIMEOUT,
                              raise_on_status=False)
    except MlflowException as err:  # MLflow wraps requests' errors; the timeout shows further down the chain
        reason = f"no answer within {PROBE_TIMEOUT:.0f} s" if raised_from(err, TimeoutError) \
            else "connection refused or host unreachable"
        raise StoreUnusable(f"--tracking-uri {uri}: no MLflow server answers there ({reason}); start one "
                            "(mlflow server --host 127.0.0.1 ...) or check the address") from None
    what = f"GET {SERVER_PROBE} answered {answer.status_code} {answer.reason or ''}".rstrip()
    if answer.status_code in (401, 403):
        raise StoreUnusable(f"--tracking-uri {uri}: the server refused access ({what}); give MLflow its "
                            "credentials (MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or "
                            "MLFLOW_TRACKING_TOKEN), or, if it checks host names, start it with --allowed-hosts")
    if answer.status_code >= 500:
        raise StoreUnusable(f"--tracking-uri {uri}: the server there failed ({what}); see its log")
    if answer.status_code == 200 and _is_mlflow_answer(answer):
        return
    if answer.status_code == 200:
        what += f" with {answer.headers.get('Content-Type', 'no content type').split(';')[0]}, not MLflow's JSON"
    raise StoreUnusable(f"--tracking-uri {uri}: the server there is not an MLflow tracking server ({what}); "
                        "check the address and port, or start one (mlflow server --host 127.0.0.1 ...)")


def _is_mlflow_answer(answer) -> bool:
    """A search's answer: a JSON object holding a list of experiments, or empty (protobuf's JSON leaves
    out an empty list, as when every experiment was deleted)."""
    try:
        body = answer.json()
    except ValueError:
        return False
    return body == {} or isinstance(body, dict) and isinstance(body.get("experiments"), list)


def _check_not_locked(uri: str, db: Path, *, writing: bool) -> None:
    """Wait `LOCK_WAIT` at most for the lock a study's first write (or a reader's first read) needs.
    Another process holding the store in a long transaction would otherwise fail MLflow's first
    query only after its own 20 s, with SQLAlchemy's traceback, and after Ray had started. Any other
    fault of the file is left to MLflow, which names it."""
    import sqlite3

    try:  # `mode` so that a missing file is not created; autocommit, so the lock is taken only below
        store = sqlite3.connect(f"{db.as_uri()}?mode={'rw' if writing else 'ro'}", uri=True, timeout=LOCK_WAIT,
                                isolation_level=None)
    except sqlite3.Error:
        return
    try:
        store.execute("BEGIN IMMEDIATE" if writing else "BEGIN")  # IMMEDIATE: the lock a writer takes
        store.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a reader's lock
        store.execute("ROLLBACK")
    except sqlite3.Error as err:
        if _is_locked(err):
            raise StoreUnusable(_locked_message(uri, db, LOCK_WAIT)) from None
    finally:
        store.close()


def _is_locked(err: BaseException | None) -> bool:
    """SQLite's "database is locked" (also under SQLAlchemy's and MLflow's wrappers)."""
    import sqlite3

    err = raised_from(err, sqlite3.OperationalError)
    # Extended codes (SQLITE_BUSY_RECOVERY, ...) keep the primary code in their low byte.
    code = getattr(err, "sqlite_errorcode", 0) & 0xFF
    return err is not None and code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _locked_message(uri: str, db: Path, waited: float) -> str:
    return (f"--tracking-uri {uri}: another process holds the store {db} locked (waited {waited:.0f} s); "
            "let it finish or stop it, then run this again")


def raised_from(err: BaseException | None, kind: type[BaseException] | tuple[type[BaseException], ...]) -> BaseException | None:
    """`err` or the first exception it was raised from (or while handling) that is a `kind`."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kind):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


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
    start = time.monotonic()
    try:
        if not db.exists():
            _from_template(db)
        with _db_errors_unlogged():
            connect(f"sqlite:///{db}").search_experiments(max_results=1)
    except Exception as err:
        # Locked after `check_store` passed (while Ray started): the same one line, after MLflow's own wait.
        if _is_locked(err):
            raise StoreUnusable(_locked_message(f"sqlite:///{db}", db, time.monotonic() - start)) from None
        raise
    finally:
        lock.release()


def _from_template(db: Path) -> None:
    """A new SQLite store as a copy of an empty one MLflow built, kept per MLflow version in ablate's
    cache: MLflow builds a store by running every migration of its schema, 3.6 s a store, where a copy
    opens in 0.1 s (measured). The Default experiment's artifact location is made what MLflow would
    have given it here. Anything amiss, and MLflow builds the store itself."""
    import shutil
    import sqlite3

    import mlflow

    from ablation.core.cache import cache_dir

    template = cache_dir() / "stores" / f"mlflow-{mlflow.__version__}.db"
    part = db.with_name(f"{db.name}.{os.getpid()}.part")
    try:
        if not template.is_file():
            template.parent.mkdir(parents=True, exist_ok=True)
            built = template.with_name(f"{template.name}.{os.getpid()}.part")
            with _db_errors_unlogged():
                connect(f"sqlite:///{built}").search_experiments(max_results=1)
            os.replace(built, template)  # whole, or not at all: another process may be building it too
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, part)
        with sqlite3.connect(part) as copy:
            copy.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                         (str(Path.cwd() / "mlruns" / "0"),))
        copy.close()
        os.replace(part, db)
    except sqlite3.Error:  # not a store: built again next time
        part.unlink(missing_ok=True)
        template.unlink(missing_ok=True)
    except OSError:
        part.unlink(missing_ok=True)


@contextmanager
def _db_errors_unlogged() -> Iterator[None]:
    """MLflow logs each failed query with its traceback before raising it: the error raised says it once.
    Its other messages (creating the tables, with --verbose) still pass."""
    import logging

    logger = logging.getLogger("mlflow.store.db.utils")

    def unlogged(record: logging.LogRecord) -> bool:
        return record.exc_info is None

    logger.addFilter(unlogged)
    try:
        yield
    finally:
        logger.removeFilter(unlogged)


def _locks(db: Path) -> Path:
    return db.parent / f"{db.name}.locks"


def no_progress_bars() -> None:
    """MLflow draws a progress bar for every artifact it moves, into the middle of ablate's own output:
    called before an artifact is uploaded or downloaded (the setting is read at each transfer)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@contextmanager
def hold_study(uri: str, name: str, *, ttl: float | None = None) -> Iterator[FileLease | HeartbeatLease]:
    """Hold the study's lease for the duration (see lease.py), and yield it: its `token` and `check()`
    fence what a driver that was suspended would write. `StudyBusy` names the driver that has it.
    On a server, creates the study's experiment, where the lease is a tag."""
    from ablation.tracking.lease import FileLease, HeartbeatLease, ttl_setting

    db = sqlite_path(uri)
    if db is not None:  # the lease needs no store: `create_store` makes one, while Ray starts
        lease = FileLease(_locks(db) / f"study-{name}.lock", name)
    else:
        client = connect(uri)
        experiment_id = experiment(client, uri, name)
        lease = HeartbeatLease(
            name, uri, ttl=ttl or ttl_setting(),
            read=lambda: client.get_experiment(experiment_id).tags.get(Tag.LEASE),
            write=lambda text: client.set_experiment_tag(experiment_id, Tag.LEASE, text),
            delete=lambda: client.delete_experiment_tag(experiment_id, Tag.LEASE))
    lease.acquire()
    try:
        yield lease
    finally:
        lease.release()


def lease_check(uri: str, experiment_id: str, study: str, token: str, ttl: float) -> Callable[[], None]:
    """What a trial calls before it writes: raises `LeaseLost` once the study's lease (held with `token`)
    has passed to another driver. A lease without a token (a local lock) cannot be lost."""
    if not token:
        return lambda: None
    from ablation.tracking.lease import LeaseCheck

    client = connect(uri)
    return LeaseCheck(study, uri, token, lambda: client.get_experiment(experiment_id).tags.get(Tag.LEASE), ttl)


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
