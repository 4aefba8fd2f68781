"""What a model variant costs: parameters (total and added over vanilla), MACs and CPU latency.

MACs come from torch's own `torch.utils.flop_counter` (which counts a multiply-add as two FLOPs),
so elementwise gates count as free, as in the CBAM and SE papers' figures. Parameters and MACs
depend on shapes only, so they are counted on the `meta` device (no memory, no weight init: a
ResNet-50 in a fraction of the time) and cached per distinct model. Latency is timed on real
weights: the median and interquartile range of forward passes after warm-up, with the share of
the machine that other processes kept busy meanwhile, since a latency timed under load is not
one to quote.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ablation.core.cache import cache_dir
from ablation.models import build_model, count_parameters
from ablation.core import DataSpec, ModelSpec

# Other processes keeping more than this share of the machine busy make a timing "under load".
BUSY = 0.15


def count_macs(model: nn.Module, image_size: int) -> int:
    """Multiply-accumulates of one forward pass of a single image."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class Latency:
    """Forward-pass wall times of one image, in milliseconds."""

    median_ms: float
    iqr_ms: float  # between the 25th and 75th percentiles
    repeats: int
    busy: float  # the share of the machine's CPU time other processes used while it was timed

    @property
    def under_load(self) -> bool:
        return self.busy > BUSY

    def metrics(self) -> dict[str, float]:
        return {"latency_ms": self.median_ms, "latency_iqr_ms": self.iqr_ms, "latency_busy": self.busy}


class OthersBusy:
    """The share of all cores' time that processes other than this one spent busy, over a `with`."""

    def __enter__(self) -> OthersBusy:
        import psutil

        self._psutil, self._me = psutil, psutil.Process()
        self._began = (time.perf_counter(), self._busy(), self._mine())
        return self

    def _busy(self) -> float:
        times = self._psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    def _mine(self) -> float:
        times = self._me.cpu_times()
        return times.user + times.system

    def __exit__(self, *exc) -> None:
        began, busy, mine = self._began
        wall = (time.perf_counter() - began) * (os.cpu_count() or 1)
        others = (self._busy() - busy) - (self._mine() - mine)
        self.share = min(1.0, max(0.0, others / wall)) if wall > 0 else 0.0


def measure_latency(model: nn.Module, image_size: int, *, repeats: int = 30, warmup: int = 5) -> Latency:
    """Time `repeats` forward passes of one image after `warmup` untimed ones, on the model's device."""
    model.eval()
    x = torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device)
    times = []
    with torch.no_grad(), OthersBusy() as load:
        for i in range(warmup + repeats):
            began = time.perf_counter()
            model(x)
            if x.is_cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - began) * 1000)
    quartiles = statistics.quantiles(times, n=4)
    return Latency(statistics.median(times), quartiles[2] - quartiles[0], repeats, load.share)


def static_costs(spec: ModelSpec, *, num_classes: int, image_size: int) -> dict[str, int]:
    """`params_total`, `params_added` (over the same ResNet without attention) and `macs`, counted on
    the meta device and cached on disk per distinct model (pretrained weights change no cost)."""
    spec = spec.model_copy(update={"pretrained": None})
    key = hashlib.sha256(f"{torch.__version__}|{spec.model_dump_json()}|{num_classes}|{image_size}".encode()).hexdigest()
    path = cache_dir() / "costs" / f"{key[:32]}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    costs = _count(spec, num_classes, image_size)
    costs["params_added"] = costs["params_total"] - _vanilla_params(spec.arch, num_classes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps(costs))
        partial.replace(path)  # atomic: trials may count the same model at once
    except OSError:
        pass  # a read-only cache costs time, not correctness
    return costs


def _count(spec: ModelSpec, num_classes: int, image_size: int) -> dict[str, int]:
    with torch.device("meta"):
        model = build_model(spec, num_classes=num_classes)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, image_size, image_size, device="meta"))
    return {"params_total": count_parameters(model), "macs": counter.get_total_flops() // 2}


@functools.cache
def _vanilla_params(arch: str, num_classes: int) -> int:
    with torch.device("meta"):
        return count_parameters(build_model(ModelSpec(arch=arch, attention="none"), num_classes=num_classes))


def model_costs(model: nn.Module, spec: ModelSpec, *, num_classes: int, image_size: int) -> dict[str, float]:
    """The static costs and the latency metrics of `model` (built from `spec`) on its device."""
    latency = measure_latency(model, image_size)
    return static_costs(spec, num_classes=num_classes, image_size=image_size) | latency.metrics() | {
        "latency_under_load": latency.under_load}


def arm_latency(spec: ModelSpec, *, num_classes: int, image_size: int) -> Latency:
    """The latency of the model `spec` describes, built here on the CPU with fresh weights."""
    with torch.random.fork_rng(devices=[]):  # timing must not change the training that follows
        model = build_model(spec.model_copy(update={"pretrained": None}), num_classes=num_classes)
    return measure_latency(model, image_size)


def variant_figures(model: ModelSpec, data: DataSpec, *, num_classes: int | None = None) -> dict[str, Any]:
    """What `ablate inspect` prints of a model variant: its settings, input size, classes, parameters,
    MACs and CPU latency (`num_classes` defaults to the dataset's classes)."""
    from ablation.data import classes_of

    num_classes = num_classes or len(classes_of(data))
    built = build_model(model, num_classes=num_classes)
    figures = {"model": model.model_dump(mode="json"), "input_size": data.image_size, "num_classes": num_classes}
    figures |= model_costs(built, model, num_classes=num_classes, image_size=data.image_size)
    return figures | {"params": figures["params_total"]}
