"""MLflow: where a study's runs go, what they are named, and reading them back.

The run contract lives here and nowhere else: the tag names (`Tag`), the metric names read back, the
artifacts, and how a trial ended (`Outcome`, with its `Failure` kind). Layout: one experiment per
study name, one parent run per `ablate run`, one nested child run per trial (tag
`mlflow.parentRunId`, so the UI groups them). Params are the spec's dotted keys; metrics are the
engine's and the accounting's own keys, logged per epoch with `step=epoch`. Everything here takes an
explicit, absolute tracking URI: a trial that fell back to MLflow's default would log into Ray's
temp directory and be lost.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

DEFAULT_STORE = Path("mlruns")
# MLflow draws a progress bar for every artifact it downloads, into the middle of ablate's own output.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class Tag(StrEnum):
    """Every tag ablate writes or reads."""

    PARENT = "mlflow.parentRunId"  # MLflow's own: the UI nests a child run under it
    KIND = "ablate.kind"  # a `Kind`
    TRIAL_ID = "ablate.trial_id"
    LEASE = "ablate.lease"  # on the experiment, on a server: the driver that holds the study
    # A study's parent run: what the report reads back, and how many trials did not finish.
    AXES = "ablate.axes"  # comma-separated
    DESIGN = "ablate.design"
    METRIC = "ablate.metric"
    MODE = "ablate.mode"
    STORAGE = "ablate.storage"
    DATA_SKIPPED = "ablate.data_skipped"
    TRIALS_FAILED = "ablate.trials_failed"
    TRIALS_DIVERGED = "ablate.trials_diverged"
    TRIALS_UNFINISHED = "ablate.trials_unfinished"
    RACE_BASELINE = "ablate.race.baseline"  # a race's: the arm the others were decided against
    RACE_DECIDED = "ablate.race.decided"  # "4 of 5 arms" better, worse or equivalent; then a tag per state
    # A trial's run: where its latest attempt ran, and how the run ended.
    NODE_ID = "ablate.node_id"
    PID = "ablate.pid"
    DEVICE = "ablate.device"
    GPU_IDS = "ablate.gpu_ids"
    ATTEMPTS = "ablate.attempts"
    RESUMED_FROM_EPOCH = "ablate.resumed_from_epoch"
    FAILURE = "ablate.failure"  # a `Failure`; dropped when a later attempt goes on
    ERROR = "ablate.error"
    LAST_FAILURE = "ablate.last_failure"  # an earlier attempt's, when it died without recording one
    STOPPED_EARLY = "ablate.stopped_early"
    STOPPED_AT_EPOCH = "ablate.stopped_at_epoch"
    MODEL = "ablate.model"  # a `ModelKept`: whether the run's trained weights are kept as its artifact
    # Provenance: MLflow's own tags where it has one (its UI shows them), ablate's for the rest.
    NOTE = "mlflow.note.content"  # on the experiment and the parent run: the UI's description
    SOURCE_NAME = "mlflow.source.name"  # the study's spec file (the UI shows its name beside the git commit)
    SOURCE_TYPE = "mlflow.source.type"
    USER = "mlflow.user"
    GIT_COMMIT = "mlflow.source.git.commit"
    GIT_BRANCH = "mlflow.source.git.branch"
    GIT_DIRTY = "mlflow.source.git.dirty"  # "true": the commit is not all of the code that ran
    GIT_REPO_URL = "mlflow.source.git.repoURL"
    COMMAND = "ablate.command"  # the command line that ran the study
    HOST = "ablate.host"
    CPU = "ablate.cpu"
    GPU = "ablate.gpu"
    # A study's parent run, once its trials are done: the best configuration by the study's metric.
    BEST = "ablate.best"


VERSION_TAG = "ablate.version."  # + a package's name: its installed version, on the parent and each trial
EXPERIMENT_KIND = "mlflow.experimentKind"  # on the experiment: which of its views the MLflow UI opens
MACHINE_LEARNING = "custom_model_development"  # that kind's value for a model-training experiment


class Kind(StrEnum):
    """What a run is, by its `Tag.KIND`."""

    STUDY = "study"  # the parent run
    TRIAL = "trial"


class Status(StrEnum):
    """MLflow's run statuses."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class Failure(StrEnum):
    """Why a trial's run did not finish."""

    DIVERGENCE = "divergence"  # a result: its loss blew up, and a retry would repeat it
    OUT_OF_MEMORY = "out_of_memory"
    ERROR = "error"
    INTERRUPTED = "interrupted"  # the study was stopped
    LOST_WORKER = "lost_worker"  # its worker or node died, so it recorded nothing itself


class ModelKept(StrEnum):
    """What became of a trial's trained weights, under the study's `keep_models` policy."""

    KEPT = "kept"  # the run has MODEL_FILE
    NOT_KEPT = "not kept"  # the policy did not keep them: better seeds of its arm were kept, or none are
    SUPERSEDED = "superseded"  # kept, then removed when better seeds of its arm came


class Outcome(StrEnum):
    """How a trial ended, as a report counts it."""

    FINISHED = "finished"
    STOPPED_EARLY = "stopped_early"  # by the scheduler: a result of the search
    DIVERGED = "diverged"
    FAILED = "failed"
    UNFINISHED = "unfinished"  # killed, or still running


# Metrics a trial logs under the engine's and the accounting's own keys; these are the ones read back.
TRAIN_LOSS = "train_loss"  # logged every epoch, so its steps are the epochs a run has logged
TEST_ACCURACY, TEST_MACRO_F1 = "test_accuracy", "test_macro_f1"
PARAMS_TOTAL, PARAMS_ADDED, MACS, LATENCY_MS = "params_total", "params_added", "macs", "latency_ms"
LATENCY_IQR_MS, LATENCY_BUSY = "latency_iqr_ms", "latency_busy"  # its spread, and the load it was timed under
COSTS = (PARAMS_TOTAL, PARAMS_ADDED, MACS, LATENCY_MS)
DEFAULT_METRIC = "val_macro_f1"  # the ranking metric of a study whose parent run does not name one
_TEST_F1, _EXPLAIN = "test_f1_", "explain_"


def best(metric: str) -> str:
    """The best-epoch value of a study's ranking metric, logged at a trial's last epoch."""
    return f"best_{metric}"


