"""What `ablate` spends between its last line and the prompt: the app run bare (`app()`, the console
script before) against the console script (`command()`, which freezes the objects alive at the end out
of Python's final garbage collection), interleaved on one machine.

Each round runs, in both ways, a fresh tiny study (`ablate run`, two one-epoch trials of a ResNet-18 at
32 px) and then `ablate report` on it. A launcher wraps the app so the process notes the moment it
returned; the exit is the time from then to the process's end, as the parent sees it. Rounds
alternate which way goes first, so drifting load falls on both alike; figures are medians.

    .venv/bin/python benchmarks/exit.py [--rounds 3]

Writes benchmarks/results/exit.{json,md}.
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

import yaml
from results_file import publish

# The app, wrapped to note when it returned; `way` chooses how it is run.
LAUNCHER = """
import sys, time
import ablation.cli.main as cli

app, way = cli.app, sys.argv.pop(1)

def noted():
    try:
        app()
    finally:
        sys.stderr.write(f"RETURNED {time.time()}\\n")
        sys.stderr.flush()

cli.app = noted
cli.command() if way == "command" else noted()
"""

SPEC = {
    "name": "tiny",
    "model": {"arch": "resnet18", "attention": "identity_cbam", "reduction": 16},
    "data": {"dataset": "synthetic", "image_size": 32, "train_per_class": 8, "val_per_class": 4, "test_per_class": 4},
    "train": {"epochs": 1, "batch_size": 16, "lr": 0.01},
    "search": {"method": "grid", "space": {"model.placement": ["none", "layer4"]}, "seeds": [0]},
    "resources": {"cpu": 1, "gpu": 0},
}
WAYS = ("app", "command")


def timed(way: str, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, seconds from the app's return to the process's end) of one `ablate` call."""
    began = time.time()
    done = subprocess.run([sys.executable, "-c", LAUNCHER, way, *args], capture_output=True, text=True, env=env)
    ended = time.time()
    assert done.returncode == 0, done.stdout + done.stderr
    returned = float(next(line for line in done.stderr.splitlines() if line.startswith("RETURNED")).split()[1])
    return ended - began, ended - returned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    figures: dict[str, dict[str, list[float]]] = {w: {"run": [], "run_exit": [], "report": [], "report_exit": []}
                                                  for w in WAYS}
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0"}
    with tempfile.TemporaryDirectory() as scratch:
        spec = Path(scratch) / "tiny.yaml"
        spec.write_text(yaml.safe_dump(SPEC))
        env["ABLATE_CACHE_DIR"] = f"{scratch}/cache"
        for r in range(rounds):
            for way in (WAYS if r % 2 == 0 else WAYS[::-1]):
                folder = Path(scratch) / f"{way}{r}"
                uri = f"sqlite:///{folder / 'mlflow.db'}"
                folder.mkdir()
                for command, args in (("run", ["run", str(spec), "--storage", str(folder / "runs")]),
                                      ("report", ["report", "tiny", "--out", str(folder / "report")])):
                    wall, exit_ = timed(way, [*args, "--tracking-uri", uri], env)
                    figures[way][command].append(wall)
                    figures[way][f"{command}_exit"].append(exit_)
                    print(f"round {r + 1} {way:8} {command:7} {wall:6.1f} s, of which the exit {exit_:4.2f} s",
                          flush=True)
    median = {w: {k: statistics.median(v) for k, v in f.items()} for w, f in figures.items()}
    lines = [f"`ablate` with the app run bare (`app()`) and as its console script runs it (`command()`, "
             f"gc.freeze() on the way out), {rounds} interleaved rounds, medians:", "",
             "| call | app(): wall | app(): exit | command(): wall | command(): exit | exit, command/app |",
             "|---|---|---|---|---|---|"]
    for command in ("run", "report"):
        a, c = median["app"], median["command"]
        lines.append(f"| `ablate {command}` (tiny study) | {a[command]:.1f} s | {a[f'{command}_exit']:.2f} s | "
                     f"{c[command]:.1f} s | {c[f'{command}_exit']:.2f} s | "
                     f"{c[f'{command}_exit'] / a[f'{command}_exit']:.2f} |")
    publish("exit", {"rounds": rounds, "seconds": figures, "medians": median}, lines)


if __name__ == "__main__":
    main()
