"""What Ray Tune + MLflow cost over a plain loop, and what ASHA saves over a grid, measured in one run.

1. Overhead: the same 8 short trials (ResNet-18, 32 px, 2 epochs) as a plain loop of `engine.fit`
   (all cores to one trial at a time) and through `ablate run`'s driver (one core per trial, two at
   once, Ray started inside the timing). Targets: wall-clock ratio <= 1.10, and per-trial overhead
   beyond training (an MLflow run's duration minus its epochs' and the final test's time) <= 0.3 s.
2. ASHA: search_spaces/placement.yaml at a tiny size, as a full grid and with ASHA. Targets: ASHA
   trains <= 40% of the grid's epochs, and the grid's best placement is among ASHA's top 2.

    .venv/bin/python benchmarks/orchestration.py [--epochs 2] [--asha-epochs 6]

Writes benchmarks/results/orchestration.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient
from rich.console import Console

from results_file import publish  # benchmarks/, the script's own folder

ROOT = Path(__file__).resolve().parents[1]


def study_runs(uri: str, name: str) -> list:
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id], max_results=10_000)
    return [r for r in runs if r.data.tags.get("ablate.kind") == "trial"]


def overhead_beyond_training(uri: str, run) -> float:
    """Run duration minus the time its epochs (train + validation) and its test evaluations took."""
    client = MlflowClient(uri)
    spent = sum(m.value for key in ("epoch_time_s", "test_time_s")
                for m in client.get_metric_history(run.info.run_id, key))
    return (run.info.end_time - run.info.start_time) / 1000 - spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--asha-epochs", type=int, default=6)
    parser.add_argument("--reduction-factor", type=int, default=3, help="ASHA's")
    args = parser.parse_args()

    import ray

    from ablation import engine
    from ablation.spec import load_spec
    from ablation.study import run_study

    quiet = Console(quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["ABLATE_CACHE_DIR"] = str(tmp / "cache")
        path = tmp / "overhead.yaml"
        path.write_text(yaml.safe_dump({
            "name": "overhead",
            "model": {"arch": "resnet18"},
            "data": {"image_size": 32, "train_per_class": 50, "val_per_class": 25, "test_per_class": 25},
            "train": {"epochs": args.epochs, "batch_size": 32},
            "search": {"space": {"model.placement": ["none", "layer2", "layer3", "layer4"]}, "seeds": [0, 1]},
            "resources": {"cpu": 1},
        }))
        spec = load_spec(path)
        engine.setup(spec.trials()[0].spec, 0)  # generate the data outside both timings
        began = time.perf_counter()
        for trial in spec.trials():
            engine.fit(trial.spec, trial.seed, on_epoch=lambda m, c: None)
        plain = time.perf_counter() - began
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        began = time.perf_counter()
        run_study(spec, path.read_text(), tracking_uri=uri, storage=str(tmp / "runs"), console=quiet)
        tuned = time.perf_counter() - began
        ray.shutdown()
        overheads = [overhead_beyond_training(uri, r) for r in study_runs(uri, "overhead")]

        tiny = ["data.image_size=32", "data.train_per_class=30", "data.val_per_class=20", "data.test_per_class=20",
                f"train.epochs={args.asha_epochs}", "train.batch_size=32", "search.seeds=[0]", "resources.cpu=1"]
        ranked = {}
        for name, extra in (("grid", []), ("asha", ["search.scheduler=asha", "search.grace_period=1",
                                                    f"search.reduction_factor={args.reduction_factor}"])):
            placement = load_spec(ROOT / "search_spaces" / "placement.yaml", [*tiny, f"name={name}", *extra])
            run_study(placement, "", tracking_uri=uri, storage=str(tmp / "runs"), console=quiet)
            ray.shutdown()
            runs = study_runs(uri, name)
            client = MlflowClient(uri)
            history = {r.data.params["model.placement"]: [m.value for m in client.get_metric_history(
                r.info.run_id, "val_macro_f1")] for r in runs}
            ranked[name] = {"epochs": sum(map(len, history.values())),
                            "order": sorted(history, key=lambda p: max(history[p]), reverse=True)}

    grid_epochs, asha_epochs = ranked["grid"]["epochs"], ranked["asha"]["epochs"]
    best = ranked["grid"]["order"][0]
    rank_in_asha = ranked["asha"]["order"].index(best) + 1
    result = {
        "trials": 8, "epochs": args.epochs, "plain_seconds": plain, "ablate_seconds": tuned,
        "ratio": tuned / plain, "ratio_target": 1.10,
        "overhead_per_trial_seconds_median": statistics.median(overheads),
        "overhead_per_trial_seconds_max": max(overheads), "overhead_target": 0.3,
        "asha_epochs": asha_epochs, "grid_epochs": grid_epochs, "asha_share": asha_epochs / grid_epochs,
        "asha_share_target": 0.40, "grid_best": best, "grid_best_rank_in_asha": rank_in_asha,
        "grid_order": ranked["grid"]["order"], "asha_order": ranked["asha"]["order"],
    }
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    lines = [
        f"8 trials x {args.epochs} epochs, ResNet-18 at 32 px, {os.cpu_count()} cores",
        f"plain loop {plain:.1f} s; ablate (Ray started inside, 2 trials at once) {tuned:.1f} s; "
        f"ratio {tuned / plain:.2f} (target <= 1.10: {met(tuned / plain <= 1.10)})",
        f"per-trial overhead beyond training: median {statistics.median(overheads):.2f} s, max {max(overheads):.2f} s "
        f"(target <= 0.3 s: {met(statistics.median(overheads) <= 0.3)})",
        f"placement.yaml at 32 px, {args.asha_epochs} epochs: ASHA (reduction factor {args.reduction_factor}) trained {asha_epochs} of the grid's {grid_epochs} "
        f"epochs = {asha_epochs / grid_epochs:.0%} (target <= 40%: {met(asha_epochs / grid_epochs <= 0.40)})",
        f"the grid's best placement, {best}, ranks #{rank_in_asha} under ASHA (target: top 2: {met(rank_in_asha <= 2)})",
    ]
    publish("orchestration", result, lines)


if __name__ == "__main__":
    main()
