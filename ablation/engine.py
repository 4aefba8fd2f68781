"""Training and evaluation of one trial, as plain functions.

Knows neither Ray nor MLflow: `fit` calls `on_epoch(metrics, checkpoint)` once per epoch and the
caller decides where those go (Ray Tune and MLflow in `study.py`, a list in the tests). The
checkpoint is a plain dict of tensors and numbers that `torch.load(weights_only=True)` reads back.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ablation import optim
from ablation.data import Splits, build_splits, check_trainable
from ablation.models import build_model
from ablation.core import StudySpec
from ablation.core.names import TRAIN_LOSS, class_f1, split_metrics

EpochCallback = Callable[[dict[str, float], dict[str, Any] | None], None]
BestCallback = Callable[[dict[str, torch.Tensor], int], None]
BatchCallback = Callable[[int, int], None]  # (batches done, batches in the epoch)


@dataclass
class Setup:
    """Everything a trial trains with, built from its spec."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    splits: Splits
    train_loader: DataLoader
    generator: torch.Generator  # drives shuffling and augmentation, so it is checkpointed
    device: torch.device
    precision: Precision
    # One for the whole fit, checkpointed: its scale adapts over many steps, and a new one each epoch
    # would start again from a scale that overflows. fp16 needs it against underflow; bf16 and fp32 do not.
    scaler: torch.amp.GradScaler


@dataclass(frozen=True)
class Precision:
    """How a trial computes on its device: mixed precision and memory layout apply on CUDA only."""

    dtype: torch.dtype | None = None  # autocast to this, or None for float32
    channels_last: bool = False

    @classmethod
    def choose(cls, spec: StudySpec, device: torch.device) -> Precision:
        if device.type != "cuda":
            return cls()
        wanted = spec.train.precision
        if wanted == "auto":
            wanted = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[wanted]
        return cls(dtype, spec.train.channels_last)

    def autocast(self, device: torch.device):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images


def setup(spec: StudySpec, seed: int, device: torch.device | str = "cpu") -> Setup:
    torch.manual_seed(seed)
    device = torch.device(device)
    splits = build_splits(spec.data)
    check_trainable(spec.data, splits)
    precision = Precision.choose(spec, device)
    model = build_model(spec.model, num_classes=len(splits.classes)).to(device)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    t = spec.train
    optimizer = optim.optimizer(model.parameters(), t)
    if t.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t.epochs)
    else:
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    generator = torch.Generator().manual_seed(seed)
    workers = loader_workers(spec, device)
    # A last batch of one image fails BatchNorm wherever a feature map is 1x1 (layer4 at 32 px), so a lone
    # last image is left out; shuffling draws a new one each epoch, so no image is always left out.
    lone_last = len(splits.train) % t.batch_size == 1
    loader = DataLoader(splits.train, batch_size=t.batch_size, shuffle=True, generator=generator, drop_last=lone_last,
                        num_workers=workers, persistent_workers=workers > 0, pin_memory=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=precision.dtype == torch.float16)
    return Setup(model, optimizer, scheduler, splits, loader, generator, device, precision, scaler)


def loader_workers(spec: StudySpec, device: torch.device) -> int:
    """`data.workers`, else fitted to the trial's CPUs: on a GPU all but one feed it; on a CPU the model
    needs the cores, and reading uint8 arrays from the cache is cheap, so a quarter of them."""
    if spec.data.workers is not None:
        return spec.data.workers
    cpus = max(1, int(spec.resources.cpu))
    return min(8, cpus - 1) if device.type == "cuda" else cpus // 4


class Diverged(RuntimeError):
    """Training blew up (a non-finite or exploding loss): a result to record, not a failure to retry."""


# Cross-entropy starts near ln(classes) (1.8 for six); a batch loss past this has left training behind.
EXPLODED = 1e3


def train_one_epoch(s: Setup, on_batch: BatchCallback | None = None) -> dict[str, float]:
    s.model.train()
    criterion = nn.CrossEntropyLoss()
    # Kept on the device and read once, after the epoch: reading a loss each batch waits for the GPU.
    # So a diverged epoch runs to its end before it is caught; its weights are thrown away anyway.
    total, worst = torch.zeros((), device=s.device), torch.zeros((), device=s.device)
    seen = 0
    for done, (images, labels) in enumerate(s.train_loader, 1):
        images, labels = s.precision.inputs(images.to(s.device, non_blocking=True)), labels.to(s.device)
        with s.precision.autocast(s.device):
            loss = criterion(s.model(images), labels)
        s.optimizer.zero_grad(set_to_none=True)
        s.scaler.scale(loss).backward()
        s.scaler.step(s.optimizer)
        s.scaler.update()
        loss = loss.detach().float()
        total += loss * len(labels)
        worst = torch.maximum(worst, loss)  # a nan stays nan
        seen += len(labels)
        if on_batch is not None:
            on_batch(done, len(s.train_loader))
    total, worst = torch.stack([total, worst]).tolist()
    if not math.isfinite(worst) or worst > EXPLODED:
        raise Diverged(f"the training loss reached {worst:.4g}")
    s.scheduler.step()
    return {TRAIN_LOSS: total / seen}


def scores(confusion: torch.Tensor) -> tuple[float, float, list[float]]:
    """Accuracy, macro-F1 and each class's F1 from a confusion matrix (rows true, columns predicted).

    torchmetrics' definitions (tests/test_engine.py checks against it), counted here rather than
    imported: torchmetrics loads torchvision and scipy, 250 MB in every trial's worker. A class's F1
    is 0 when it is neither present nor predicted, and such a class is left out of the macro mean."""
    confusion = confusion.double()
    tp = confusion.diagonal()
    fp, fn = confusion.sum(0) - tp, confusion.sum(1) - tp
    denominator = 2 * tp + fp + fn
    f1 = torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), 0.0)
    seen = denominator > 0
    macro = f1[seen].mean().item() if seen.any() else 0.0
    return (tp.sum() / confusion.sum()).item(), macro, f1.tolist()