def test_f1(class_name: str) -> str:
    return f"{_TEST_F1}{class_name}"


def f1_class(key: str) -> str | None:
    """The class a per-class test F1 metric is of, or None for any other metric."""
    return key.removeprefix(_TEST_F1) if key.startswith(_TEST_F1) else None


def explanation(score: str) -> str:
    """The metric an `ablate explain --score` score is logged as."""
    return f"{_EXPLAIN}{score}"


def is_score(key: str) -> bool:
    """Whether a metric is a score to compare over seeds: a test figure of the chosen epoch (not its loss
    or time), or an explanation score (not how many images it saw, nor the cues' share of them)."""
    return (key.startswith("test_") and not key.endswith("_loss") and key != "test_time_s") or (
        key.startswith(_EXPLAIN) and not key.startswith((explanation("images"), explanation("cue_area"))))


SPEC_ARTIFACT = "spec.yaml"  # the parent run's: the study's spec as run
MODEL_FILE = "best_model.pt"  # a trial's kept weights (see `ModelKept`): what `ablate explain` loads
SKIPPED_ARTIFACT = "data_skipped.json"  # the parent run's: the inputs the data left out, and why
REPORT_ARTIFACTS = "report"  # the parent run's folder of `ablate report` files
_TAG_LIMIT = 5000  # characters of an error kept in its tag: older MLflow stores refuse longer values


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


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


class StoreUnusable(RuntimeError):
    """A store that cannot take a study: a server that does not answer, or a store that is read-only."""


PROBE_TIMEOUT = 5.0  # seconds; MLflow itself would retry an absent server for minutes


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
    db = _sqlite_path(uri)
    if db is None or not writing:
        return
    existing = next(p for p in (db, *db.parents) if p.exists())
    needed = [db, db.parent] if existing == db else [existing]  # SQLite writes its journal beside the file
    needed += [p for p in (db.parent / "artifacts",) if p.exists()]
    for path in needed:
        if not os.access(path, os.W_OK):
            raise StoreUnusable(f"--tracking-uri {uri}: {path} is read-only, and a study writes its runs there; "
                                "pass --tracking-uri a store you can write to")


def _create_store(db: Path) -> None:
    """Create a SQLite store's tables one process at a time: two processes creating a new store at
    once race on its tables (`table datasets already exists`)."""
    from .lease import FileLease

    lock = FileLease(_locks(db) / "store.lock", "the store's creation").acquire(wait=True)
    try:
        MlflowClient(f"sqlite:///{db}").search_experiments(max_results=1)
    finally:
        lock.release()


def create_store(uri: str) -> None:
    """Create a new local store's tables now (seconds of work), rather than at its first write."""
    _writing(uri)


def _writing(uri: str) -> MlflowClient:
    """A client for a store a study writes to, created first if it is a new local one."""
    db = _sqlite_path(uri)
    if db is not None:  # even if the file exists: another process may be creating its tables right now
        _create_store(db)
    return MlflowClient(uri)


def _locks(db: Path) -> Path:
    return db.parent / f"{db.name}.locks"


@contextmanager
def hold_study(uri: str, name: str, *, ttl: float | None = None) -> Iterator[None]:
    """Hold the study's lease for the duration (see lease.py); `StudyBusy` names the driver that has it.
    On a server, creates the study's experiment, where the lease is a tag."""
    from .lease import DEFAULT_TTL, FileLease, HeartbeatLease

    db = _sqlite_path(uri)
    if db is not None:  # the lease needs no store: `create_store` makes one, while Ray starts
        lease = FileLease(_locks(db) / f"study-{name}.lock", name)
    else:
        client = MlflowClient(uri)
        experiment_id = _experiment(client, uri, name)
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


def _experiment(client: MlflowClient, uri: str, name: str) -> str:
    """The id of the study's experiment, created if new (by whichever of two racing drivers is first)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_location(uri, name))
    except MlflowException:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Beside a SQLite store, under `artifacts/`; a server decides for itself."""
    db = _sqlite_path(uri)
    return (db.parent / "artifacts" / experiment).as_uri() if db else None


