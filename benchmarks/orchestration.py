"""What Ray Tune + MLflow cost over a plain loop, and what ASHA saves over a grid, measured in one run.

1. Overhead: the same 8 short trials (ResNet-18, 32 px, 2 epochs) as a plain loop of `engine.fit`
   (all cores to one trial at a time) and through `ablate run`'s driver (one core per trial, two at
   once, Ray started inside the timing). Targets: wall-clock ratio <= 1.10, and per-trial overhead
   beyond training (an MLflow run's duration minus its epochs' and the final test's time) <= 0.3 s.
   Also printed: the start-up, from calling the driver to the first trial's MLflow run, which a
   study pays once (Ray, the store, and each trial process importing torch).
2. ASHA: search_spaces/placement.yaml at a tiny size (ResNet-18, 32 px, one seed), as a full grid
   and with ASHA. Targets: ASHA trains <= 40% of the grid's epochs, and the grid's best placement
   is among ASHA's top 2 (each trial ranked by the best validation score it reached).

    .venv/bin/python benchmarks/orchestration.py [--only overhead|asha] [--per-class 400] [--asha-epochs 12]

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
QUIET = Console(quiet=True)


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


def overhead(tmp: Path, args) -> tuple[dict, list[str]]:
    import ray

    from ablation import engine
    from ablation.core import load_study
    from ablation.driver.launch import run_study

    path = tmp / "overhead.yaml"
    path.write_text(yaml.safe_dump({
        "name": "overhead",
        "model": {"arch": "resnet18"},
        "data": {"image_size": 32, "train_per_class": args.per_class, "val_per_class": 25, "test_per_class": 25},
        "train": {"epochs": args.epochs, "batch_size": 32},
        "search": {"space": {"model.placement": ["none", "layer2", "layer3", "layer4"]}, "seeds": [0, 1]},
        "resources": {"cpu": 1},
    }))
    study = load_study(path)
    engine.setup(study.trials[0].spec, 0)  # generate the data outside both timings
    began = time.perf_counter()
    for trial in study.trials:
        engine.fit(trial.spec, trial.seed, on_epoch=lambda m, c: None)
    plain = time.perf_counter() - began
    uri = f"sqlite:///{tmp / 'overhead.db'}"
    called = time.time()
    began = time.perf_counter()
    run_study(study, path.read_text(), tracking_uri=uri, storage=str(tmp / "runs"), console=QUIET)
    tuned = time.perf_counter() - began
    ray.shutdown()
    runs = study_runs(uri, "overhead")
    overheads = [overhead_beyond_training(uri, r) for r in runs]
    startup = min(r.info.start_time for r in runs) / 1000 - called
    median = statistics.median(overheads)
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    result = {"trials": 8, "epochs": args.epochs, "train_per_class": args.per_class, "plain_seconds": plain,
              "ablate_seconds": tuned, "ratio": tuned / plain, "ratio_target": 1.10, "startup_seconds": startup,
              "overhead_per_trial_seconds_median": median, "overhead_per_trial_seconds_max": max(overheads),
              "overhead_target": 0.3}
    return result, [
        f"8 trials x {args.epochs} epochs, ResNet-18 at 32 px, {args.per_class * 6} training images, "
        f"{os.cpu_count()} cores: a plain loop took {plain / 8:.1f} s per trial",
        f"plain loop {plain:.1f} s; ablate (Ray started inside, 2 trials at once) {tuned:.1f} s; "
        f"ratio {tuned / plain:.2f} (target <= 1.10: {met(tuned / plain <= 1.10)})",
        f"start-up, from the call to the first trial's run: {startup:.1f} s (paid once per study)",
        f"per-trial overhead beyond training: median {median:.2f} s, max {max(overheads):.2f} s "
        f"(target <= 0.3 s: {met(median <= 0.3)})",
    ]


def asha(tmp: Path, args) -> tuple[dict, list[str]]:
    import ray

    from ablation.core import load_study
    from ablation.driver.launch import run_study

    uri = f"sqlite:///{tmp / 'asha.db'}"
    tiny = ["model.arch=resnet18", "data.image_size=32", f"data.train_per_class={args.asha_per_class}",
            "data.val_per_class=30", "data.test_per_class=30", f"train.epochs={args.asha_epochs}",
            "train.batch_size=32", "search.seeds=[0]", "resources.cpu=1"]
    scheduler = ["search.scheduler=asha", f"search.grace_period={args.grace_period}",
                 f"search.reduction_factor={args.reduction_factor}"]
    ranked = {}
    for name, extra in (("grid", []), ("asha", scheduler)):
        placement = load_study(ROOT / "search_spaces" / "placement.yaml", [*tiny, f"name={name}", *extra])
        run_study(placement, "", tracking_uri=uri, storage=str(tmp / "runs"), console=QUIET)
        ray.shutdown()
        client = MlflowClient(uri)
        history = {r.data.params["model.placement"]: [m.value for m in client.get_metric_history(
            r.info.run_id, placement.spec.metric)] for r in study_runs(uri, name)}
        ranked[name] = {"epochs": sum(map(len, history.values())),
                        "order": sorted(history, key=lambda p: max(history[p]), reverse=True)}
    grid_epochs, asha_epochs = ranked["grid"]["epochs"], ranked["asha"]["epochs"]
    best = ranked["grid"]["order"][0]
    rank = ranked["asha"]["order"].index(best) + 1
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    result = {"asha_epochs": asha_epochs, "grid_epochs": grid_epochs, "asha_share": asha_epochs / grid_epochs,
              "asha_share_target": 0.40, "grid_best": best, "grid_best_rank_in_asha": rank,
              "grid_order": ranked["grid"]["order"], "asha_order": ranked["asha"]["order"],
              "asha": {"epochs": args.asha_epochs, "grace_period": args.grace_period,
                       "reduction_factor": args.reduction_factor, "train_per_class": args.asha_per_class}}
    return result, [
        f"placement.yaml with ResNet-18 at 32 px, {args.asha_per_class * 6} training images, "
        f"{args.asha_epochs} epochs, one seed: ASHA (grace period {args.grace_period}, reduction factor "
        f"{args.reduction_factor}) trained {asha_epochs} of the grid's {grid_epochs} epochs = "
        f"{asha_epochs / grid_epochs:.0%} (target <= 40%: {met(asha_epochs / grid_epochs <= 0.40)})",
        f"the grid's best placement, {best}, ranks #{rank} under ASHA (target: top 2: {met(rank <= 2)}); "
        f"the grid's top 3: {', '.join(ranked['grid']['order'][:3])}; ASHA's: {', '.join(ranked['asha']['order'][:3])}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["overhead", "asha"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=400, help="training images per class, overhead part")
    parser.add_argument("--asha-epochs", type=int, default=12)
    parser.add_argument("--asha-per-class", type=int, default=40)
    parser.add_argument("--grace-period", type=int, default=1)
    parser.add_argument("--reduction-factor", type=int, default=4, help="ASHA's")
    args = parser.parse_args()

    result, lines = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ABLATE_CACHE_DIR"] = str(Path(tmp) / "cache")
        for part, measure in (("overhead", overhead), ("asha", asha)):
            if args.only in (None, part):
                figures, said = measure(Path(tmp), args)
                result |= figures
                lines += said
    publish("orchestration" if args.only is None else f"orchestration-{args.only}", result, lines)


if __name__ == "__main__":
    main()
