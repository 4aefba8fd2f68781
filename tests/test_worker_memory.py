"""A trial worker's allocator: the private Ray's workers allocate with the jemalloc Ray ships, keep what a
trial frees while it runs (its next step needs the same blocks) and give it back when the trial ends."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from ablation.driver import worker_memory

JEMALLOC = Path(ray.__file__).parent / "core" / "libjemalloc.so"
linux_with_jemalloc = pytest.mark.skipif(not JEMALLOC.exists(), reason="Ray ships jemalloc on Linux only")

# Frees 256 MB in blocks of 32 MB, which jemalloc would hand back at once (blocks of 8 MB and more go to an
# arena that returns them eagerly), and prints the resident MB above the start: after the free, after release.
FREE_AND_RELEASE = """
from ablation.driver import worker_memory as wm
def resident(): return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
if {keep}:
    wm.keep_freed_memory()
start = resident()
blocks = [b"x" * (32 * 2**20) for _ in range(8)]  # written, so resident
del blocks
freed = resident() - start
wm.release_freed_memory()
print(wm._mallctl() is not None, round(freed), round(resident() - start))
"""


def run(keep: bool, preload: Path | None) -> tuple[str, int, int]:
    env = os.environ | ({"LD_PRELOAD": str(preload)} if preload else {})
    out = subprocess.run([sys.executable, "-c", FREE_AND_RELEASE.format(keep=keep)], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0], int(out[1]), int(out[2])


@linux_with_jemalloc
def test_under_jemalloc_a_trial_keeps_what_it_frees_until_it_ends():
    jemalloc, freed, released = run(keep=True, preload=JEMALLOC)
    assert jemalloc == "True"
    assert freed > 200  # kept for the trial's next step, not faulted in and zeroed anew
    assert released < 50  # given back when the trial ends


@linux_with_jemalloc
def test_without_keeping_jemalloc_hands_large_blocks_back_at_once():
    """What keeping changes: this eager return made a quickstart epoch 15% slower (docs/benchmarks.md)."""
    assert run(keep=False, preload=JEMALLOC)[1] < 50


def test_under_the_system_malloc_there_is_no_jemalloc_to_set_and_release_trims():
    jemalloc, _, released = run(keep=True, preload=None)
    assert jemalloc == "False" and released < 50


@pytest.mark.slow
@linux_with_jemalloc
def test_the_workers_of_the_private_ray_allocate_with_jemalloc(own_ray):
    script = ("import ray\nfrom ablation.driver import cluster, worker_memory\ncluster.connect(None)\n"
              "print(ray.get(ray.remote(lambda: worker_memory._mallctl() is not None).remote()))\nray.shutdown()")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split()[-1] == "True"
    assert worker_memory._mallctl() is None  # the driver (this process) keeps its own malloc