def server_command(uri: str, *, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The `mlflow server` command line for a local store, serving its artifacts too."""
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", host, "--port", str(port), "--workers", "1"]
    db = _sqlite_path(uri)
    if db is not None:  # artifacts beside the store, as ablate writes them
        command += ["--artifacts-destination", (db.parent / "artifacts").as_uri()]
    return command


def log_metrics(uri: str, run_id: str, metrics: Mapping[str, float]) -> None:
    """Add metrics to a finished run."""
    TrackedRun(MlflowClient(uri), run_id).log_metrics(metrics)


def log_explanation(uri: str, run_id: str, scores: Mapping[str, float]) -> None:
    """Add `ablate explain --score`'s scores to a trial's run, each as `explanation(score)`."""
    log_metrics(uri, run_id, {explanation(k): v for k, v in scores.items()})


def ui_command(uri: str) -> str:
    """What to type to open the MLflow UI on this store (it listens on loopback only)."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"ablate ui --tracking-uri {uri}"


# --- Provenance: where a study's code and runs came from ------------------------------------------

GIT_TIMEOUT = 2.0  # seconds for each git command: a hung network filesystem must not hold a study back
_PACKAGES = ("ablate", "torch", "torchvision", "ray", "mlflow")
_USERINFO = re.compile(r"(://)[^/@\s]+@")  # "https://user:token@host/...": credentials never become tags


def _git(folder: Path, *args: str) -> str | None:
    """git's answer in `folder`, or None: not a checkout, no git, or no answer within GIT_TIMEOUT."""
    try:
        done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=GIT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_tags(folder: Path | None = None) -> dict[str, str]:
    """MLflow's git tags for the checkout `folder` (default the working directory) is in: commit, branch
    (none when detached), whether files git tracks have changed since the commit, and the origin's URL
    without credentials. Empty outside a git checkout: nothing is claimed that is not known."""
    folder = folder or Path.cwd()
    commit = _git(folder, "rev-parse", "HEAD")
    if not commit:
        return {}
    tags = {Tag.GIT_COMMIT: commit}
    branch = _git(folder, "rev-parse", "--abbrev-ref", "HEAD")
    if branch and branch != "HEAD":
        tags[Tag.GIT_BRANCH] = branch
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    if status is not None:
        tags[Tag.GIT_DIRTY] = "true" if status else "false"
    origin = _git(folder, "remote", "get-url", "origin")
    if origin:
        tags[Tag.GIT_REPO_URL] = _USERINFO.sub(r"\1", origin)
    return tags


@lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in _PACKAGES:
        try:
            found[f"{VERSION_TAG}{package}"] = version(package)
        except PackageNotFoundError:
            pass
    return found | {f"{VERSION_TAG}python": platform.python_version()}


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's marketing name and this machine's CPU count, e.g. "AMD EPYC 7B13, 2 CPUs"."""
    name = ""
    try:
        with open("/proc/cpuinfo") as info:  # Linux; elsewhere platform's vaguer answer
            name = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{name or platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"


def _gpu_models() -> str:
    """Every GPU of this machine, e.g. "2 x NVIDIA A100-SXM4-40GB", or "none". NVML (nvidia-ml-py)
    names them without starting CUDA in the driver; torch (if loaded already) only if NVML cannot."""
    names: list[str] = []
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
                     for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVIDIA driver, or no nvidia-ml-py: torch, if the driver has it loaded already
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    names = [n.decode() if isinstance(n, bytes) else n for n in names]
    return ", ".join(f"{names.count(n)} x {n}" if names.count(n) > 1 else n for n in dict.fromkeys(names)) or "none"


def _command_line() -> str:
    """The command that ran the study, as typed (`ablate run ...`), without credentials."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program in ("ablate", "cli.py", "__main__.py"):
        program = "ablate"
    return _USERINFO.sub(r"\1", shlex.join([program, *sys.argv[1:]]))[:_TAG_LIMIT]


def _spec_path() -> Path | None:
    """The study's spec file, as `ablate run SPEC` names it; None if the command names none."""
    spec = next((Path(a) for a in sys.argv[1:] if a.endswith((".yaml", ".yml")) and Path(a).is_file()), None)
    return spec.resolve() if spec else None


def _ablate_version() -> dict[str, str]:
    """ablate's version, and the commit it ran from when it runs from a git checkout (an editable
    install, as in development), e.g. "0.1.0+g3bac13766d73.dirty"."""
    own = git_tags(Path(__file__).resolve().parent)
    found = _versions().get(f"{VERSION_TAG}ablate", "")
    if Tag.GIT_COMMIT in own:
        found += f"+g{own[Tag.GIT_COMMIT][:12]}" + (".dirty" if own.get(Tag.GIT_DIRTY) == "true" else "")
    return {f"{VERSION_TAG}ablate": found}


def study_provenance(folder: Path | None = None) -> dict[str, str]:
    """The parent run's provenance, in MLflow's tags where it has them: the spec file as the source (else
    the command), the user, and the git checkout the spec is in (`folder`; default the spec's, else the
    working directory's); then the command line, the versions of ablate (with its own commit, if it runs
    from a checkout) and of the libraries that ran it, and the driver's host, CPU and GPU."""
    import getpass

    spec, command = _spec_path(), _command_line()
    tags = {Tag.SOURCE_NAME: str(spec) if spec else command, Tag.SOURCE_TYPE: "LOCAL", Tag.COMMAND: command}
    try:
        tags[Tag.USER] = getpass.getuser()
    except (OSError, KeyError):  # a container's user with no name
        pass
    checkout = folder or (spec.parent if spec else Path.cwd())
    return tags | git_tags(checkout) | _versions() | _ablate_version() | {
        Tag.HOST: socket.gethostname(), Tag.CPU: cpu_model(), Tag.GPU: _gpu_models()}


def machine_tags(device: str) -> dict[str, str]:
    """A trial's own host, CPU and GPU and its library versions (a cluster's nodes may differ from the
    driver's), known without a write or a read: cached per process, and the GPU named only if the trial
    already runs on one."""
    tags = _versions() | {Tag.HOST: socket.gethostname(), Tag.CPU: cpu_model()}
    if device.startswith("cuda"):
        import torch

        tags[Tag.GPU] = torch.cuda.get_device_name(torch.device(device))
    return tags


# --- System metrics: MLflow's own, of a run that is not MLflow's active one ---------------------

SYSTEM_INTERVAL = 10.0  # seconds between samples; MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it
FIRST_SAMPLE = 1.0  # seconds into the run of its first sample, so that a run shorter than an interval has one


@lru_cache(maxsize=1)
def _system_monitor_class():
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    class Monitor(SystemMetricsMonitor):
        """MLflow's monitor (its CPU, memory, disk, network and NVIDIA GPU samplers, its `system/` names and
        its batched logging) with its loop reordered, for trials: the first sample a second into the run,
        so a trial shorter than an interval has one; each sample taken at the end of its interval, so the
        CPU share it reports is that interval's (MLflow's takes it at the start, so its first reports the
        time before the run); and stopping it waits for nothing. MLflow 3.17's loop reads the run after
        every wait, so a stop waits for that read (~10 ms on a SQLite store, measured); both drop the
        samples of the unfinished interval, which would cost the trial a write at its end."""

        def monitor(self) -> None:
            from mlflow.tracking.client import MlflowClient

            self.collect_metrics()  # primes psutil's CPU counter: the first sample covers the run from here
            for monitor in self.monitors:
                monitor.clear_metrics()
            wait, taken = min(FIRST_SAMPLE, self.sampling_interval), 0
            while not self._shutdown_event.wait(wait):
                try:  # as MLflow's loop: stop if the run was ended elsewhere (its trial killed, say)
                    if MlflowClient(self._tracking_uri).get_run(self._run_id).info.status != Status.RUNNING:
                        return
                    self.collect_metrics()
                    taken += 1
                    if taken == 1 or taken % self.samples_before_logging == 0:
                        self.publish_metrics(self.aggregate_metrics())
                except Exception:  # as MLflow's: a store that refuses the samples ends the sampling, not the trial
                    return
                wait = self.sampling_interval

    return Monitor


def watch_system(uri: str, run_id: str, *, resume: bool = False):
    """Start sampling this machine's system metrics into run `run_id`, in a thread: FIRST_SAMPLE seconds
    in, then every SYSTEM_INTERVAL seconds, each sample written as MLflow's `system/...` metrics at the
    next step, through a client bound to `uri` (never MLflow's default store: in a Ray worker, that is
    Ray's temp directory). `resume` continues the steps of an earlier attempt's samples (one read).
    Returns the monitor; its `finish()` stops it at once and writes nothing."""
    import logging

    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # "Started monitoring ...", per trial
    monitor = _system_monitor_class()(run_id, sampling_interval=SYSTEM_INTERVAL, resume_logging=resume,
                                      tracking_uri=uri)
    monitor.start()
    return monitor


def _now_ms() -> int:
    return int(time.time() * 1000)


def as_param(value: Any) -> str:
    return "null" if value is None else str(value)


class TrackedRun:
    """One MLflow run, written through a client bound to an explicit URI."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [Param(k, as_param(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's batch limit for params
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        ts = _now_ms()
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log(self, *, params: Mapping[str, Any] = {}, tags: Mapping[str, Any] = {},
            metrics: Mapping[str, float] = {}, step: int = 0) -> None:
        """Params, tags and metrics in as few writes as MLflow's batch limits allow (one, for a trial's
        start): each write to a SQLite store is a transaction, which dominates a short trial's cost."""
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

        try:
            self.client.log_artifacts(self.run_id, str(folder), artifact_path)
        except (OSError, MlflowException) as err:
            raise StoreUnusable(f"{type(err).__name__}: {' '.join(str(err).split())}") from None

    def log_bytes(self, data: bytes, path: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / path).write_bytes(data)
            self.client.log_artifact(self.run_id, str(Path(folder) / path))

    def latest_metrics(self) -> dict[str, float]:
        return dict(self.client.get_run(self.run_id).data.metrics)

    def finish(self, status: str = Status.FINISHED) -> None:
        self.client.set_terminated(self.run_id, status)


