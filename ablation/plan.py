"""What a study will cost before it runs: its trials, each arm's size and compute, and an estimate
of its wall time on this machine.

Training compute per trial is counted as 3x the forward MACs per training image (backward costs
about twice the forward) plus 1x per validation and test image. The wall-time estimate divides it
by this machine's training throughput (MACs per second through a ResNet-18 step with the threads a
trial gets) and by how many trials run at once, and adds the study's fixed costs: its start-up and
each trial's own overhead, as `benchmarks/scale.py` measured them. The throughput is timed until
it is steady, and cached only when it was timed on a quiet machine, so a plan made under load says
so instead of remembering a figure that is off. It is an estimate: real throughput varies by
architecture and image size by a factor of about two.

With every arm's costs and the throughput cached, a plan imports no torch (seconds of a plan's
wall time otherwise): torch is imported where something must be counted or timed, and generated
datasets are priced from `core`'s descriptions, without `ablation.data`.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from ablation.accounting import BUSY, OthersBusy, static_costs, torch_version
from ablation.core import DataSpec, ModelSpec, Study, Trial
from ablation.core.cache import cache_dir
from ablation.core.datasets import DATASETS, SPLITS
from ablation.core.memory import MemoryFit, available_mb, trial_memory_mb

# A study's fixed costs on a 2-core machine, from benchmarks/results/scale.md: from `ablate run` to its
# first trial, and each trial's own (its MLflow run, Tune's scheduling) beyond training.
STARTUP_SECONDS = 25.0
TRIAL_OVERHEAD_SECONDS = 0.1


# Published peak dense tensor-core throughput at fp16/bf16, in FLOPs per second (a MAC is two): NVIDIA's
# data sheets for the T4, V100 (SXM2), A10, L4, A100 and H100 (SXM). Mixed precision is what trials use
# on a GPU (`train.precision: auto`).
GPUS = {"t4": 65e12, "v100": 125e12, "a10": 125e12, "l4": 121e12, "a100": 312e12, "h100": 989e12}
# A CNN at these image sizes keeps a GPU's tensor cores far from their peak; 30% is a common figure
# for ResNet training and is said beside every estimate, to be replaced by what a real run shows.
GPU_UTILISATION = 0.3


def gpu_hours(total_macs: int, gpu: str, utilisation: float = GPU_UTILISATION) -> float:
    """GPU-hours to train `total_macs` on one `gpu` (a GPUS name) at `utilisation` of its peak."""
    return 2 * total_macs / (GPUS[gpu] * utilisation) / 3600


@dataclass(frozen=True)
class ArmPlan:
    arm: str
    params_total: int
    params_added: int
    macs: int  # forward, one image
    train_macs: int  # one trial (one seed), all epochs, training and evaluation


@dataclass(frozen=True)
class Speed:
    """This machine's training throughput per trial, and how far to trust it."""

    macs_per_second: float
    spread: float  # relative interquartile range of the timed steps
    busy: float  # the share of the CPU other processes used while it was timed
    measured: str  # when (ISO date), and whether it came from the cache
    cached: bool

    @property
    def under_load(self) -> bool:
        return self.busy > BUSY


@dataclass(frozen=True)
class StudyPlan:
    trials: list[Trial]
    arms: list[ArmPlan]
    total_macs: int  # every trial
    speed: Speed
    concurrent: int  # trials this machine runs at once
    estimated_seconds: float  # training, plus the study's start-up and each trial's overhead
    # A race's greatest cost, every arm running every seed (its least is the above: the start seeds).
    most_macs: int | None = None
    most_seconds: float | None = None
    data_note: str | None = None  # how the split sizes were found when the dataset is not on this machine
    memory: MemoryFit | None = None  # whether the trials run at once fit in this machine's memory
    cpus: int = 1  # this machine's

    @property
    def macs_per_second(self) -> float:
        return self.speed.macs_per_second


def trial_macs(forward_macs: int, images: dict[str, int], epochs: int) -> int:
    """Training compute of one trial, from the images in each split."""
    per_epoch = 3 * forward_macs * images["train"] + forward_macs * images["val"]
    return epochs * per_epoch + forward_macs * images["test"]


