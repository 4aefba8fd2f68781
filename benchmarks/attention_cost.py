"""What attention costs in training time against what it costs in MACs, measured in one run.

ResNet-50 at 224x224, batch 8, forward + backward on this CPU: vanilla, Identity-CBAM after every
stage (the paper), and CBAM in every block (Woo et al.). Variants are timed round-robin, so a
slow spell on a noisy machine hits all of them alike, and each is reported as the ratio of its
median step time to vanilla's, beside the ratio of its MACs to vanilla's. The target: Identity-
CBAM's time ratio stays within 1.10x of its MAC ratio (its gates add elementwise work the MAC count
does not see; that must stay small).

    .venv/bin/python benchmarks/attention_cost.py [--repeats 5] [--batch 8] [--image-size 224]

Writes benchmarks/results/attention_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn

from ablation.accounting import count_macs
from ablation.models import build_model, count_parameters
from ablation.core import ModelSpec

from results_file import publish  # benchmarks/, the script's own folder

VARIANTS = {
    "vanilla": ModelSpec(arch="resnet50", attention="none"),
    "identity_cbam after every stage": ModelSpec(arch="resnet50", attention="identity_cbam", placement="all"),
    "cbam in every block": ModelSpec(arch="resnet50", attention="cbam", placement="all"),
}
TARGET = 1.10


def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    began = time.perf_counter()
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()

    torch.manual_seed(0)
    models = {name: build_model(spec, num_classes=1000) for name, spec in VARIANTS.items()}
    macs = {name: count_macs(model, args.image_size) for name, model in models.items()}
    x = torch.randn(args.batch, 3, args.image_size, args.image_size)
    y = torch.randint(0, 1000, (args.batch,))
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model.train()
        step(model, x, y)  # warm-up: allocator, kernel selection
    for _ in range(args.repeats):
        for name, model in models.items():
            times[name].append(step(model, x, y))

    base_time, base_macs = statistics.median(times["vanilla"]), macs["vanilla"]
    rows = []
    for name, model in models.items():
        seconds = statistics.median(times[name])
        rows.append({"variant": name, "params": count_parameters(model), "macs": macs[name],
                     "step_seconds": seconds, "time_ratio": seconds / base_time, "mac_ratio": macs[name] / base_macs})
    identity = next(r for r in rows if r["variant"].startswith("identity_cbam"))
    overhead = identity["time_ratio"] / identity["mac_ratio"]
    result = {
        "setup": {"arch": "resnet50", "image_size": args.image_size, "batch": args.batch, "repeats": args.repeats,
                  "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine()},
        "rows": rows,
        "identity_cbam_time_over_mac_ratio": overhead,
        "target": TARGET,
        "meets_target": overhead <= TARGET,
    }

    lines = [
        f"ResNet-50, {args.image_size}x{args.image_size}, batch {args.batch}, forward+backward, "
        f"{torch.get_num_threads()} threads, median of {args.repeats} round-robin steps",
        "",
        "| variant | params | GMACs/image | step (s) | time / vanilla | MACs / vanilla |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['params']:,} | {r['macs'] / 1e9:.3f} | {r['step_seconds']:.3f} | "
                     f"{r['time_ratio']:.3f} | {r['mac_ratio']:.3f} |")
    lines += ["", f"Identity-CBAM: time ratio / MAC ratio = {overhead:.3f} "
                  f"(target <= {TARGET}: {'met' if overhead <= TARGET else 'NOT met'})"]
    publish("attention_cost", result, lines)


if __name__ == "__main__":
    main()