# --- What the parent run says of its study: its own settings, its data, its view, its outcome ---

_PARAM_LIMIT = 6000  # characters MLflow keeps of a param


def study_params(spec) -> dict[str, Any]:
    """The parent run's params (`spec` a StudySpec): the study's own settings, not the value a swept key
    has in the spec (every trial overrides it, and the parent's would read as theirs in a compare
    view). Each key the design varies is logged instead as `search.space.<key>`, the JSON list of its
    values; a key every arm sets alike (an ofat centre's, say) as that value."""
    params = spec.params()
    if spec.search.method != "grid" or spec.search.design == "grid":
        varied = {key: list(values) for key, values in spec.search.space.items()}
    else:  # ofat and loco arms each change some keys: their values across the arms, the spec's where unchanged
        arms = [overrides for _, overrides in spec.arms()]
        varied = {}
        for key in dict.fromkeys(k for overrides in arms for k in overrides):
            default = params[key] if key in params else spec.get(key)
            for value in (overrides.get(key, default) for overrides in arms):
                if value not in varied.setdefault(key, []):
                    varied[key].append(value)
    own = {k: v for k, v in params.items() if not any(k == key or key.startswith(f"{k}.") for key in varied)}
    fixed = {key: values[0] for key, values in varied.items() if len(values) == 1 and key in params}
    swept = {f"search.space.{key}": json.dumps(values)[:_PARAM_LIMIT]
             for key, values in varied.items() if key not in fixed}
    return own | fixed | swept


def dataset_input(data) -> Any:
    """The study's data (`data` a DataSpec) as an MLflow dataset input: its name, a digest that differs
    whenever the images or their labels could, where it came from, and a profile of the images per
    split and the class names. Generated data is digested by what generates it (its settings, and
    ablate's version); data on disk by its index: each chosen file's split, class and path under the
    root (its content is not read, so an image replaced in place keeps the digest)."""
    import hashlib

    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json
    from mlflow.entities import Dataset, DatasetInput, InputTag

    from .data import DATASETS, read_index
    from .data.records import SPLITS

    kind = DATASETS.get(data.dataset)
    if kind.read is None:
        generating = {"dataset": data.dataset, "image_size": data.image_size, "seed": data.seed,
                      **{f"{split}_per_class": data.per_class(split) for split in SPLITS},
                      "ablate": _versions().get(f"{VERSION_TAG}ablate", "")}
        sizes = {split: data.per_class(split) * len(kind.classes) for split in SPLITS}
        classes, lines = kind.classes, [json.dumps(generating, sort_keys=True)]
        source = CodeDatasetSource({"generator": f"ablation.data.{data.dataset}",
                                    **{k: str(v) for k, v in generating.items()}})
    else:
        index = read_index(data)
        chosen = {split: index.split(split, data.per_class(split), data.seed) for split in SPLITS}
        sizes, classes = {split: len(items) for split, items in chosen.items()}, index.classes
        roots = (str(data.root), str(Path(data.root).resolve()))
        lines = sorted(f"{item.split}\t{classes[item.label]}\t{_under(item.source, roots)}"
                       for items in chosen.values() for item in items)
        source = get_dataset_source_from_json(json.dumps({"uri": roots[1]}), "local")
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]
    profile = sizes | {"image_size": data.image_size, "classes": list(classes)}
    name = data.dataset if data.root is None else f"{data.dataset}:{Path(data.root).name}"
    dataset = Dataset(name=name, digest=digest, source_type=source._get_source_type(), source=source.to_json(),
                      profile=json.dumps(profile))
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "train/val/test")])


def _under(source: str, roots: tuple[str, ...]) -> str:
    """A file's path under the dataset's root (as given, or resolved), so the same data elsewhere has
    the same digest."""
    for root in roots:
        if source.startswith(root.rstrip(os.sep) + os.sep):
            return source[len(root.rstrip(os.sep)) + 1:]
    return source


VIEW_KEY = "ablate"  # the key of the saved view ablate keeps on each study's experiment (see `study_view`)
VIEW_TAG = "mlflow.sharedViewState."  # + a key: the MLflow UI's saved (shared) run-table views
VIEW_NAME = "ablate: trials by arm"