def plan_study(study: Study, *, cpus: int | None = None) -> StudyPlan:
    """Price each arm of `study`; no Ray, no MLflow. A dataset that is not on this machine is priced
    from the spec's split sizes and the dataset's registered classes."""
    spec, trials, every = study.spec, list(study.trials), list(study.every_trial)
    first: dict[str, Trial] = {}
    for trial in trials:
        first.setdefault(trial.arm, trial)
    arms, notes, memory = [], set(), 0.0
    for arm, trial in first.items():
        t = trial.spec
        sizes, note = _sizes(t.data)
        notes.add(note)
        costs = static_costs(t.model, num_classes=len(_classes(t.data)), image_size=t.data.image_size)
        arms.append(ArmPlan(arm, costs["params_total"], costs["params_added"], costs["macs"],
                            trial_macs(costs["macs"], sizes, t.train.epochs)))
        memory = max(memory, trial_memory_mb(t.model.arch, costs["params_total"], t.data.image_size,
                                             t.train.batch_size))
    per_arm = {a.arm: a.train_macs for a in arms}
    threads = max(1, int(spec.resources.cpu))
    speed = calibrate(threads)
    cpus = cpus or os.cpu_count() or 1
    concurrent = max(1, min(len(trials), cpus // threads))

    def seconds(planned: list[Trial]) -> float:
        training = sum(per_arm[t.arm] for t in planned) / speed.macs_per_second
        return STARTUP_SECONDS + (training + len(planned) * TRIAL_OVERHEAD_SECONDS) / concurrent

    most = sum(per_arm[t.arm] for t in every) if spec.search.race else None
    return StudyPlan(trials, arms, sum(per_arm[t.arm] for t in trials), speed, concurrent, seconds(trials),
                     most, None if most is None else seconds(every), next((n for n in notes if n), None),
                     MemoryFit(memory, False, concurrent, available_mb()), cpus)


def _classes(data: DataSpec) -> tuple[str, ...]:
    classes = DATASETS.get(data.dataset).classes
    if classes is not None:
        return classes
    if data.root is not None and not data.root.exists():
        raise ValueError(f"data.root: no such folder: {data.root}, and the {data.dataset} dataset takes its "
                         "classes from its folders, so it cannot be priced without them")
    from ablation.data import classes_of  # reads them from the folders

    return classes_of(data)


def _sizes(data: DataSpec) -> tuple[dict[str, int], str | None]:
    """Images per split, and a note when they come from the spec rather than the data on disk."""
    if data.root is None or data.root.exists():
        if DATASETS.get(data.dataset).on_disk:
            from ablation.data import split_sizes  # counts the dataset's index

            return split_sizes(data), None
        return _spec_sizes(data), None  # generated: what `ablation.data.split_sizes` counts for it
    missing = [f"data.{split}_per_class" for split in SPLITS if data.per_class(split) is None]
    if missing:
        raise ValueError(f"data.root: no such file or folder: {data.root}; without the dataset, the plan needs "
                         f"{', '.join(missing)} to count its images")
    return (_spec_sizes(data),
            f"{data.root} is not on this machine: the splits were priced at the spec's per-class sizes times "
            f"{data.dataset}'s {len(_classes(data))} classes, so a class with fewer images costs less")


def _spec_sizes(data: DataSpec) -> dict[str, int]:
    """The spec's per-class images of each split times the dataset's classes."""
    classes = len(_classes(data))
    return {split: data.per_class(split) * classes for split in SPLITS}


def calibrate(threads: int) -> Speed:
    """Training MACs per second on this machine's CPU with `threads` threads: from the cache if it was
    timed there on a quiet machine, else timed now (and cached, if the machine is quiet now)."""
    path, key = cache_dir() / "calibration.json", _calibration_key(threads)
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(key), dict):  # an earlier version cached bare numbers, whatever the load
        return Speed(**known[key], cached=True)
    speed = _measure(threads)
    if not speed.under_load and speed.spread <= 0.1:
        known[key] = {"macs_per_second": speed.macs_per_second, "spread": speed.spread, "busy": speed.busy,
                      "measured": speed.measured}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(known, indent=2))
        except OSError:
            pass  # a read-only cache: timed again next time
    return speed


def _calibration_key(threads: int) -> str:
    # "/sgd": timed with training's own SGD (ablation.optim). A figure cached without it timed torch's,
    # which was 25-40% slower on a 2-core machine, so it is timed again rather than read.
    return f"torch-{torch_version()}/{platform.machine()}/{os.cpu_count()}cpu/{threads}threads/sgd"


def _measure(threads: int, *, batch: int = 16, image_size: int = 64, steps: int = 5, budget: float = 10.0) -> Speed:
    """Time training steps until the last `steps` agree within 10% (or `budget` seconds pass)."""
    import torch
    from torch import nn

    from ablation import optim
    from ablation.core.schema import TrainSpec
    from ablation.models import build_model

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        spec = ModelSpec(arch="resnet18", attention="none")
        with torch.random.fork_rng(devices=[]):
            model = build_model(spec, num_classes=6)
        # Counted on the meta device (and cached): a few times quicker than a counted forward on the CPU.
        macs = static_costs(spec, num_classes=6, image_size=image_size)["macs"]
        model.train()
        # Training's own SGD: torch's imports torch._dynamo on its first step, seconds of a first plan.
        optimizer = optim.optimizer(model.parameters(), TrainSpec(optimizer="sgd"))
        x, y = torch.randn(batch, 3, image_size, image_size), torch.zeros(batch, dtype=torch.long)
        times: list[float] = []
        began = time.perf_counter()
        with OthersBusy() as load:
            while True:
                start = time.perf_counter()
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
                times.append(time.perf_counter() - start)
                recent = times[1:][-steps:]  # the first step warms up the allocator and kernels
                if len(recent) == steps and _spread(recent) <= 0.1 or time.perf_counter() - began > budget:
                    break
        recent = times[1:][-steps:] or times
        return Speed(3 * macs * batch / statistics.median(recent), _spread(recent), load.share,
                     datetime.now(timezone.utc).date().isoformat(), cached=False)
    finally:
        torch.set_num_threads(before)


def _spread(times: list[float]) -> float:
    if len(times) < 2:
        return 0.0
    quartiles = statistics.quantiles(times, n=4)
    return (quartiles[2] - quartiles[0]) / statistics.median(times)
