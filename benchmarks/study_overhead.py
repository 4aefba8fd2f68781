"""What Ray Tune + MLflow cost over a plain loop, measured in one run (ratios, not absolute times).

Runs the same small study twice: once as a plain `engine.fit` loop in this process (all cores to
one trial at a time), once through `ablate`'s Ray Tune driver with MLflow logging (one core per
trial, trials in parallel). Prints wall times and their ratio; below 1 means the study machinery
pays for itself by running trials side by side.

    .venv/bin/python benchmarks/study_overhead.py [--trials 4] [--epochs 2] [--image-size 32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import yaml
from rich.console import Console


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="placements to compare (1 seed each)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--per-class", type=int, default=50)
    args = parser.parse_args()

    from ablation import engine
    from ablation.spec import load_spec
    from ablation.study import run_study

    placements = ["none", "layer1", "layer2", "layer3", "layer4", "all"][: args.trials]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("ABLATE_CACHE_DIR", str(tmp / "cache"))
        path = tmp / "bench.yaml"
        path.write_text(yaml.safe_dump({
            "name": "bench",
            "model": {"arch": "resnet18"},
            "data": {"image_size": args.image_size, "train_per_class": args.per_class,
                     "val_per_class": args.per_class // 2, "test_per_class": args.per_class // 2},
            "train": {"epochs": args.epochs, "batch_size": 32},
            "search": {"space": {"model.placement": placements}, "seeds": [0]},
            "resources": {"cpu": 1},
        }))
        spec = load_spec(path)
        engine.setup(spec.trials()[0].spec, 0)  # generate the data outside both timings

        began = time.perf_counter()
        for trial in spec.trials():
            engine.fit(trial.spec, trial.seed, on_epoch=lambda m, c: None)
        plain = time.perf_counter() - began

        began = time.perf_counter()
        run_study(spec, path.read_text(), tracking_uri=str(tmp / "mlruns"), storage=tmp / "runs",
                  console=Console(quiet=True))
        tuned = time.perf_counter() - began

    print(f"{len(placements)} trials x {args.epochs} epochs, resnet18 at {args.image_size}px, "
          f"{args.per_class} images/class, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    print(f"plain loop            {plain:7.1f} s")
    print(f"ablate (Tune+MLflow)  {tuned:7.1f} s   (includes starting Ray)")
    print(f"ratio ablate / plain  {tuned / plain:7.2f}")


if __name__ == "__main__":
    main()