def study_view(axes: list[str], metric: str, mode: str) -> dict[str, Any]:
    """The MLflow UI's runs table as a person wants a study: every trial grouped by its arm, each group
    showing its seeds' mean, sorted by the study's metric; the axes, the ranking metric, the test scores
    and the costs as columns; the parent run (the study's outcome) in the group of runs without an arm.

    The state's keys are MLflow 3.17.2's UI (read from its bundle, mlflow/server/js/build): the search
    facets `searchFilter`, `orderByKey` and `orderByAsc`; the table's `selectedColumns` (canonical keys,
    "params.`name`"), `columnOrder` and `columnWidths` (by the grid's column ids); `groupBy`
    ({aggregateFunction: min, max or average; groupByKeys: [{mode: param, tag or dataset; groupByData}]});
    `groupsExpanded` (group id -> open: groups start open, except the group of runs without the key,
    id "param.arm", which is opened here, as it holds the parent); and `useGroupedValuesInCharts`."""
    def column(kind: str, name: str) -> str:
        return f"{kind}.`{name}`"

    # The trials' ranking metric beside the parent's outcome (its row is the group of runs without an arm),
    # then the trials' test scores and costs; the parent's other outcome metrics are on its own page.
    metrics = [best(metric), "best.mean", "best.low", "best.high", TEST_MACRO_F1, TEST_ACCURACY, PARAMS_TOTAL,
               MACS, LATENCY_MS]
    # No seed column: a run's name has its seed, and a group row would show the seeds' mean.
    columns = [*(column("params", a) for a in axes if a != "arm"), *(column("metrics", m) for m in metrics),
               column("tags", Tag.BEST), column("attributes", "Dataset")]
    name = column("attributes", "Run Name")
    return {"searchFilter": "", "orderByKey": column("metrics", best(metric)), "orderByAsc": mode == "min",
            "selectedColumns": columns,
            # The grid's own column ids, in the order shown ("0": the checkbox, "runDateAndNestInfo": Created);
            # unlisted, a section's columns come in alphabetical order.
            "columnOrder": ["0", name, *columns, "runDateAndNestInfo", "duration"],
            "columnWidths": {name: 270, column("attributes", "Dataset"): 260,
                             **{column("metrics", m): 110 for m in metrics}},
            "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "param", "groupByData": "arm"}]},
            "groupsExpanded": {"param.arm": True}, "useGroupedValuesInCharts": True, "hideEmptyCharts": True}


def _save_view(client: MlflowClient, experiment_id: str, view: Mapping[str, Any]) -> None:
    """Keep `view` as the experiment's saved view VIEW_KEY, in the envelope MLflow 3.17's UI writes
    ({name, createdAt, updatedAt, state}: a JSON string), so that `study_link` opens it and the UI lists it."""
    now = _now_ms()
    client.set_experiment_tag(experiment_id, VIEW_TAG + VIEW_KEY, json.dumps(
        {"name": VIEW_NAME, "createdAt": now, "updatedAt": now, "state": json.dumps(view)}))


def ui_address(uri: str, *, host: str = "127.0.0.1", port: int = 5000) -> str:
    """Where the MLflow UI of this store is: the server itself, or `ablate ui`'s address for a local store."""
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"


def study_link(address: str, experiment_id: str) -> str:
    """A link that opens a study in the MLflow UI at `address` as `study_view` describes: the model-training
    view (`workflowType=machine_learning`; the UI's own default is its GenAI view) of the study's runs
    tab, with ablate's saved view (`viewStateShareKey`). Read from MLflow 3.17.2's UI, whose router is a
    hash router and which keeps the share key only on the runs tab's own route."""
    return (f"{address}/#/experiments/{experiment_id}/runs"
            f"?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}")


def study_links(uri: str, address: str) -> dict[str, str]:
    """Each study of a store (an experiment with ablate's saved view) -> its `study_link`; none if the
    local store does not exist yet (it is not created here)."""
    from mlflow.exceptions import MlflowException

    try:
        check_store(uri, writing=False)  # a server that does not answer is not waited for (MLflow: minutes)
        experiments = _reading(uri).search_experiments(order_by=["last_update_time DESC"])
    except (StoreUnusable, StoreNotFound, MlflowException, OSError):
        return {}
    return {e.name: study_link(address, e.experiment_id) for e in experiments if VIEW_TAG + VIEW_KEY in e.tags}


def _outcome(client: MlflowClient, experiment_id: str, parent_run_id: str, metric: str,
             mode: str) -> tuple[dict[str, float], dict[str, str]]:
    """A study's outcome as parent metrics and tags: the best arm by the mean over its finished seeds
    of `best(metric)`, with its 95% t-interval (bounds only from two seeds on); the seeds run, the
    failed trials, and the trials' hours (the sum of their runs' durations)."""
    from .analysis import mean_ci

    runs = client.search_runs([experiment_id], filter_string=f"tags.`{Tag.PARENT}` = '{parent_run_id}'",
                              max_results=50_000)
    records = [TrialRecord.of(r) for r in runs]
    finished = [r for r in records if r.outcome == Outcome.FINISHED and best(metric) in r.metrics]
    by_arm: dict[str, list[float]] = {}
    for r in finished:
        if r.metrics[best(metric)] == r.metrics[best(metric)]:  # not nan
            by_arm.setdefault(r.params.get("arm", ""), []).append(r.metrics[best(metric)])
    hours = sum((r.info.end_time - r.info.start_time) for r in runs if r.info.end_time and r.info.start_time) / 3.6e6
    metrics = {"seeds_run": len({r.params.get("seed") for r in finished}), "trial_hours": hours,
               "trials_failed": sum(r.outcome == Outcome.FAILED for r in records)}
    tags: dict[str, str] = {}
    if by_arm:
        intervals = {arm: mean_ci(values) for arm, values in by_arm.items()}
        arm = (max if mode == "max" else min)(intervals, key=lambda a: intervals[a].mean)
        found = intervals[arm]
        metrics |= {"best.mean": found.mean, "best.n": found.n}
        if found.low == found.low:  # two seeds or more
            metrics |= {"best.low": found.low, "best.high": found.high}
        tags[Tag.BEST] = arm
    return metrics, tags