@torch.no_grad()
def evaluate(model: nn.Module, dataset, classes: tuple[str, ...], prefix: str, device: torch.device,
             batch_size: int = 256, precision: Precision = Precision()) -> dict[str, float]:
    """Loss, accuracy, macro-F1 and per-class F1 (`{prefix}_f1_<class>`) over a split."""
    model.eval()
    n = len(classes)
    # Kept on the device and read once, at the end: reading each batch would wait for the GPU.
    total, confusion = torch.zeros((), device=device), torch.zeros(n * n, dtype=torch.int64, device=device)
    for images, labels in DataLoader(dataset, batch_size=batch_size):
        images, labels = precision.inputs(images.to(device)), labels.to(device)
        with precision.autocast(device):
            logits = model(images).float()
        total += nn.functional.cross_entropy(logits, labels, reduction="sum")
        confusion += torch.bincount(labels * n + logits.argmax(1), minlength=n * n)
    accuracy, macro_f1, f1 = scores(confusion.view(n, n).cpu())
    loss_key, accuracy_key, macro_key = split_metrics(prefix)
    out = {loss_key: total.item() / len(dataset), accuracy_key: accuracy, macro_key: macro_f1}
    return out | {class_f1(prefix, name): value for name, value in zip(classes, f1)}


def _improved(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value > best if mode == "max" else value < best)


def fit(spec: StudySpec, seed: int, *, on_epoch: EpochCallback, on_best: BestCallback | None = None,
        resume: dict[str, Any] | None = None, device: torch.device | str = "cpu",
        on_batch: BatchCallback | None = None) -> dict[str, float]:
    """Train for `spec.train.epochs`, validating each epoch; the last epoch reports the test metrics of
    the epoch validation chose. `on_epoch` gets each epoch's checkpoint, except the last's (None):
    nothing resumes from it, so a one-epoch trial writes no checkpoint at all.

    `on_best(weights, epoch)` receives a copy of the weights each time validation improves (and the
    best so far on resuming), before that epoch's test evaluation, so the caller can store them
    while training goes on. `resume` is a checkpoint an earlier `on_epoch` received; training
    continues after its epoch.
    Returns the final epoch's metrics, which include `test_*` for the best validation epoch. The first
    epoch of each call also reports `setup_time_s`: its data, model and optimizer made ready (and its
    checkpoint loaded), the part of a trial that is neither training nor evaluation.
    """
    began = time.perf_counter()
    s = setup(spec, seed, device)
    classes = s.splits.classes
    best: dict[str, Any] = {"epoch": 0, "value": None, "test": {}}
    best_weights: dict[str, torch.Tensor] = {}
    start = 1
    if resume is not None:
        s.model.load_state_dict(resume["model"])
        s.optimizer.load_state_dict(resume["optimizer"])
        s.scheduler.load_state_dict(resume["scheduler"])
        if resume.get("scaler"):  # empty from a scaler that was off (CPU, bf16), and absent from older checkpoints
            s.scaler.load_state_dict(resume["scaler"])
        s.generator.set_state(resume["rng"]["loader"])
        torch.set_rng_state(resume["rng"]["torch"])
        best = dict(resume["best"])
        # A checkpoint carries the best epoch's weights only when they differ from its own.
        best_weights = best.pop("model", None) or resume["model"]
        start = resume["epoch"] + 1
        if on_best is not None:
            on_best(best_weights, best["epoch"])
    set_up = {"setup_time_s": time.perf_counter() - began}

    metrics: dict[str, float] = {}
    for epoch in range(start, spec.train.epochs + 1):
        began = time.perf_counter()
        metrics = {"epoch": epoch, "lr": s.optimizer.param_groups[0]["lr"]} | set_up
        set_up = {}
        metrics |= train_one_epoch(s, on_batch)
        metrics |= evaluate(s.model, s.splits.val, classes, "val", s.device, precision=s.precision)
        metrics["epoch_time_s"] = time.perf_counter() - began
        if _improved(metrics[spec.metric], best["value"], spec.mode):
            # A copy, as training goes on to change them; the last epoch's weights change no more.
            best_weights = s.model.state_dict()
            if epoch < spec.train.epochs:
                best_weights = {k: v.detach().clone() for k, v in best_weights.items()}
            if on_best is not None:
                on_best(best_weights, epoch)
            # Tested now, while these weights are at hand, rather than reloaded at the end; only the
            # chosen epoch's test figures are ever reported, so the test split plays no part in the choice.
            began = time.perf_counter()
            test = evaluate(s.model, s.splits.test, classes, "test", s.device, precision=s.precision)
            metrics["test_time_s"] = time.perf_counter() - began
            best = {"epoch": epoch, "value": metrics[spec.metric], "test": test}
        if epoch == spec.train.epochs:
            metrics |= best["test"] | {"best_epoch": best["epoch"], f"best_{spec.metric}": best["value"]}
        on_epoch(metrics, None if epoch == spec.train.epochs else {
            "epoch": epoch,
            "model": s.model.state_dict(),
            "optimizer": s.optimizer.state_dict(),
            "scheduler": s.scheduler.state_dict(),
            "scaler": s.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "loader": s.generator.get_state()},
            "best": best if best["epoch"] == epoch else best | {"model": best_weights},
        })
    return metrics

