"""What a model variant costs: parameters (total and added over vanilla), MACs and CPU latency.

MACs come from torch's own `torch.utils.flop_counter` (which counts a multiply-add as two FLOPs),
so elementwise gates count as free, as in the CBAM and SE papers' figures. Latency is the median
of timed forward passes after warm-up, on whatever device the caller gives.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .models import build_model, count_parameters
from .spec import ModelSpec


def count_macs(model: nn.Module, image_size: int) -> int:
    """Multiply-accumulates of one forward pass of a single image."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    return counter.get_total_flops() // 2


def measure_latency_ms(model: nn.Module, image_size: int, *, batch_size: int = 1, repeats: int = 10,
                       warmup: int = 3) -> float:
    """Median wall time of one forward pass, in milliseconds."""
    model.eval()
    x = torch.zeros(batch_size, 3, image_size, image_size, device=next(model.parameters()).device)
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            began = time.perf_counter()
            model(x)
            if x.is_cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def static_costs(model: nn.Module, spec: ModelSpec, *, num_classes: int, image_size: int) -> dict[str, int]:
    """`params_total`, `params_added` (over the same ResNet without attention) and `macs`: no timing."""
    with torch.random.fork_rng(devices=[]):  # measuring must not change the training that follows
        vanilla = build_model(spec.model_copy(update={"attention": "none", "pretrained": None}),
                              num_classes=num_classes)
    total = count_parameters(model)
    return {"params_total": total, "params_added": total - count_parameters(vanilla),
            "macs": count_macs(model, image_size)}


def model_costs(model: nn.Module, spec: ModelSpec, *, num_classes: int, image_size: int) -> dict[str, float]:
    """The static costs and `latency_ms`, the median forward time of one image on the model's device."""
    costs = static_costs(model, spec, num_classes=num_classes, image_size=image_size)
    return costs | {"latency_ms": measure_latency_ms(model, image_size)}


def arm_costs(spec: ModelSpec, *, num_classes: int, image_size: int, timed: bool = True) -> dict[str, float]:
    """What the model `spec` describes costs, built here on the CPU (pretrained weights change no cost);
    with `timed`, its latency too."""
    spec = spec.model_copy(update={"pretrained": None})
    with torch.random.fork_rng(devices=[]):
        model = build_model(spec, num_classes=num_classes)
    if timed:
        return model_costs(model, spec, num_classes=num_classes, image_size=image_size)
    return static_costs(model, spec, num_classes=num_classes, image_size=image_size)