def _latest_parent(client: MlflowClient, experiment_id: str):
    """The study's most recent parent run, or None."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{Tag.KIND}` = '{Kind.STUDY}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def open_study(uri: str, name: str, *, params: Mapping[str, Any], spec_yaml: str,
               description: str | None = None) -> tuple[str, TrackedRun]:
    """The study's experiment and parent run: the latest one if the study ran before (so a re-run
    adds to it), else new ones. Returns (experiment_id, parent run), the run marked RUNNING. The run
    gets `params`, where its code came from and what ran it (`study_provenance`: a re-run says its
    own), and `description` as its note and the experiment's; the experiment opens in the MLflow UI's
    model-training view, not its GenAI one."""
    client = _writing(uri)
    experiment_id = _experiment(client, uri, name)
    earlier = _latest_parent(client, experiment_id)
    if earlier:
        parent = TrackedRun(client, earlier.info.run_id)
        client.update_run(parent.run_id, status=Status.RUNNING)
        # MLflow params never change; a re-run with more seeds or arms keeps the first values.
        params = {k: v for k, v in params.items() if k not in earlier.data.params}
    else:
        run = client.create_run(experiment_id, run_name=name, tags={Tag.KIND: Kind.STUDY})
        parent = TrackedRun(client, run.info.run_id)
    parent.log(params=params, tags=study_provenance() | ({Tag.NOTE: description} if description else {}))
    parent.log_text(spec_yaml, SPEC_ARTIFACT)
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, MACHINE_LEARNING)
    if description:
        client.set_experiment_tag(experiment_id, Tag.NOTE, description)
    return experiment_id, parent


def reopen_study(uri: str, parent_run_id: str) -> TrackedRun:
    """A study's parent run, marked RUNNING again (to resume it)."""
    client = MlflowClient(uri)
    client.update_run(parent_run_id, status=Status.RUNNING)
    return TrackedRun(client, parent_run_id)


def describe_study(parent: TrackedRun, *, axes: list[str], design: str, metric: str, mode: str, storage: str,
                   skipped: list[dict[str, str]], experiment_id: str | None = None, data: Iterable[Any] = ()) -> None:
    """Tag a study's parent run with what its report reads back, and list the inputs its data skipped;
    log each distinct dataset of `data` (DataSpecs) as its input (`dataset_input`); and keep the
    experiment's saved view of the study (`study_view`), which `study_link` opens."""
    if skipped:
        parent.log_text(json.dumps(skipped, indent=1), SKIPPED_ARTIFACT)
    parent.set_tags({Tag.DATA_SKIPPED: len(skipped), Tag.AXES: ",".join(axes), Tag.DESIGN: design,
                     Tag.METRIC: metric, Tag.MODE: mode, Tag.STORAGE: storage})
    distinct = {d.model_dump_json(): d for d in data}.values()
    if distinct:
        parent.client.log_inputs(parent.run_id, datasets=[dataset_input(d) for d in distinct])
    if experiment_id is not None:
        _save_view(parent.client, experiment_id, study_view(axes, metric, mode))


RACE_ARTIFACT = "race.json"  # the parent run's: each arm's decision, as the race reached it


def log_race(parent: TrackedRun, baseline: str, decisions: Mapping[str, Any]) -> None:
    """A race's decisions on its parent run: tags the UI lists (the arms in each state) and race.json."""
    import dataclasses
    import json
    import math

    by_state: dict[str, list[str]] = {}
    for arm, decision in decisions.items():
        by_state.setdefault(decision.state, []).append(arm)
    from .racing import BETTER, EQUIVALENT, WORSE

    decided = sum(d.state in (BETTER, WORSE, EQUIVALENT) for d in decisions.values())
    parent.set_tags({Tag.RACE_BASELINE: baseline, Tag.RACE_DECIDED: f"{decided} of {len(decisions)} arms",
                     **{f"ablate.race.{state.replace(' ', '_')}": "; ".join(arms) for state, arms in by_state.items()}})
    rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in dataclasses.asdict(d).items()} for d in decisions.values()]
    parent.log_text(json.dumps({"baseline": baseline, "decisions": rows}, indent=1), RACE_ARTIFACT)


def finish_study(parent: TrackedRun, *, failed: int, diverged: int, unfinished: int, experiment_id: str | None = None,
                 metric: str = DEFAULT_METRIC, mode: str = "max") -> None:
    """Count the trials that did not finish on the parent run, and (given the `experiment_id`) record the
    study's outcome there (`_outcome`: the best arm by `metric` in `mode`, its mean and interval, the
    seeds run, the failed trials, the trial-hours); then end it: KILLED while any trial is left to run
    (a resume continues it), FAILED if any failed or diverged."""
    metrics, tags = ({}, {}) if experiment_id is None else _outcome(parent.client, experiment_id, parent.run_id,
                                                                    metric, mode)
    parent.log(tags={Tag.TRIALS_FAILED: failed, Tag.TRIALS_DIVERGED: diverged, Tag.TRIALS_UNFINISHED: unfinished,
                     **tags}, metrics=metrics)
    parent.finish(Status.KILLED if unfinished else Status.FAILED if failed or diverged else Status.FINISHED)


def find_parent(uri: str, experiment_id: str, parent_run_id: str) -> None:
    """Check that the store holds a study's parent run, without creating anything if it does not."""
    from mlflow.exceptions import MlflowException

    try:
        run = _reading(uri).get_run(parent_run_id)
    except MlflowException:
        run = None
    if run is None or run.info.experiment_id != experiment_id or run.data.tags.get(Tag.KIND) != Kind.STUDY:
        raise StudyNotFound(f"{uri} has no study run {parent_run_id} (the parent run the study's folder names); "
                            "expected the store the study ran against: pass it with --tracking-uri")


def finished_trials(uri: str, experiment_id: str, parent_run_id: str) -> set[str]:
    """Ids of the study's trials that already have a FINISHED run."""
    client = MlflowClient(uri)
    runs = client.search_runs([experiment_id], max_results=50_000, filter_string=(
        f"tags.`{Tag.PARENT}` = '{parent_run_id}' and attributes.status = '{Status.FINISHED}'"))
    return {r.data.tags[Tag.TRIAL_ID] for r in runs if Tag.TRIAL_ID in r.data.tags}


