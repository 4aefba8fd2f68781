"""What `ablate` costs per trial, at start-up and in storage as a study grows, beside Ray Tune's own
no-op trials measured in the same run.

Studies of N tiny trials (ResNet-18, Identity-CBAM, 16 px, one image per class, one epoch, one core
per trial so two run at once on two cores), over 10 arms, N = 10 and 100 (and 1,000 with
--thousand), each run as `ablate run` in its own process against a fresh SQLite store. Printed:
- start-up: from launching `ablate run` to the first trial's MLflow run, with the data generated and each
  arm's model counted beforehand (once per dataset and per model, cached: a study's first run pays them);
- per-trial overhead beyond `engine.fit`: each worker's gap between the starts of consecutive trial
  runs, minus the first one's `engine.fit` (its set-up, epoch and test times as it logged them, measured
  in place under whatever load there was) (median and p95), and its ratio to Ray Tune's no-op trial
  cost (the same gaps, measured for a Tuner of N function trials that only report); beside it,
  `engine.fit` timed alone, two fitting at once, and the set-up the trials logged;
- that overhead itemised, from the times MLflow recorded: between one run's end and the next one's
  start on the worker (Ray Tune handing it the next trial, and the trial reading its checkpoint and the
  lease, and asking the study's relay whether its run is new), opening the run (creating it, and gathering
  where it runs and its costs), in the run beyond `engine.fit`'s set-up, epoch and test (asking the relay
  which weights its arm kept, and keeping them for a trial that does), and closing it (the last epoch's write, which carries
  the start's for a trial shorter than half a second, Tune taking its last report, the checkpoint store
  closed, freed memory given back, the run's end);
- the overhead at 1,000 trials over that at 100;
- the driver's peak RSS, a trial worker's peak RSS (as the trial logged it: in each worker's first trial, and
  over all, as Tune reuses workers) beside a no-op Tune worker's, and artifact bytes per trial;
- `ablate report` on the largest study, and `ablate plan search_spaces/placement.yaml`.

    .venv/bin/python benchmarks/scale.py [--thousand] [--sizes 10 100]

Writes benchmarks/results/scale.{json,md}.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from results_file import publish  # benchmarks/, the script's own folder

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ARMS = {"model.placement": ["layer3", "layer4"], "model.reduction": [1, 2, 4, 8, 16]}  # 10 arms


def tiny_spec(name: str, trials: int) -> dict:
    return {
        "name": name,
        "model": {"arch": "resnet18", "attention": "identity_cbam", "placement": "layer3"},
        "data": {"image_size": 16, "train_per_class": 1, "val_per_class": 1, "test_per_class": 1},
        "train": {"epochs": 1, "batch_size": 8},
        "search": {"space": ARMS, "seeds": list(range(trials // 10))},
        "resources": {"cpu": 1},
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def worker_gaps(starts: dict[str, list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """(seconds between consecutive trial starts on each worker, the first trial's own work)."""
    gaps = []
    for runs in starts.values():
        runs = sorted(runs)
        gaps += [(b[0] - a[0], a[1]) for a, b in zip(runs, runs[1:])]
    return gaps


def run_times(client, run) -> tuple[float, float, float, float, float, bool]:
    """A trial run's start, its costs' time (when the trial gathered its start, written then or later), its
    last epoch's write, its end (s since the epoch), the set-up, epoch and test time it logged, and whether it
    kept its weights."""
    def written(key: str) -> float:
        return max(m.timestamp for m in client.get_metric_history(run.info.run_id, key)) / 1000

    logged = sum(run.data.metrics.get(key, 0.0) for key in ("epoch_time_s", "test_time_s", "setup_time_s"))
    return (run.info.start_time / 1000, written("params_total"), written("train_loss"), run.info.end_time / 1000,
            logged, run.data.tags.get("ablate.model") in ("kept", "superseded"))


def overhead_parts(times: dict[str, list[tuple]]) -> dict[str, list[float]]:
    """Each consecutive pair of trials on a worker, the first's overhead in parts (their sum is its gap
    less the set-up, epoch and test time it logged)."""
    parts: dict[str, list[float]] = {"between": [], "opening": [], "in_run": [], "in_run_kept": [], "closing": []}
    for runs in times.values():
        runs = sorted(runs)
        for (start, costs, epoch, end, work, kept), following in zip(runs, runs[1:]):
            parts["between"].append(following[0] - end)
            parts["opening"].append(costs - start)
            parts["in_run_kept" if kept else "in_run"].append(epoch - costs - work)
            parts["closing"].append(end - epoch)
    return parts


class PeakRss:
    """The peak resident memory of a process, read from the kernel's high-water mark while it runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kb = pid, 0
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while True:
            try:
                text = status.read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            time.sleep(0.2)

    @property
    def gib(self) -> float:
        return self.peak_kb / 2**20


def _fit_loop(spec_path: str, repeats: int, out) -> None:
    import torch

    from ablation import engine
    from ablation.core import load_study

    torch.set_num_threads(1)
    trial = load_study(Path(spec_path)).trials[0]
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        final = engine.fit(trial.spec, trial.seed, on_epoch=lambda m, c: None)
        times.append((time.perf_counter() - began, final["epoch_time_s"] + final["test_time_s"]))
    out.put(times[1:])  # the first warms up the allocator


def fit_setup_seconds(spec_path: Path, repeats: int = 12) -> tuple[float, float]:
    """The median `engine.fit` of one tiny trial, two fitting at once on one thread each as in a study,
    and the part of it that is set-up (data, model, optimizer) rather than the epoch and test it logs."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_fit_loop, args=(str(spec_path), repeats, out)) for _ in range(2)]
    for p in procs:
        p.start()
    times = out.get() + out.get()
    for p in procs:
        p.join()
    return statistics.median(t for t, _ in times), statistics.median(t - logged for t, logged in times)


def count_models(spec_path: Path) -> float:
    """Count each arm's model as a study's first run does before Ray starts (`memory_fit.trial_memory`, with
    no earlier run to read), cached on disk per model after; returns the seconds it took. Done before the
    timed studies, so that each size times the start-up of a study whose arms were counted, not the first
    one's counting."""
    import ablation
    from ablation.driver.memory_fit import trial_memory

    began = time.perf_counter()
    trial_memory(ablation.load_study(spec_path), uri="", found=None)
    return time.perf_counter() - began


def run_ablate(spec_path: Path, tmp: Path, name: str) -> dict:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp / name / 'mlflow.db'}"
    (tmp / name).mkdir()
    launched = time.time()
    proc = subprocess.Popen([str(BIN / "ablate"), "run", str(spec_path), "--tracking-uri", uri,
                             "--storage", str(tmp / name / "runs")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=tmp)
    rss = PeakRss(proc.pid)
    _, err = proc.communicate()
    wall = time.time() - launched
    if proc.returncode:
        raise SystemExit(f"ablate run {spec_path.name} failed:\n{err[-3000:]}")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(yaml.safe_load(spec_path.read_text())["name"])
    runs = [r for r in client.search_runs([experiment.experiment_id], max_results=50_000)
            if r.data.tags.get("ablate.kind") == "trial"]
    # The high-water mark of the worker a trial ran in, as the trial logged it; with reused actors it
    # covers the trials that worker ran before.
    worker_rss = [r.data.metrics["worker_peak_rss_mb"] for r in runs if "worker_peak_rss_mb" in r.data.metrics]
    times: dict[str, list[tuple]] = {}  # each worker's trials, by their start
    # Each worker's first trial apart: a reused worker's peak rises over its first few trials (glibc's
    # dynamic mmap threshold, docs/benchmarks.md), so the first is what one trial alone needs.
    firsts: dict[str, float] = {}
    for r in sorted(runs, key=lambda r: r.info.start_time):
        times.setdefault(r.data.tags["ablate.pid"], []).append(run_times(client, r))
        if "worker_peak_rss_mb" in r.data.metrics:
            firsts.setdefault(r.data.tags["ablate.pid"], r.data.metrics["worker_peak_rss_mb"])
    starts = {pid: [(t[0], t[4]) for t in sorted(ts)] for pid, ts in times.items()}
    artifacts = sum(f.stat().st_size for f in (tmp / name).rglob("*") if f.is_file() and "artifacts" in f.parts)
    return {"uri": uri, "wall": wall, "trials": len(runs), "rss_gib": rss.gib,
            "startup": min(r.info.start_time for r in runs) / 1000 - launched,
            "gaps": worker_gaps(starts), "parts": overhead_parts(times),
            "setups": [r.data.metrics["setup_time_s"] for r in runs], "artifact_bytes_per_trial": artifacts / len(runs),
            "worker_rss_mb": worker_rss, "first_trial_rss_mb": list(firsts.values())}


NOOP = """
import json, os, resource, sys, time
import ray
from ray import tune
n = int(sys.argv[1])
began = time.time()
ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", configure_logging=False)
starts = {}
rss = []
class Starts(tune.Callback):
    def on_trial_result(self, iteration, trials, trial, result, **info):
        starts.setdefault(str(result["pid"]), []).append(result["began"])
        rss.append(result["rss"] / 1024)
def noop(config):
    tune.report({"began": time.time(), "pid": os.getpid(), "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})
tuner = tune.Tuner(tune.with_resources(noop, {"cpu": 1}), param_space={"i": tune.grid_search(list(range(n)))},
                   tune_config=tune.TuneConfig(reuse_actors=True),
                   run_config=tune.RunConfig(storage_path=sys.argv[2], verbose=0, callbacks=[Starts()]))
tuner.fit()
print(json.dumps({"starts": {pid: [(t, 0.0) for t in v] for pid, v in starts.items()},
                  "startup": min(min(v) for v in starts.values()) - began, "worker_rss_mb": max(rss)}))
"""


def run_noop(trials: int, tmp: Path) -> dict:
    import json

    folder = tmp / f"noop-{trials}"
    launched = time.time()
    proc = subprocess.Popen([sys.executable, "-c", NOOP, str(trials), str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp)
    rss = PeakRss(proc.pid)
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"Ray no-op trials failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    return {"wall": time.time() - launched, "rss_gib": rss.gib, "gaps": worker_gaps(result["starts"]),
            "startup": result["startup"], "worker_rss_mb": result["worker_rss_mb"]}


def timed(command: list[str], cwd: Path) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


PARTS = {"between": "between one run's end and the next one's start (Ray Tune's hand-over, the checkpoint and "
                    "lease reads, the relay's word that its run is new)",
         "opening": "opening the run (creating it; where it runs and its costs, gathered)",
         "in_run": "in the run beyond engine.fit's set-up, epoch and test, not keeping weights",
         "in_run_kept": "the same, keeping its weights",
         "closing": "closing it (the last epoch's write, with the start's for so short a trial; Tune taking the "
                    "last report, freed memory given back, the run's end)"}


def describe_parts(parts: dict[str, float], samples: dict[str, list[float]]) -> str:
    return "; ".join(f"{PARTS[k]} {v:.0f} ({len(samples[k])} trials)" for k, v in parts.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--thousand", action="store_true", help="also run 1,000 trials (about 10 minutes)")
    args = parser.parse_args()
    sizes = sorted(set(args.sizes) | ({1000} if args.thousand else set()))

    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    result: dict = {"cores": os.cpu_count(), "sizes": {}}
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["ABLATE_CACHE_DIR"] = str(tmp / "cache")
        probe = tmp / "probe.yaml"
        probe.write_text(yaml.safe_dump(tiny_spec("probe", 10)))
        fit, setup = fit_setup_seconds(probe)
        result |= {"fit_seconds": fit, "fit_setup_seconds": setup}
        lines.append(f"engine.fit of one tiny trial, two at once on one thread each: median {fit * 1000:.0f} ms, "
                     f"of which set-up {setup * 1000:.0f} ms")
        result["count_models_seconds"] = counted = count_models(probe)  # the same 10 arms as every size's
        lines.append(f"counting the 10 arms' models, which a study's first run of new arms does once before Ray "
                     f"starts (cached on disk after), beforehand: {counted:.1f} s")
        for n in sizes:
            path = tmp / f"scale-{n}.yaml"
            path.write_text(yaml.safe_dump(tiny_spec(f"scale-{n}", n)))
            noop = run_noop(n, tmp)
            study = run_ablate(path, tmp, f"scale-{n}")
            overheads = [gap - work for gap, work in study["gaps"]]  # work: set-up, epoch and test as logged
            row = {
                "trials": study["trials"], "wall_seconds": study["wall"], "startup_seconds": study["startup"],
                "overhead_ms_median": 1000 * statistics.median(overheads),
                "overhead_ms_p95": 1000 * percentile(overheads, 0.95),
                "slot_ms_median": 1000 * statistics.median(g for g, _ in study["gaps"]),
                "noop_ms_median": 1000 * statistics.median(g for g, _ in noop["gaps"]),
                "noop_startup_seconds": noop["startup"], "noop_rss_gib": noop["rss_gib"],
                "driver_rss_gib": study["rss_gib"], "artifact_bytes_per_trial": study["artifact_bytes_per_trial"],
                "worker_rss_mb_median": statistics.median(study["worker_rss_mb"]),
                "worker_rss_mb_max": max(study["worker_rss_mb"]), "noop_worker_rss_mb": noop["worker_rss_mb"],
                "first_trial_rss_mb_median": statistics.median(study["first_trial_rss_mb"]),
            }
            row["overhead_over_noop"] = row["overhead_ms_median"] / row["noop_ms_median"]
            parts = {k: 1000 * statistics.median(v) for k, v in study["parts"].items() if v}
            row["overhead_parts_ms_median"] = parts
            row["setup_ms_median"] = 1000 * statistics.median(study["setups"])
            result["sizes"][n] = row
            lines.append(
                f"{n} trials: {study['wall']:.0f} s in all; start-up to the first trial's run {study['startup']:.1f} s "
                f"(Ray alone {noop['startup']:.1f} s; target <= Ray + 5 s: {met(study['startup'] <= noop['startup'] + 5)}); "
                f"per-trial overhead median {row['overhead_ms_median']:.0f} ms, p95 {row['overhead_ms_p95']:.0f} ms "
                f"(target <= 50 ms: {met(row['overhead_ms_median'] <= 50)}); Ray's no-op trial "
                f"{row['noop_ms_median']:.0f} ms, ratio {row['overhead_over_noop']:.2f} (target <= 2: "
                f"{met(row['overhead_over_noop'] <= 2)}); driver peak RSS {study['rss_gib']:.2f} GiB (Ray's no-op "
                f"driver {noop['rss_gib']:.2f} GiB); a trial's worker at its peak: in its first trial, median "
                f"{row['first_trial_rss_mb_median']:.0f} MB; over all trials median {row['worker_rss_mb_median']:.0f} MB, "
                f"max {row['worker_rss_mb_max']:.0f} MB (target <= 1,000 MB: {met(row['worker_rss_mb_max'] <= 1000)}; "
                f"Ray's no-op worker {noop['worker_rss_mb']:.0f} MB); "
                f"artifacts {row['artifact_bytes_per_trial'] / 1e6:.2f} MB per trial")
            lines.append(f"  its per-trial overhead, medians of each part (ms): {describe_parts(parts, study['parts'])}; "
                         f"engine.fit's set-up as the trials logged it {row['setup_ms_median']:.0f} ms, not overhead")
            largest = study
        if 100 in result["sizes"] and 1000 in result["sizes"]:
            growth = result["sizes"][1000]["overhead_ms_median"] / result["sizes"][100]["overhead_ms_median"]
            result["overhead_1000_over_100"] = growth
            lines.append(f"overhead at 1,000 trials over that at 100: {growth:.2f} (target <= 1.2: {met(growth <= 1.2)})")
        name = f"scale-{max(sizes)}"
        report = timed([str(BIN / "ablate"), "report", name, "--tracking-uri", largest["uri"], "--out",
                        str(tmp / "report")], tmp)
        # The first plan on a machine also times its speed and counts each model; later ones read both back.
        placement = [str(BIN / "ablate"), "plan", str(ROOT / "search_spaces" / "placement.yaml")]
        cold, plan = timed(placement, tmp), timed(placement, tmp)
        result |= {"report_seconds": report, "report_runs": largest["trials"], "plan_seconds": plan,
                   "plan_first_seconds": cold}
        lines.append(f"ablate report on {largest['trials']} runs: {report:.1f} s (target <= 5 s: {met(report <= 5)})")
        lines.append(f"ablate plan search_spaces/placement.yaml: {plan:.1f} s (target <= 5 s: {met(plan <= 5)}); "
                     f"the first on this machine, which also times its speed and counts each of the 16 models: "
                     f"{cold:.1f} s")
    publish("scale", result, lines)


if __name__ == "__main__":
    main()
