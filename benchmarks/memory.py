"""A trial worker's peak memory, measured, beside what `ablation.core.memory` estimates for it.

Each configuration runs as a one-trial study (`ablate run`, Identity-CBAM at layer4, one epoch, one
core) in its own process against a fresh SQLite store, so each trial has a fresh worker; its peak is
the `worker_peak_rss_mb` the trial logged (the kernel's high-water mark of the worker's process).
Printed per configuration: measured, estimated, and their ratio; and the worst ratio, which
`core.memory.ESTIMATE_ERROR` must cover.

    .venv/bin/python benchmarks/memory.py
    .venv/bin/python benchmarks/memory.py --estimate-only   # the recorded measurements, estimated again

Writes benchmarks/results/memory.{json,md}.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from results_file import RESULTS, publish  # benchmarks/, the script's own folder

BIN = Path(sys.executable).parent
# (arch, image size, batch size): the tiny trial of benchmarks/scale.py, then larger inputs and models.
CONFIGS = [("resnet18", 16, 16), ("resnet18", 32, 16), ("resnet18", 64, 32), ("resnet18", 112, 16),
           ("resnet34", 64, 16), ("resnet50", 32, 16), ("resnet50", 64, 32)]


def measure(arch: str, size: int, batch: int, tmp: Path) -> dict:
    from mlflow.tracking import MlflowClient

    name = f"mem-{arch}-{size}-{batch}"
    spec = {"name": name, "model": {"arch": arch},
            "data": {"image_size": size, "train_per_class": max(2, 2 * batch // 6), "val_per_class": 2,
                     "test_per_class": 2},
            "train": {"epochs": 1, "batch_size": batch}, "search": {"space": {"model.placement": ["layer4"]}},
            "resources": {"cpu": 1}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    uri = f"sqlite:///{tmp / name / 'mlflow.db'}"
    done = subprocess.run([str(BIN / "ablate"), "run", str(path), "--tracking-uri", uri, "--storage",
                           str(tmp / name / "runs")], capture_output=True, text=True, cwd=tmp)
    if done.returncode:
        raise SystemExit(f"ablate run {name} failed:\n{done.stderr[-3000:]}")
    client = MlflowClient(uri)
    [run] = [r for r in client.search_runs([client.get_experiment_by_name(name).experiment_id])
             if r.data.tags.get("ablate.kind") == "trial"]
    return {"arch": arch, "image_size": size, "batch_size": batch,
            "params": int(run.data.metrics["params_total"]), "measured_mb": run.data.metrics["worker_peak_rss_mb"]}


def estimate(row: dict) -> dict:
    from ablation.core.memory import trial_memory_mb

    estimated = trial_memory_mb(row["arch"], row["params"], row["image_size"], row["batch_size"])
    return row | {"estimated_mb": estimated, "ratio": estimated / row["measured_mb"]}


def main() -> None:
    from ablation.core.memory import ESTIMATE_ERROR

    if "--estimate-only" in sys.argv:  # after changing the constants, without measuring again
        rows = [estimate(row) for row in json.loads((RESULTS / "memory.json").read_text())["rows"]]
    else:
        rows = []
        with tempfile.TemporaryDirectory() as folder:
            for arch, size, batch in CONFIGS:
                rows.append(row := estimate(measure(arch, size, batch, Path(folder))))
                print(f"  {arch} {size} px, batch {batch}: {row['measured_mb']:,.0f} MB measured, "
                      f"{row['estimated_mb']:,.0f} MB estimated", flush=True)
    worst = max(abs(r["ratio"] - 1) for r in rows)
    lines = ["# A trial worker's peak memory: measured and estimated", "",
             "| model | image | batch | measured | estimated | estimated / measured |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['arch']} | {r['image_size']} px | {r['batch_size']} | {r['measured_mb']:,.0f} MB | "
              f"{r['estimated_mb']:,.0f} MB | {r['ratio']:.2f} |" for r in rows]
    lines += ["", f"Worst error: {worst:.0%} (the estimate is said to be within {ESTIMATE_ERROR:.0%}: "
                  f"{'holds' if worst <= ESTIMATE_ERROR else 'DOES NOT HOLD'})."]
    publish("memory", {"rows": rows, "worst_error": worst, "estimate_error": ESTIMATE_ERROR}, lines)
    if worst > ESTIMATE_ERROR:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