@dataclass
class TrialRun:
    run: TrackedRun
    logged_epochs: set[int]  # steps already logged by an earlier attempt of this trial
    attempts: int  # how many times this trial started before
    lost: bool = False  # the earlier attempt died without closing its run: its worker or node was lost
    finished: bool = False  # the trial finished in an earlier attempt; nothing is left to do
    params: Mapping[str, Any] = field(default_factory=dict)  # a new run's, logged with its start
    uri: str = ""  # the store's, for the system metrics' own client; none: no system metrics
    _monitor: Any = field(default=None, repr=False)  # sampling the system metrics, from `start`

    def start(self, *, node_id: str, pid: int, device: str, gpu_ids: list, resumed_from_epoch: int,
              costs: Mapping[str, float] = {}) -> None:
        """Record where this attempt runs (node, device, and the machine's host, CPU and GPU models), which
        attempt it is, and that the one before was lost; and a new run's params and its model's `costs`,
        all in one write. Then sample the system metrics (`watch_system`) until `stop_system_metrics`."""
        tags = {Tag.NODE_ID: node_id, Tag.PID: pid, Tag.DEVICE: device, Tag.GPU_IDS: ",".join(map(str, gpu_ids)),
                Tag.ATTEMPTS: self.attempts + 1, Tag.RESUMED_FROM_EPOCH: resumed_from_epoch} | machine_tags(device)
        if self.lost:
            tags[Tag.LAST_FAILURE] = Failure.LOST_WORKER
        self.run.log(params=self.params, tags=tags, metrics=costs)
        if self.uri:
            self._monitor = watch_system(self.uri, self.run.run_id, resume=bool(self.attempts))

    def stop_system_metrics(self) -> None:
        """Stop sampling, at once and without a write (the samples are written as they are taken)."""
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None

    def upload_model(self, data: bytes) -> None:
        """The trained weights, as MODEL_FILE; the epoch's write then tags the run `ModelKept.KEPT`."""
        self.run.log_bytes(data, MODEL_FILE)

    def log_epoch(self, metrics: Mapping[str, float], epoch: int, tags: Mapping[str, Any] = {}) -> None:
        """One epoch's metrics, and `tags` in the same write (the last epoch's say what became of the weights)."""
        if epoch not in self.logged_epochs:  # an earlier attempt may have logged it before dying
            self.run.log(metrics=metrics, tags=tags, step=epoch)
        elif tags:
            self.run.set_tags(tags)

    def fail(self, failure: Failure, error: str) -> None:
        """End the run as failed, saying how: KILLED if the study was interrupted, else FAILED."""
        self.stop_system_metrics()
        self.run.set_tags({Tag.FAILURE: failure, Tag.ERROR: error[:_TAG_LIMIT]})
        self.run.finish(Status.KILLED if failure == Failure.INTERRUPTED else Status.FAILED)

    def finish(self) -> None:
        self.stop_system_metrics()
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
               params: Mapping[str, Any]) -> TrialRun:
    """The trial's child run under the study's parent: the one an earlier attempt left unfinished
    (a retry continues it, so each trial has one run and each epoch is logged once), else a new one."""
    client = MlflowClient(uri)
    earlier = _trial_runs(client, experiment_id, parent_run_id, trial_id)
    done = [r for r in earlier if r.info.status == Status.FINISHED]
    if done:  # Tune restarted a trial that had finished before its driver could record it
        return TrialRun(TrackedRun(client, done[0].info.run_id), set(), 1, finished=True)
    if not earlier:
        run = client.create_run(experiment_id, run_name=name,
                                tags={Tag.PARENT: parent_run_id, Tag.KIND: Kind.TRIAL, Tag.TRIAL_ID: trial_id})
        return TrialRun(TrackedRun(client, run.info.run_id), set(), 0, params=params, uri=uri)
    run = earlier[0]
    lost = run.info.status == Status.RUNNING
    client.update_run(run.info.run_id, status=Status.RUNNING)
    _clear_failure(client, run)  # the earlier attempt's; this one may succeed
    logged = {m.step for m in client.get_metric_history(run.info.run_id, TRAIN_LOSS)}
    attempts = int(run.data.tags.get(Tag.ATTEMPTS, "1"))
    # An attempt that died between creating the run and its first write left it without params.
    return TrialRun(TrackedRun(client, run.info.run_id), logged, attempts, lost,
                    params={} if run.data.params else params, uri=uri)


def mark_stopped_early(uri: str, experiment_id: str, parent_run_id: str, trial_id: str, *, epoch: int) -> None:
    """Record that the scheduler stopped a trial after `epoch`: a finished run, tagged as stopped early."""
    client = MlflowClient(uri)
    for run in _trial_runs(client, experiment_id, parent_run_id, trial_id):
        client.set_tag(run.info.run_id, Tag.STOPPED_EARLY, "true")
        client.set_tag(run.info.run_id, Tag.STOPPED_AT_EPOCH, str(epoch))
        _clear_failure(client, run)
        client.set_terminated(run.info.run_id, Status.FINISHED)


def _with_weights(parent_run_id: str, arm: str | None = None) -> str:
    """The filter for a study's runs that keep their weights (of one arm, if given)."""
    where = f"tags.`{Tag.PARENT}` = '{parent_run_id}' and tags.`{Tag.MODEL}` = '{ModelKept.KEPT}'"
    return where if arm is None else f"{where} and params.arm = '{arm}'"


def kept_models(uri: str, experiment_id: str, parent_run_id: str, arm: str, metric: str) -> list[tuple[str, float]]:
    """The runs of one arm of a study that keep their weights, as (run id, `best(metric)`)."""
    runs = MlflowClient(uri).search_runs([experiment_id], filter_string=_with_weights(parent_run_id, arm))
    return [(r.info.run_id, r.data.metrics.get(best(metric), float("nan"))) for r in runs]


