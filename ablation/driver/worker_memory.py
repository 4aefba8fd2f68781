"""A trial worker's memory: what it frees given back between trials, and its peak measured for the trial's
run (`worker_peak_rss_mb`). What a worker imports is the other half (`ablation.optim`)."""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys


def release_freed_memory() -> None:
    """Give what the trial freed back to the system. Tune runs each trial of a reused worker in a new
    thread, glibc gives new threads malloc arenas of their own (up to 8 per core), and each keeps what
    was freed in it: a tiny trial's worker grew from 1.2 GB to 2.7 GB over 16 trials (measured).
    Capping the arenas at one (MALLOC_ARENA_MAX=1) stopped the growth but made a quickstart trial 15%
    slower, its threads contending for the one; trimming after each trial costs milliseconds."""
    libc = ctypes.util.find_library("c")
    if not libc or not sys.platform.startswith("linux"):
        return
    try:
        trim = getattr(ctypes.CDLL(libc), "malloc_trim", None)  # glibc's; musl has none
    except OSError:
        return
    if trim is not None:
        trim(0)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (the kernel's high-water mark)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KB on Linux
