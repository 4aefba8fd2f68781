"""What tracking costs a trial on a SQLite store: each MLflow round trip it makes, timed alone, with the
store's default journal and with SQLite's write-ahead log; and what the trial's own thread spends on its
start, its epoch's write, stopping its system metrics and its run's end, for a trial shorter than the delay
before its start is written (written with its epoch, no sampling) and one longer (written by a timer's
thread, one sample); with ablate's monitor and MLflow 3.17's own stopped alone beside them.

    python benchmarks/mlflow_overhead.py [--trials 20]

Each trial here is the tracking side of one (`tracking.open_trial`, `TrialRun.start`, a wait standing in
for training, `log_epoch`, `stop_system_metrics`, `finish`), so the figures are the tracking's own, not the
training's. Round trips are timed on trials without the wait, in a store that holds the earlier ones.
Writes results/mlflow_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

from mlflow.tracking import MlflowClient
from results_file import publish

from ablation import tracking


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(values, n=4)
    return q1, median, q3


TRIALS = {0.2: "a 0.2 s trial (its start written with its epoch, no sample)",
          1.5: "a 1.5 s trial (its start written by the timer's thread, one sample)"}
EPOCH = {f"m{k}": 0.5 for k in range(12)}  # an epoch's metrics, as many as a trial logs
# A trial's start, as many of each as a trial writes: params, where it runs, its model's costs.
START = {"params": {f"p{k}": k for k in range(25)}, "tags": {f"ablate.t{k}": k for k in range(12)},
         "metrics": {f"cost{k}": k for k in range(5)}}


def _timed(times: dict[str, float], name: str, call):
    """`call()`, with its time in ms kept as `times[name]`; returns what it returned."""
    began = time.perf_counter()
    out = call()
    times[name] = 1e3 * (time.perf_counter() - began)
    return out


def _trial(uri: str, experiment_id: str, parent_run_id: str, i: int, *, seconds: float) -> dict[str, float]:
    """The trial's own thread's time on each part of its tracking, in ms."""
    opened = tracking.open_trial(uri, experiment_id, parent_run_id, name=f"t{i}", trial_id=f"{seconds}-{i}",
                                 params={"arm": "a", "seed": i})
    times: dict[str, float] = {}
    timed = partial(_timed, times)
    timed("start", lambda: opened.start(node_id="node", pid=1, device="cpu", gpu_ids=[], resumed_from_epoch=0,
                                        costs={"params_total": 1.0, "macs": 2.0}))
    time.sleep(seconds)  # the training, in which a longer trial's start and first sample are written
    timed("epoch", lambda: opened.log_epoch(EPOCH, 1, {tracking.Tag.MODEL: tracking.ModelKept.NOT_KEPT}))
    timed("stop", opened.stop_system_metrics)
    timed("end", opened.finish)
    times["samples"] = len(MlflowClient(uri).get_metric_history(opened.run.run_id,
                                                                "system/cpu_utilization_percentage"))
    return times


ROUND_TRIPS = {  # in a trial's order: what each is for
    "lease read": "the study's lease, before the run opens",
    "earlier attempts": "a retry continues its run: one search",
    "run created": "the child run, with its parent, kind and trial id",
    "start write": "params, where it runs (12 tags) and its model's costs, in one write",
    "start with its epoch": "the same and an epoch's write, in one (a trial shorter than the start's delay)",
    "weights kept so far": "the arm's k best seeds: one search, at the last epoch",
    "epoch write": "an epoch's 12 metrics, and the last one's weights tag",
    "run ended": "its status",
    "sample's run read": "the system metrics' check that the run still runs, each sample",
}


def _round_trips(uri: str, experiment_id: str, parent_run_id: str, i: int) -> dict[str, float]:
    """One trial's MLflow round trips, each timed alone, in ms (the calls `trainable._trial` makes)."""
    from ablation.tracking.trial_run import _trial_runs
    from ablation.tracking.store import connect

    client, times = connect(uri), {}
    timed = partial(_timed, times)

    timed("lease read", lambda: client.get_experiment(experiment_id))
    timed("earlier attempts", lambda: _trial_runs(client, experiment_id, parent_run_id, f"rt{i}"))
    run = timed("run created", lambda: client.create_run(experiment_id, run_name=f"rt{i}", tags={
        tracking.Tag.PARENT: parent_run_id, tracking.Tag.KIND: tracking.Kind.TRIAL, tracking.Tag.TRIAL_ID: f"rt{i}"}))
    written = tracking.TrackedRun(client, run.info.run_id)
    timed("start write", lambda: written.log(**START))
    timed("weights kept so far", lambda: tracking.kept_models(uri, experiment_id, parent_run_id, "a", "val_acc"))
    timed("epoch write", lambda: written.log(metrics=EPOCH, tags={tracking.Tag.MODEL: "kept"}, step=1))
    short = tracking.TrackedRun(client, client.create_run(experiment_id, run_name=f"rt{i}-short").info.run_id)
    timed("start with its epoch", lambda: short.log(params=START["params"], tags=START["tags"] | {"m": "kept"},
                                                    metrics=START["metrics"] | EPOCH, step=1))
    timed("run ended", written.finish)
    timed("sample's run read", lambda: client.get_run(run.info.run_id))
    return times


