"""How hard is the generated dataset? ResNet-18 at 64 px, trained on the default generated splits,
against the target the datasets issue set: roughly 75-90% test accuracy, with unrest and wound the
most confused pair (as in the paper's Table 1 on real faces).

    .venv/bin/python benchmarks/synthetic_calibration.py [--epochs 10] [--seed 0]

Prints test accuracy, per-class F1 and the most confused pairs; writes
benchmarks/results/synthetic_calibration.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassConfusionMatrix

from results_file import publish  # benchmarks/, the script's own folder



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from ablation import engine
    from ablation.core import StudySpec

    spec = StudySpec.model_validate({
        "name": "calibration",
        "model": {"arch": "resnet18", "attention": "none"},
        "data": {"dataset": "synthetic", "image_size": 64},
        "train": {"epochs": args.epochs, "batch_size": 64, "lr": 0.002, "optimizer": "adamw", "weight_decay": 0.05},
        "search": {"space": {"model.placement": ["none"]}},
        "resources": {"cpu": os.cpu_count()},
    })
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("ABLATE_CACHE_DIR", tmp)
        s = engine.setup(spec, args.seed)
        for epoch in range(1, args.epochs + 1):
            loss = engine.train_one_epoch(s)["train_loss"]
            print(f"epoch {epoch}: train loss {loss:.3f}", flush=True)
        classes = s.splits.classes
        test = engine.evaluate(s.model, s.splits.test, classes, "test", s.device)
        confusion = MulticlassConfusionMatrix(len(classes))
        s.model.eval()
        with torch.no_grad():
            for images, labels in DataLoader(s.splits.test, batch_size=256):
                confusion.update(s.model(images), labels)
        matrix = confusion.compute()

    pairs = sorted(((int(matrix[i, j] + matrix[j, i]), classes[i], classes[j])
                    for i in range(len(classes)) for j in range(i + 1, len(classes))), reverse=True)
    result = {
        "setup": {"arch": "resnet18", "image_size": 64, "epochs": args.epochs, "seed": args.seed,
                  "train_per_class": spec.data.per_class("train"), "test_per_class": spec.data.per_class("test")},
        "test_accuracy": test["test_accuracy"], "test_macro_f1": test["test_macro_f1"],
        "f1": {c: test[f"test_f1_{c}"] for c in classes},
        "confusion": matrix.tolist(), "classes": list(classes),
        "most_confused": [{"pair": [a, b], "errors": n} for n, a, b in pairs[:3]],
    }
    lines = [
        f"ResNet-18, 64 px, {args.epochs} epochs, generated data ({spec.data.per_class('train')} train / "
        f"{spec.data.per_class('test')} test images per class), seed {args.seed}",
        f"test accuracy {test['test_accuracy']:.3f}, macro-F1 {test['test_macro_f1']:.3f}",
        "per-class F1: " + ", ".join(f"{c} {test[f'test_f1_{c}']:.2f}" for c in classes),
        "most confused pairs (errors both ways): " + ", ".join(f"{a}/{b} {n}" for n, a, b in pairs[:3]),
    ]
    publish("synthetic_calibration", result, lines)


if __name__ == "__main__":
    main()
