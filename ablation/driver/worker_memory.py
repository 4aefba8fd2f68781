"""A trial worker's memory: the allocator's policy during a trial, what the trial freed given back at its end,
and its peak measured for the trial's run (`worker_peak_rss_mb`). What a worker imports is the other half
(`ablation.optim`).

On Linux, the private Ray that `cluster.connect` starts runs its workers on jemalloc, the copy Ray ships
(`ray/core/libjemalloc.so`) and already runs its own processes on. Under glibc's malloc a reused worker grew
from ~950 MB at its first tiny trial to 1,040-1,090 MB (glibc raises its mmap threshold as large blocks are
freed, so later trials' tensors stay in the heap); under jemalloc it holds ~950-1,000 MB, and a quickstart
epoch took 5-8% less time (docs/benchmarks.md). Anywhere else (a cluster started without
`RAY_LD_PRELOAD_ON_WORKERS=1`, macOS) the worker keeps its own malloc, and glibc's is trimmed instead."""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys
from functools import lru_cache

_ALL_ARENAS = 4096  # jemalloc's MALLCTL_ARENAS_ALL


@lru_cache(maxsize=1)
def _mallctl():
    """jemalloc's control function if this process allocates with it (preloaded), else None."""
    if not sys.platform.startswith("linux"):
        return None
    mallctl = getattr(ctypes.CDLL(None), "mallctl", None)
    if mallctl is not None:
        mallctl.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return mallctl


def keep_freed_memory() -> None:
    """Under jemalloc, keep what the trial frees for its own reuse until `release_freed_memory`, instead of
    returning it to the system after 10 s, or at once for blocks of 8 MB and more. Every step frees and
    allocates the same large tensors: returned pages are faulted and zeroed anew, which made a quickstart
    epoch 15% slower than under glibc (13.3 s against 11.7 s, measured), where keeping them made it 5-8%
    quicker. Applies to the arenas that exist (a reused worker's) and to those made later (each new thread's)."""
    mallctl = _mallctl()
    if mallctl is None:
        return
    never = ctypes.c_ssize_t(-1)
    count, size = ctypes.c_uint(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_uint))
    mallctl(b"arenas.narenas", ctypes.byref(count), ctypes.byref(size), None, 0)
    names = [b"arenas"] + [b"arena.%d" % i for i in range(count.value + 1)]  # + 1: the arena for large blocks
    for name in names:
        for kind in (b"dirty", b"muzzy"):
            # An arena not yet made answers EFAULT: it will take the default set on "arenas".
            mallctl(name + b".%s_decay_ms" % kind, None, None, ctypes.byref(never), ctypes.sizeof(never))


def release_freed_memory() -> None:
    """Give what the trial freed back to the system, so a reused worker starts its next trial as small as
    its first. Under glibc: Tune runs each trial of a reused worker in a new thread, glibc gives new threads
    malloc arenas of their own (up to 8 per core), and each keeps what was freed in it; a tiny trial's
    worker grew from 1.2 GB to 2.7 GB over 16 trials before this trim (measured). Either costs milliseconds."""
    mallctl = _mallctl()
    if mallctl is not None:
        mallctl(b"arena.%d.purge" % _ALL_ARENAS, None, None, None, 0)
        return
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
