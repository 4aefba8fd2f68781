"""What a study will cost before it runs: its trials, each arm's size and compute, and an estimate
of its wall time on this machine.

Training compute per trial is counted as 3x the forward MACs per training image (backward costs
about twice the forward) plus 1x per validation and test image. The wall-time estimate divides it
by this machine's measured training throughput (MACs per second through a ResNet-18 step with the
threads a trial gets), measured once and cached, and by how many trials run at once. It is an
estimate: real throughput varies by architecture and image size by a factor of about two.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from .accounting import arm_costs, count_macs
from .cache import cache_dir
from .data import classes_of, split_sizes
from .models import build_model
from .spec import ModelSpec, StudySpec, Trial


@dataclass(frozen=True)
class ArmPlan:
    arm: str
    params_total: int
    params_added: int
    macs: int  # forward, one image
    train_macs: int  # one trial (one seed), all epochs, training and evaluation


@dataclass(frozen=True)
class StudyPlan:
    trials: list[Trial]
    arms: list[ArmPlan]
    total_macs: int  # every trial
    macs_per_second: float  # this machine's measured training throughput per trial
    concurrent: int  # trials this machine runs at once
    estimated_seconds: float
    # A race's greatest cost, every arm running every seed (its least is the above: the start seeds).
    most_macs: int | None = None
    most_seconds: float | None = None


def trial_macs(forward_macs: int, images: dict[str, int], epochs: int) -> int:
    """Training compute of one trial, from the images in each split."""
    per_epoch = 3 * forward_macs * images["train"] + forward_macs * images["val"]
    return epochs * per_epoch + forward_macs * images["test"]


def plan_study(spec: StudySpec, *, cpus: int | None = None) -> StudyPlan:
    """Expand `spec` and price each arm; no Ray, no MLflow."""
    trials = spec.trials()
    first: dict[str, Trial] = {}
    for trial in trials:
        first.setdefault(trial.arm, trial)
    arms = []
    for arm, trial in first.items():
        t = trial.spec
        costs = arm_costs(t.model, num_classes=len(classes_of(t.data)), image_size=t.data.image_size, timed=False)
        arms.append(ArmPlan(arm, costs["params_total"], costs["params_added"], costs["macs"],
                            trial_macs(costs["macs"], split_sizes(t.data), t.train.epochs)))
    per_arm = {a.arm: a.train_macs for a in arms}
    total = sum(per_arm[t.arm] for t in trials)
    threads = max(1, int(spec.resources.cpu))
    throughput = calibrate(threads)
    concurrent = max(1, min(len(trials), (cpus or os.cpu_count() or 1) // threads))
    most = sum(per_arm[t.arm] for t in spec.trials(every_seed=True)) if spec.search.race else None
    return StudyPlan(trials, arms, total, throughput, concurrent, total / throughput / concurrent,
                     most, None if most is None else most / throughput / concurrent)


def calibrate(threads: int) -> float:
    """Training MACs per second on this machine's CPU with `threads` threads, measured once and cached."""
    path = cache_dir() / "calibration.json"
    key = f"torch-{torch.__version__}/{platform.machine()}/{os.cpu_count()}cpu/{threads}threads"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = _measure(threads)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(known, indent=2))
    return known[key]


def _measure(threads: int, *, batch: int = 16, image_size: int = 64, steps: int = 3) -> float:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            model = build_model(ModelSpec(arch="resnet18", attention="none"), num_classes=6)
        macs = count_macs(model, image_size)
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        x, y = torch.randn(batch, 3, image_size, image_size), torch.zeros(batch, dtype=torch.long)
        times = []
        for _ in range(steps + 1):  # the first step warms up the allocator and kernels
            began = time.perf_counter()
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            times.append(time.perf_counter() - began)
        return 3 * macs * batch / statistics.median(times[1:])
    finally:
        torch.set_num_threads(before)
