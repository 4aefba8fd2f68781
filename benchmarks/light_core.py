"""What the light core bought where a person waits: two commits side by side, interleaved, on one machine.

For each commit (a git worktree of it, run with PYTHONPATH pointing there, so both use this venv):
- `ablate --help`, `ablate schema` and `ablate plan --help`: wall time, and whether torch, MLflow or Ray
  were imported;
- `ablate plan search_spaces/placement.yaml` cold (an empty ABLATE_CACHE_DIR: it times the machine's
  speed and counts each model) and warm (the same cache again);
- `ablate report` of one 1,000-run store (100 arms x 10 seeds, five epochs each, logged as `ablate run`
  logs them), written once by the newer commit's code and read by both.

Rounds alternate the order of the commits, so load that drifts falls on both alike; the figures are
medians over rounds, and each target is stated as the ratio after/before beside the absolute target.

    .venv/bin/python benchmarks/light_core.py --before be273dd [--after HEAD] [--rounds 3]

Writes benchmarks/results/light_core.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import publish

ROOT = Path(__file__).resolve().parents[1]
RUNS, ARMS, SEEDS, EPOCHS = 1000, 100, 10, 5

# Imports the CLI of either layout (ablation/cli.py before, ablation/cli/ after), runs one command and
# prints which heavy libraries it loaded.
PROBE = """
import sys
from typer.testing import CliRunner
try:
    from ablation.cli.main import app
except ImportError:
    from ablation.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
assert result.exit_code == 0, result.output
print(",".join(m for m in ("torch", "mlflow", "ray") if m in sys.modules) or "none")
"""

# Logs a 1,000-run study as `ablate run` does, with the newer commit's tracking code.
STORE = """
import sys, yaml
import numpy as np
from ablation import tracking
from ablation.core import Study, StudySpec

uri, arms, seeds, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
spec = StudySpec.model_validate({"name": "thousand", "model": {"arch": "resnet18"}, "train": {"epochs": epochs},
                                 "search": {"space": {"train.lr": [round(0.001 * (i + 1), 4) for i in range(arms)]},
                                            "seeds": list(range(seeds))}})
study = Study.from_spec(spec)
experiment_id, parent = tracking.open_study(
    uri, spec.name, params=tracking.study_params(spec, study.arms) | {"search.seeds": spec.search.seeds,
                                                                     "trials": len(study.trials)},
    spec_yaml=yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
tracking.describe_study(parent, axes=study.axes, design="grid", metric=spec.metric, mode=spec.mode,
                        storage="/nowhere/thousand", skipped=[], experiment_id=experiment_id, datasets=[])
rng = np.random.default_rng(0)
arm_index = {arm: i for i, arm in enumerate(study.arm_names)}
for trial in study.trials:
    opened = tracking.open_trial(uri, experiment_id, parent.run_id, name=trial.name, trial_id=trial.id,
                                 params=trial.params())
    opened.run.log(params=opened.params)
    base = 0.5 + 0.001 * (arm_index[trial.arm] % 50)
    for epoch in range(1, epochs + 1):
        value = float(base * epoch / epochs + rng.normal(0, 0.01))
        opened.run.log_metrics({"val_macro_f1": value, "val_accuracy": value, "val_loss": 1 - value,
                                "train_loss": 1 - value}, step=epoch)
    opened.run.log_metrics({"test_accuracy": value, "test_macro_f1": value, "params_total": 11.2e6, "macs": 3.6e7})
    opened.run.finish()
parent.finish()
"""


def worktree(commit: str, where: Path) -> Path:
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(where), commit], cwd=ROOT, check=True,
                   capture_output=True)
    return where


def run(tree: Path, args: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Seconds `args` took with `tree` on PYTHONPATH, run from `tree`; and its output's last line."""
    began = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=tree, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tree), **(env or {})})
    seconds = time.perf_counter() - began
    if done.returncode:
        raise RuntimeError(f"{tree}: {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    lines = done.stdout.strip().splitlines()
    return seconds, lines[-1] if lines else ""


def measure(tree: Path, tmp: Path, uri: str) -> dict[str, float | str]:
    figures: dict[str, float | str] = {}
    for name, command in (("help", ["--help"]), ("schema", ["schema"]), ("plan_help", ["plan", "--help"])):
        figures[f"{name}_seconds"], figures[f"{name}_imports"] = run(tree, ["-c", PROBE, *command])
    cache = Path(tempfile.mkdtemp(dir=tmp))
    plan = ["-m", "ablation.cli", "plan", "search_spaces/placement.yaml"]
    figures["plan_cold_seconds"] = run(tree, plan, {"ABLATE_CACHE_DIR": str(cache)})[0]
    figures["plan_warm_seconds"] = run(tree, plan, {"ABLATE_CACHE_DIR": str(cache)})[0]
    out = Path(tempfile.mkdtemp(dir=tmp))
    figures["report_seconds"] = run(tree, ["-m", "ablation.cli", "report", "thousand", "--tracking-uri", uri,
                                           "--out", str(out)])[0]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit before (e.g. be273dd)")
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    commits = {name: subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True,
                                    check=True).stdout.strip() for name, ref in (("before", args.before),
                                                                                  ("after", args.after))}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        trees = {name: worktree(commit, tmp / name) for name, commit in commits.items()}
        try:
            uri = f"sqlite:///{tmp / 'mlflow.db'}"
            began = time.perf_counter()
            run(trees["after"], ["-c", STORE, uri, str(ARMS), str(SEEDS), str(EPOCHS)])
            print(f"logged {RUNS} runs in {time.perf_counter() - began:.0f} s", flush=True)
            rounds: dict[str, list[dict]] = {"before": [], "after": []}
            for r in range(args.rounds):
                for name in (("before", "after") if r % 2 == 0 else ("after", "before")):
                    rounds[name].append(measure(trees[name], tmp, uri))
                    print(f"round {r + 1} {name}: {rounds[name][-1]}", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    keys = [k for k in rounds["after"][0] if k.endswith("_seconds")]
    medians = {name: {k: statistics.median(r[k] for r in rows) for k in keys} for name, rows in rounds.items()}
    imports = {name: {k: rows[-1][k] for k in rows[-1] if k.endswith("_imports")} for name, rows in rounds.items()}
    result = {"commits": commits, "rounds": args.rounds, "cpus": os.cpu_count(), "medians": medians,
              "imports": imports, "raw": rounds}
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    lines = [f"# The light core, side by side: {commits['before']} (before) and {commits['after']} (after)", "",
             f"{args.rounds} rounds, alternating the order, on {os.cpu_count()} cores; medians.", "",
             "| | before | after | after / before | target |", "|---|---|---|---|---|"]
    targets = {"plan_cold_seconds": 5.0, "report_seconds": 5.0}
    for k in keys:
        b, a = medians["before"][k], medians["after"][k]
        target = f"<= {targets[k]:.0f} s: {met(a <= targets[k])}" if k in targets else ""
        lines.append(f"| {k.removesuffix('_seconds').replace('_', ' ')} (s) | {b:.2f} | {a:.2f} | {a / b:.2f} | {target} |")
    for k in imports["after"]:
        command = k.removesuffix("_imports").replace("_", " --")
        lines.append(f"| `ablate {command}` imports | {imports['before'][k]} | {imports['after'][k]} | | "
                     f"none: {met(imports['after'][k] == 'none')} |")
    lines += ["", f"The report reads one store of {RUNS} runs ({ARMS} arms x {SEEDS} seeds, {EPOCHS} epochs each)."]
    publish("light_core", result, lines)


if __name__ == "__main__":
    main()
