"""A trial worker's resident memory, estimated before it runs, so that `plan` and `run` can say when
the trials planned to run at once would not fit (Ray's memory monitor kills workers past 95% of the
node's memory) and a cluster can schedule trials by Ray's `memory` resource.

The estimate is host memory for training on a CPU, in three parts, from `benchmarks/memory.py`:
- the worker's floor: Python, torch, Ray, MLflow and a trial's machinery, with no model;
- the model's state: weights, gradients and Adam's two moments, 16 bytes a parameter;
- the activations autograd keeps: per image, the elements the network's convolutions put out for
  each input pixel (from the architecture's stages), times 16 bytes (about three float32 copies
  of each output: the convolution's, its BatchNorm's and its ReLU's).
A trial's measured peak (`worker_peak_rss_mb`, recorded every epoch) replaces it once there is one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ablation.core.catalog import ARCHITECTURES

# From benchmarks/memory.py (results/memory.md): set so that the estimate errs high rather than low.
WORKER_FLOOR_MB = 810.0
BYTES_PER_PARAMETER = 16  # float32 weights, gradients and Adam's two moments
BYTES_PER_ACTIVATION = 16
# How far the estimate is from measured peaks in benchmarks/memory.py, at most: said beside it.
ESTIMATE_ERROR = 0.25


def outputs_per_pixel(arch: str) -> float:
    """Elements a ResNet's convolutions put out per input pixel: the stem's (64 channels at a half, its
    max-pool's at a quarter), then each block's convolutions at their stage's width and scale."""
    a = ARCHITECTURES.get(arch)
    total = 64 / 4 + 64 / 16
    for i, blocks in enumerate(a.layers):
        planes, scale = 64 * 2**i, 1 / (4 * 2**i) ** 2
        per_block = 2 * planes if a.block == "basic" else planes + planes + a.expansion * planes
        total += blocks * per_block * scale
    return total


def trial_memory_mb(arch: str, params: int, image_size: int, batch_size: int) -> float:
    """A trial worker's peak resident memory in MB, estimated (see the module's note for how far to trust it)."""
    state = params * BYTES_PER_PARAMETER
    activations = batch_size * image_size**2 * outputs_per_pixel(arch) * BYTES_PER_ACTIVATION
    return WORKER_FLOOR_MB + (state + activations) / 2**20


SHARE = 0.8  # of the memory available: Ray's monitor kills workers at 95% of the node, and others need some


def available_mb() -> float:
    """Memory this machine has available now (Linux's MemAvailable), else its physical memory, in MB."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


@dataclass(frozen=True)
class MemoryFit:
    """Whether the trials that run at once fit in the memory available."""

    per_trial_mb: float
    measured: bool  # from trials' recorded peaks; else estimated
    at_once: int
    available_mb: float

    @property
    def fits_at_once(self) -> int:
        return int(SHARE * self.available_mb // self.per_trial_mb)

    @property
    def fits(self) -> bool:
        return self.at_once <= self.fits_at_once

    def describe(self, cpus: int, cpu_per_trial: float) -> str:
        """One line: what a trial needs and what all at once need; if too much, the concurrency that fits."""
        how = "the largest peak its trials recorded" if self.measured else \
            f"estimated, within about {ESTIMATE_ERROR:.0%}"
        said = (f"each trial's worker needs about {_gb(self.per_trial_mb)} ({how}); {self.at_once} at once need "
                f"{_gb(self.at_once * self.per_trial_mb)}")
        if self.fits:
            return f"Memory: {said} of the {_gb(self.available_mb)} available."
        said = (f"Memory: {said}, more than {SHARE:.0%} of the {_gb(self.available_mb)} available, and Ray's "
                "memory monitor kills workers when the machine reaches 95%.")
        if self.fits_at_once < 1:
            return f"{said} Not even one fits: lower train.batch_size or data.image_size, or free memory."
        cpu = next(c for c in range(max(1, math.ceil(cpu_per_trial)), cpus + 1) if cpus // c <= self.fits_at_once)
        return f"{said} {self.fits_at_once} fit: run them with --set resources.cpu={cpu} ({cpus // cpu} at once)."


def _gb(mb: float) -> str:
    return f"{mb / 1024:.1f} GB"
