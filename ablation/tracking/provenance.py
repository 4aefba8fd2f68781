"""Where a study's code and runs came from, as tags: the git checkout, the versions of ablate and the
libraries that ran it, the command line, and the machine (host, CPU, GPU). Standard library only (and
torch, only when a trial already runs on a GPU): the caller passes in what it alone knows, the command
line and the spec file."""

from __future__ import annotations

import os
import platform
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from ablation.core.names import TAG_LIMIT, VERSION_TAG, Tag

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
def versions() -> dict[str, str]:
    """The installed versions of ablate and the libraries that run a study, and Python's, as tags."""
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


def command_line(argv: Sequence[str]) -> str:
    """The command that ran the study (`argv`, the program first), as typed (`ablate run ...`), without
    credentials."""
    program = Path(argv[0]).name if argv and argv[0] else "python"
    if program in ("ablate", "cli.py", "__main__.py"):
        program = "ablate"
    return _USERINFO.sub(r"\1", shlex.join([program, *argv[1:]]))[:TAG_LIMIT]


def ablate_version() -> str:
    """ablate's version, and the commit it ran from when it runs from a git checkout (an editable
    install, as in development), e.g. "0.1.0+g3bac13766d73.dirty"."""
    own = git_tags(Path(__file__).resolve().parent)
    found = versions().get(f"{VERSION_TAG}ablate", "")
    if Tag.GIT_COMMIT in own:
        found += f"+g{own[Tag.GIT_COMMIT][:12]}" + (".dirty" if own.get(Tag.GIT_DIRTY) == "true" else "")
    return found


def study_provenance(argv: Sequence[str] = (), spec: Path | None = None, folder: Path | None = None) -> dict[str, str]:
    """The parent run's provenance, in MLflow's tags where it has them: the spec file `spec` as the source
    (else the command line `argv`), the user, and the git checkout the spec is in (`folder`; default the
    spec's, else the working directory's); then the command line, the versions of ablate (with its own
    commit, if it runs from a checkout) and of the libraries that ran it, and the driver's host, CPU and GPU."""
    import getpass

    spec, command = (spec.resolve() if spec else None), command_line(argv)
    tags = {Tag.SOURCE_NAME: str(spec) if spec else command, Tag.SOURCE_TYPE: "LOCAL", Tag.COMMAND: command}
    try:
        tags[Tag.USER] = getpass.getuser()
    except (OSError, KeyError):  # a container's user with no name
        pass
    checkout = folder or (spec.parent if spec else Path.cwd())
    return tags | git_tags(checkout) | versions() | {f"{VERSION_TAG}ablate": ablate_version()} | {
        Tag.HOST: socket.gethostname(), Tag.CPU: cpu_model(), Tag.GPU: _gpu_models()}


def machine_tags(gpu: str = "", cpu_kernels: str = "") -> dict[str, str]:
    """A trial's own host, CPU and GPU and its library versions (a cluster's nodes may differ from the
    driver's), known without a write or a read: cached per process. `gpu`: the device's name if the trial
    runs on one; `cpu_kernels`: the instruction set torch's CPU kernels use (the trial asks torch for both;
    tracking imports no torch)."""
    tags = versions() | {Tag.HOST: socket.gethostname(), Tag.CPU: cpu_model()}
    if gpu:
        tags[Tag.GPU] = gpu
    if cpu_kernels:
        tags[Tag.CPU_KERNELS] = cpu_kernels
    return tags