def _write_ahead_log() -> None:
    """SQLite's write-ahead log, with a sync only at checkpoints, on every connection opened from now on."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragmas(connection, _record) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def _ours(uri: str, run_id: str) -> tuple[float, float]:
    """Starting and stopping ablate's monitor alone, in ms."""
    t0 = time.perf_counter()
    monitor = tracking.watch_system(uri, run_id)
    t1 = time.perf_counter()
    time.sleep(0.3)
    t2 = time.perf_counter()
    monitor.finish()
    return 1e3 * (t1 - t0), 1e3 * (time.perf_counter() - t2)


def _stock_stop(uri: str, run_id: str) -> float:
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=10, tracking_uri=uri)
    monitor.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    monitor.finish()
    return 1e3 * (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        experiment_id, parent = tracking.open_study(uri, "overhead", params={}, spec_yaml="name: overhead\n")
        rows = {seconds: [] for seconds in TRIALS}
        for i in range(args.trials):  # interleaved, so both see the same machine
            for seconds in TRIALS:
                rows[seconds].append(_trial(uri, experiment_id, parent.run_id, i, seconds=seconds))
        ours = [_ours(uri, parent.run_id) for _ in range(args.trials)]
        stock = [_stock_stop(uri, parent.run_id) for _ in range(args.trials)]
        trips = {"rollback journal": [_round_trips(uri, experiment_id, parent.run_id, i) for i in range(50)]}
    _write_ahead_log()
    with tempfile.TemporaryDirectory() as folder:  # a new store: its engine is made with the pragmas
        uri = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        experiment_id, parent = tracking.open_study(uri, "overhead", params={}, spec_yaml="name: overhead\n")
        trips["write-ahead log"] = [_round_trips(uri, experiment_id, parent.run_id, i) for i in range(50)]
    result = {"trials": args.trials, "stock_mlflow_stop_ms": _quartiles(stock),
              "monitor_start_ms": _quartiles([start for start, _ in ours]),
              "monitor_stop_ms": _quartiles([stop for _, stop in ours])}
    lines = [f"A trial's own thread's time on its tracking, median (IQR) over {args.trials} trials, SQLite store, ms:",
             "", "| | start | epoch's write | stop sampling | run's end | samples |", "|---|---|---|---|---|---|"]
    for seconds, label in TRIALS.items():
        figures = {key: _quartiles([r[key] for r in rows[seconds]]) for key in ("start", "epoch", "stop", "end")}
        result[f"trial_{seconds}s"] = figures | {"samples": statistics.median(r["samples"] for r in rows[seconds])}
        lines.append(f"| {label} | " + " | ".join(f"{m:.1f} ({q1:.1f}-{q3:.1f})" for q1, m, q3 in figures.values())
                     + f" | {result[f'trial_{seconds}s']['samples']:.0f} |")
    (q1, start, q3), (r1, stop, r3) = result["monitor_start_ms"], result["monitor_stop_ms"]
    lines += ["", f"ablate's monitor alone: start {start:.1f} ms ({q1:.1f}-{q3:.1f}), stop {stop:.1f} ms "
                  f"({r1:.1f}-{r3:.1f})."]
    q1, median, q3 = result["stock_mlflow_stop_ms"]
    lines += ["", f"MLflow 3.17's own SystemMetricsMonitor.finish(): {median:.1f} ms ({q1:.1f}-{q3:.1f}), "
                  "a read of the run after its wait, and the unfinished interval's samples dropped."]
    result["round_trips_ms"] = {journal: {name: statistics.median(t[name] for t in rows_[5:]) for name in ROUND_TRIPS}
                                for journal, rows_ in trips.items()}
    lines += ["", "A trial's MLflow round trips, each timed alone, median of 45 (after 5), ms:", "",
              "| round trip | what for | default journal | write-ahead log |", "|---|---|---|---|"]
    for name, what in ROUND_TRIPS.items():
        lines.append(f"| {name} | {what} | " + " | ".join(f"{result['round_trips_ms'][j][name]:.1f}" for j in trips)
                     + " |")
    per_trial = [name for name in ROUND_TRIPS if name not in ("start with its epoch", "sample's run read")]
    lines.append("| a trial's, in all | the lease, earlier attempts, run, start, weights, epoch, end | " + " | ".join(
        f"{sum(result['round_trips_ms'][j][n] for n in per_trial):.1f}" for j in trips) + " |")
    short = [n for n in per_trial if n not in ("start write", "epoch write")] + ["start with its epoch"]
    lines.append("| a short trial's | the same, its start written with its epoch | " + " | ".join(
        f"{sum(result['round_trips_ms'][j][n] for n in short):.1f}" for j in trips) + " |")
    publish("mlflow_overhead", result, lines)


if __name__ == "__main__":
    main()
