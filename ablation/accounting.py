"""What a model variant costs: parameters (total and added over vanilla), MACs and CPU latency.

MACs come from torch's own `torch.utils.flop_counter` (which counts a multiply-add as two FLOPs),
so elementwise gates count as free, as in the CBAM and SE papers' figures. Parameters and MACs
depend on shapes only, so they are counted on the `meta` device (no memory, no weight init) and
cached per distinct model. A model's count is composed: the plain ResNet's, counted once per
architecture, classes and input size, plus each placed module's, counted once alone on its site's
activation shape. That is exact (tests/test_plan_speed.py checks every shipped arm against the
whole model's count), because each module keeps its input's shape, so the network around it runs
the same operators on the same shapes whatever it holds; and it is far quicker than counting each
whole network, whose meta forward (BatchNorm's decompositions above all) takes a quarter second.
Latency is timed on real weights: the median and interquartile range of forward passes after
warm-up, with the share of the machine that other processes kept busy meanwhile, since a latency
timed under load is not one to quote.

torch is imported only where a model is built or run, so reading cached costs (a warm `ablate
plan`) imports none.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import statistics
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablation.core import DataSpec, ModelSpec
from ablation.core.cache import cache_dir
from ablation.core.catalog import ARCHITECTURES, ATTENTIONS, AttentionType, per_stage_bounds
from ablation.core.sites import STAGES, Site

if TYPE_CHECKING:
    import torch
    from torch import nn

# Other processes keeping more than this share of the machine busy make a timing "under load".
BUSY = 0.15


def count_macs(model: nn.Module, image_size: int) -> int:
    """Multiply-accumulates of one forward pass of a single image."""
    import torch

    x = torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device)
    return _forward_macs(model, x)[0]


def _forward_macs(module: nn.Module, x: torch.Tensor) -> tuple[int, Any]:
    """Multiply-accumulates of `module(x)` in eval mode, as torch's flop counter counts them, and its output."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    module.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = module(x)
    return counter.get_total_flops() // 2, out


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
    import torch

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


@functools.cache
def torch_version() -> str:
    """torch's version as installed, read without importing torch (which takes seconds): what the
    costs and the speed calibration are cached per."""
    return version("torch")


def static_costs(spec: ModelSpec, *, num_classes: int, image_size: int) -> dict[str, int]:
    """`params_total`, `params_added` (over the same ResNet without attention) and `macs`, counted on
    the meta device and cached on disk per distinct model (pretrained weights change no cost)."""
    spec = spec.model_copy(update={"pretrained": None})
    path = _costs_path(spec, num_classes, image_size)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    costs = _composed(spec, num_classes, image_size)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps(costs))
        partial.replace(path)  # atomic: trials may count the same model at once
    except OSError:
        pass  # a read-only cache costs time, not correctness
    return costs


def _costs_path(spec: ModelSpec, num_classes: int, image_size: int) -> Path:
    key = hashlib.sha256(f"{torch_version()}|{spec.model_dump_json()}|{num_classes}|{image_size}".encode()).hexdigest()
    return cache_dir() / "costs" / f"{key[:32]}.json"


def _count(spec: ModelSpec, num_classes: int, image_size: int) -> dict[str, int]:
    """The whole model's count, built and run on the meta device: what `_composed` must equal."""
    import torch

    from ablation.models import build_model, count_parameters

    with torch.device("meta"):
        model = build_model(spec, num_classes=num_classes)
    macs, _ = _forward_macs(model, torch.zeros(1, 3, image_size, image_size, device="meta"))
    return {"params_total": count_parameters(model), "macs": macs}


def _composed(spec: ModelSpec, num_classes: int, image_size: int) -> dict[str, int]:
    """`_count`'s figures plus `params_added`, from the plain ResNet's count and each placed module's.

    A site holds `count_at(stage)` modules in a row, each keeping its input's shape, so each costs
    what one module costs alone on that stage's output shape (a block's residual branch, where a
    block type sits, ends in the stage's shape too). A module that changes its input's shape would
    change what follows it, so a model holding one is counted whole."""
    plain = _plain(spec.arch, num_classes, image_size)
    kind = ATTENTIONS.get(spec.attention)
    params, macs = plain.params, plain.macs
    for stage in _slots(spec.sites, kind, ARCHITECTURES.get(spec.arch).layers).values():
        one = _module_costs(spec.attention, _options_at(spec, kind, stage), plain.shapes[stage])
        if one is None:
            whole = _count(spec, num_classes, image_size)
            return whole | {"params_added": whole["params_total"] - plain.params}
        params += spec.count_at(stage) * one[0]
        macs += spec.count_at(stage) * one[1]
    return {"params_total": params, "macs": macs, "params_added": params - plain.params}


