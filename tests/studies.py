"""What tests that run real studies share: the tiny study's spec, and this process's Ray, free for a study."""

import time
from pathlib import Path

import yaml

# Two trials of one epoch on a few dozen 32-px images: the smallest real study. Each trial asks for both of
# the machine's cores, so they run one after the other in one worker Tune reuses: a trial's worker spends
# about 3 CPU-seconds importing torch, Ray Tune and MLflow, and the slow tier keeps both cores busy, so a
# second worker costs a test more than running its trials side by side saves (docs/benchmarks.md).
TINY = {
    "name": "tiny",
    "model": {"arch": "resnet18", "attention": "identity_cbam", "reduction": 16},
    "data": {"dataset": "synthetic", "image_size": 32, "train_per_class": 8, "val_per_class": 4,
             "test_per_class": 4},
    "train": {"epochs": 1, "batch_size": 16, "lr": 0.01},
    "search": {"method": "grid", "space": {"model.placement": ["none", "layer4"]}, "seeds": [0]},
    "resources": {"cpu": 2, "gpu": 0},
}


def write_tiny(folder: Path) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def ray_free_for_a_study() -> None:
    """The Ray this process shares, if one runs, with all its CPUs free: a study's actors may take a
    moment to give theirs back, and a Ray a test left with work on it (a trial still holding a CPU) is
    shut down, so the next run starts a fresh one."""
    import ray

    deadline = time.monotonic() + 5
    while ray.is_initialized() and ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        if time.monotonic() > deadline:
            ray.shutdown()
            break
        time.sleep(0.1)
