"""The Ray a study runs on: a cluster it joins, or a private one on this machine that listens on
loopback only; and whether a trial fits in it."""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

import ray
import torch

from ablation.core import StudySpec

# The Ray versions whose private clusters switch `_loopback_only` turns off is known to be there and
# read (test_loopback.py checks it): [lowest, first untried). Widen it only after that test passes.
LOOPBACK_RAY = ((2, 60), (3, 0))
_SWITCH = ("ENABLE_RAY_CLUSTER", "ENABLE_RAY_CLUSTERS_ENV_VAR")


class ResourceError(ValueError):
    """The study asks for more than the Ray cluster has, or cannot run where it is asked to; nothing was started."""


class StudyStopped(RuntimeError):
    """Ray or Tune failed while running the study, not one of its trials: the study stopped, the trials
    that finished are kept, and `ablate resume` continues it."""


RAY_ERRORS = "ablation.driver.ray"  # the logger the raylet's error messages go to (`--verbose` shows them)


def package_folder() -> Path:
    """The folder of the `ablation` package, which a cluster job ships to its workers (this file's is
    `ablation/driver`: shipping that one had left workers without ablate)."""
    return Path(__file__).resolve().parents[1]


def connect(address: str | None) -> None:
    """Join the cluster at `address`, or start a private Ray on this machine, on loopback only."""
    if ray.is_initialized():  # a caller (a notebook, the tests) already chose the cluster
        return
    _raylet_errors_to_log()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": True}
    if address:
        # The package travels with the job, so workers need only its dependencies (the image), not ablate.
        # A cluster on this machine's loopback (`ray start --head --node-ip-address 127.0.0.1`) must be
        # joined from loopback too, or Ray looks for it at the machine's outward address.
        local = address.split(":")[0] in ("127.0.0.1", "localhost")
        ray.init(address=address, runtime_env={"py_modules": [str(package_folder())]},
                 **({"_node_ip_address": "127.0.0.1"} if local else {}), **quiet)
        _sigterm_as_ctrl_c()
        return
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    # Ray runs its own processes on the jemalloc it ships; its trial workers too, so (`worker_memory`).
    os.environ.setdefault("RAY_LD_PRELOAD_ON_WORKERS", "1")
    with _loopback_only():
        ray.init(
            # "local": a new private Ray even when `ray start` left one running on this machine, which
            # `ray.init()` would otherwise join (and refuse, since it is given CPUs to start with).
            address="local",
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            # Ray's defaults assume a large machine; trials hold their data in process memory, not here.
            object_store_memory=min(2 * 2**30, memory // 10),
            **quiet,
        )
    _sigterm_as_ctrl_c()


def _sigterm_as_ctrl_c() -> None:
    """SIGTERM (what a scheduler, `kill` or `docker stop` sends) stops a study as Ctrl-C does: trials
    stopped, the parent run marked KILLED, the resume command printed, exit 130. `ray.init` sets its own
    handler, which exited mid-step (rc 134, a stack dump, the parent left RUNNING)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))


def _ray_constants():
    """Ray's private constants, once checked to hold the clusters switch where `_loopback_only` expects it:
    on a Ray it was not tried with, or without the switch, Ray's servers would listen on every interface."""
    from ray._private import ray_constants

    version = tuple(int(part) for part in ray.__version__.split(".")[:2])
    (low, high), missing = LOOPBACK_RAY, [name for name in _SWITCH if not hasattr(ray_constants, name)]
    if missing or not low <= version < high:
        found = f"it has no ray._private.ray_constants.{missing[0]}" if missing else "it was not tried with it"
        raise RuntimeError(
            f"ray {ray.__version__}: ablate keeps its private Ray on loopback by a private switch of Ray "
            f"{low[0]}.{low[1]} up to {high[0]}.{high[1]} (exclusive), and {found}; install a Ray in that range, "
            "or start Ray yourself and pass --address")
    return ray_constants


@contextmanager
def _loopback_only():
    """Keep a private Ray on 127.0.0.1. Given that address, Ray still swaps in the machine's outward one
    and its servers then listen on every interface, unless its clusters switch is off: an environment
    variable its processes read at start-up, and a constant this process read when it imported Ray."""
    ray_constants = _ray_constants()
    saved = os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:  # a later --address in this process must find the outward address again
        if saved[0] is None:
            del os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR]
        else:
            os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = saved[0]
        ray_constants.ENABLE_RAY_CLUSTER = saved[1]


def _raylet_errors_to_log() -> None:
    """Ray prints the raylet's error messages (a worker that died, with a paragraph of possible causes)
    straight to the driver's stdout, whatever `log_to_driver` says, beside the live view. The study says
    each trial's failure in one line and records it on the trial's run, so they go to a logger instead."""
    import ray._private.worker as ray_worker

    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_ablate", False):
        return

    def printed(data, *args, **kwargs):
        if data.get("pid") == "raylet":
            for line in data.get("lines", []):
                logging.getLogger(RAY_ERRORS).warning("%s", line)
            return
        original(data, *args, **kwargs)

    printed._ablate = True
    ray_worker.print_to_stdstream = printed


def check_resources(spec: StudySpec, *, memory_mb: float = 0.0) -> None:
    """Refuse a trial that no node can hold: its CPUs, GPUs, or the memory it asks for (`memory_mb`)."""
    have = ray.cluster_resources()
    for key, name in (("cpu", "CPU"), ("gpu", "GPU")):
        wanted, available = getattr(spec.resources, key), have.get(name, 0.0)
        if wanted > available:
            raise ResourceError(
                f"resources.{key}: a trial asks for {wanted} but the Ray cluster has {available:g} {name}s"
            )
    if memory_mb:  # Ray would otherwise leave the trials pending for ever, waiting for a node that big
        largest = max((n["Resources"].get("memory", 0) for n in ray.nodes() if n.get("Alive")), default=0) / 2**20
        if memory_mb > largest:
            raise ResourceError(f"a trial needs about {memory_mb / 1024:.1f} GB of memory, and the largest node of "
                                f"the Ray cluster offers {largest / 1024:.1f} GB: lower train.batch_size or "
                                "data.image_size, or add a larger node")


def check_local_resources(spec: StudySpec) -> None:
    """What a private Ray on this machine will have, known before starting it; a Ray this process
    already joined (a notebook's, the tests' fake GPUs) is checked once connected instead."""
    if ray.is_initialized():
        return
    have = {"cpu": os.cpu_count() or 1, "gpu": torch.cuda.device_count() if torch.cuda.is_available() else 0}
    for key, name in (("cpu", "CPU"), ("gpu", "GPU")):
        wanted = getattr(spec.resources, key)
        if wanted > have[key]:
            raise ResourceError(f"resources.{key}: a trial asks for {wanted} but this machine has {have[key]:g} "
                                f"{name}s (pass --address to run on a Ray cluster)")


# Tune's own console output would fight the live view: the legacy reporter at verbose=0 is silent.
# Checkpoint-sync warnings fire on every small fast trial and say nothing actionable here.
_TUNE_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
             # Tune's per-result CSV, JSON and TensorBoard files: every result is in MLflow, and writing
             # them (then reading a thousand back at the end) was the driver's main cost per result.
             "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}


def quiet_tune() -> None:
    for key, value in _TUNE_ENV.items():
        os.environ.setdefault(key, value)
    # After an interruption Tune warns once per trial that never started; the summary says it once.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