def drop_superseded(uri: str, experiment_id: str, parent_run_id: str, *, keep: int | None, metric: str,
                    mode: str) -> int:
    """Remove the weights of every run beyond the `keep` best of its arm (by `best(metric)`, in `mode`)
    that kept them, and say so on the run; returns how many were removed. `keep=None` keeps all."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    if keep is None:
        return 0
    client = MlflowClient(uri)
    runs = client.search_runs([experiment_id], max_results=50_000, filter_string=_with_weights(parent_run_id))
    by_arm: dict[str, list] = {}
    for run in runs:
        by_arm.setdefault(run.data.params.get("arm", ""), []).append(run)
    dropped = 0
    for arm_runs in by_arm.values():
        arm_runs.sort(key=lambda r: _rank(r.data.metrics.get(best(metric)), mode))
        for run in arm_runs[keep:]:
            get_artifact_repository(run.info.artifact_uri, tracking_uri=uri).delete_artifacts(MODEL_FILE)
            client.set_tag(run.info.run_id, Tag.MODEL, ModelKept.SUPERSEDED)
            dropped += 1
    return dropped


def _rank(value: float | None, mode: str) -> float:
    """A sort key that puts the best value first and a missing or nan one last."""
    if value is None or value != value:
        return float("inf")
    return -value if mode == "max" else value


def models_of_arm(uri: str, run_id: str) -> list[TrialRecord]:
    """The runs of the same study and arm as run `run_id` that keep their weights."""
    client = _reading(uri)
    run = client.get_run(run_id)
    parent, arm = run.data.tags.get(Tag.PARENT), run.data.params.get("arm")
    if parent is None or arm is None:
        return []
    return [TrialRecord.of(r) for r in client.search_runs([run.info.experiment_id],
                                                          filter_string=_with_weights(parent, arm))]


def log_latencies(uri: str, latencies: Mapping[str, Mapping[str, float]]) -> None:
    """Each run's model latency metrics, run id -> metrics."""
    client = MlflowClient(uri)
    for run_id, metrics in latencies.items():
        TrackedRun(client, run_id).log_metrics(metrics)


def close_open_runs(uri: str, experiment_id: str, parent_run_id: str, status: str = Status.KILLED) -> None:
    """Mark the study's child runs that are still RUNNING (their trial was killed) as `status`."""
    client = MlflowClient(uri)
    for run in client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{Tag.PARENT}` = '{parent_run_id}' and attributes.status = '{Status.RUNNING}'",
    ):
        client.set_terminated(run.info.run_id, status)


@dataclass(frozen=True)
class TrialRecord:
    run_id: str
    name: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]  # the latest value of each metric
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, run) -> TrialRecord:
        return cls(run.info.run_id, run.info.run_name, run.info.status, dict(run.data.params),
                   dict(run.data.metrics), dict(run.data.tags))

    @property
    def trial_id(self) -> str | None:
        return self.tags.get(Tag.TRIAL_ID)

    @property
    def failure(self) -> str | None:
        """The `Failure` the run ended with, if it failed."""
        return self.tags.get(Tag.FAILURE)

    @property
    def outcome(self) -> Outcome:
        if self.tags.get(Tag.STOPPED_EARLY) == "true":
            return Outcome.STOPPED_EARLY
        if self.status == Status.FINISHED and TEST_ACCURACY in self.metrics:
            return Outcome.FINISHED
        if self.failure == Failure.DIVERGENCE:
            return Outcome.DIVERGED
        if self.status == Status.FAILED:
            return Outcome.FAILED
        return Outcome.UNFINISHED

    @property
    def ended(self) -> bool:
        """Whether the trial has nothing left to do: it finished, or it diverged (which a retry repeats)."""
        return self.status == Status.FINISHED or self.failure == Failure.DIVERGENCE


def study_trials(uri: str, experiment_id: str, parent_run_id: str) -> list[TrialRecord]:
    """Every child run of a study's parent run, as logged."""
    client = MlflowClient(uri)
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{Tag.PARENT}` = '{parent_run_id}'",
                              max_results=50_000)
    return [TrialRecord.of(r) for r in runs]


class StoreNotFound(LookupError):
    """A local store that does not exist: reading it must not create an empty one."""


def _reading(uri: str) -> MlflowClient:
    """A client for a store that must already exist (a report or an explanation reads, never creates)."""
    db = _sqlite_path(uri)
    if db is not None and not db.exists():
        raise StoreNotFound(f"there is no MLflow store at {db} (run a study there first, or pass --tracking-uri)")
    return MlflowClient(uri)


class StudyNotFound(LookupError):
    """No study of that name in the store."""


@dataclass(frozen=True)
class StudyRecord:
    """A study's parent run as logged: its params (the spec's keys) and tags (axes, design, metric)."""

    experiment_id: str
    run: TrackedRun
    params: dict[str, str]
    tags: dict[str, str]

    @property
    def axes(self) -> list[str]:
        return [a for a in self.tags.get(Tag.AXES, "").split(",") if a]

    @property
    def metric(self) -> str:
        return self.tags.get(Tag.METRIC, DEFAULT_METRIC)


def find_study(uri: str, name: str) -> StudyRecord:
    """The study called `name`: its experiment and latest parent run."""
    client = _reading(uri)
    experiment = client.get_experiment_by_name(name)
    parent = None if experiment is None else _latest_parent(client, experiment.experiment_id)
    if parent is None:
        known = sorted(e.name for e in client.search_experiments() if e.name != "Default")
        raise StudyNotFound(f"{uri} has no study named {name!r}"
                            + (f" (it has: {', '.join(known)})" if known else " (it has none)"))
    return StudyRecord(parent.info.experiment_id, TrackedRun(client, parent.info.run_id), dict(parent.data.params),
                       dict(parent.data.tags))


class RunNotFound(LookupError):
    """No run with that id, or it lacks the artifact asked for."""


def trial_record(uri: str, run_id: str) -> TrialRecord:
    """One run, as logged."""
    from mlflow.exceptions import MlflowException

    try:
        return TrialRecord.of(_reading(uri).get_run(run_id))
    except MlflowException:
        raise RunNotFound(f"{uri} has no run {run_id!r}") from None


def read_artifact(uri: str, run_id: str, path: str) -> bytes:
    """The bytes of one artifact of a run (downloaded, if the store is remote)."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as folder:
        try:
            local = MlflowClient(uri).download_artifacts(run_id, path, folder)
        except (MlflowException, OSError):
            raise RunNotFound(f"run {run_id} has no artifact {path}") from None
        return Path(local).read_bytes()


def metric_history(uri: str, run_id: str, key: str) -> dict[int, float]:
    """`key` of one run, step -> value."""
    return {m.step: m.value for m in MlflowClient(uri).get_metric_history(run_id, key)}