def _slots(sites: tuple[Site, ...], kind: AttentionType, layers: tuple[int, ...]) -> dict[tuple, str]:
    """Each place `models.resnet.ResNet` puts a site's modules, and its stage: a block type into the
    residual branch of every block of the site (all of a stage's, or one), a stage type after the
    stage or after one block. A place two sites name (a block type at `layer3` and `layer3.1`) is
    filled once, the later site's modules replacing the earlier's, so it is counted once."""
    slots: dict[tuple, str] = {}
    for site in sites:
        if kind.site == "block":
            blocks = range(layers[STAGES.index(site.stage)]) if site.block is None else [site.block]
            slots |= {(site.stage, "inside", b): site.stage for b in blocks}
        else:
            slots[(site.stage, "after", site.block)] = site.stage
    return slots


def _options_at(spec: ModelSpec, kind: AttentionType, stage: str) -> tuple[tuple[str, Any], ...]:
    """The options a module at `stage` is built with, as `models._stacked` reads them (a per-stage
    option at the stage's value), hashable so equal modules are counted once."""
    options = []
    for name, info in kind.options.model_fields.items():
        value = getattr(spec, name)
        options.append((name, value[stage] if per_stage_bounds(info) and isinstance(value, dict) else value))
    return tuple(options)


@dataclass(frozen=True)
class _Plain:
    """The ResNet without attention: its parameters, MACs and each stage's output shape (1, C, H, W)."""

    params: int
    macs: int
    shapes: dict[str, tuple[int, ...]]


@functools.cache
def _plain(arch: str, num_classes: int, image_size: int) -> _Plain:
    import torch

    from ablation.models import build_model, count_parameters

    with torch.device("meta"):
        model = build_model(ModelSpec(arch=arch, attention="none"), num_classes=num_classes)
    shapes: dict[str, tuple[int, ...]] = {}
    for stage in STAGES:
        getattr(model, stage).register_forward_hook(
            lambda module, args, out, stage=stage: shapes.__setitem__(stage, tuple(out.shape)))
    macs, _ = _forward_macs(model, torch.zeros(1, 3, image_size, image_size, device="meta"))
    return _Plain(count_parameters(model), macs, shapes)


@functools.cache
def _module_costs(attention: str, options: tuple[tuple[str, Any], ...],
                  shape: tuple[int, ...]) -> tuple[int, int] | None:
    """Parameters and MACs of one `attention` module on an input of `shape`, on the meta device;
    None if its output is not of that shape."""
    import torch

    from ablation.models import BUILDERS, count_parameters

    with torch.device("meta"):
        module = BUILDERS[attention](shape[1], **dict(options))
    macs, out = _forward_macs(module, torch.zeros(shape, device="meta"))
    return (count_parameters(module), macs) if tuple(out.shape) == shape else None


def model_costs(model: nn.Module, spec: ModelSpec, *, num_classes: int, image_size: int) -> dict[str, float]:
    """The static costs and the latency metrics of `model` (built from `spec`) on its device."""
    latency = measure_latency(model, image_size)
    return static_costs(spec, num_classes=num_classes, image_size=image_size) | latency.metrics() | {
        "latency_under_load": latency.under_load}


def arm_latency(spec: ModelSpec, *, num_classes: int, image_size: int) -> Latency:
    """The latency of the model `spec` describes, built here on the CPU with fresh weights."""
    import torch

    from ablation.models import build_model

    with torch.random.fork_rng(devices=[]):  # timing must not change the training that follows
        model = build_model(spec.model_copy(update={"pretrained": None}), num_classes=num_classes)
    return measure_latency(model, image_size)


def variant_figures(model: ModelSpec, data: DataSpec, *, num_classes: int | None = None,
                    latency: bool = True) -> dict[str, Any]:
    """What `ablate inspect` prints of a model variant: its settings, input size, classes, parameters,
    MACs and, with `latency`, its CPU latency (`num_classes` defaults to the dataset's classes)."""
    from ablation.data import classes_of
    from ablation.models import build_model

    num_classes = num_classes or len(classes_of(data))
    figures = {"model": model.model_dump(mode="json"), "input_size": data.image_size, "num_classes": num_classes}
    if latency:
        built = build_model(model, num_classes=num_classes)
        figures |= model_costs(built, model, num_classes=num_classes, image_size=data.image_size)
    else:  # counted on the meta device: no weights, no timing
        figures |= static_costs(model, num_classes=num_classes, image_size=data.image_size)
    return figures | {"params": figures["params_total"]}
