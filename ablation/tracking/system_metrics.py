"""System metrics of a trial's run: MLflow's own monitor (its CPU, memory, disk, network and NVIDIA GPU
samplers and its `system/` names), for a run that is not MLflow's active one, through a client bound
to the study's store."""

from __future__ import annotations

from functools import lru_cache

from ablation.core.names import Status

SYSTEM_INTERVAL = 10.0  # seconds between samples; MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it
FIRST_SAMPLE = 1.0  # seconds into a trial of its first sample, so that a trial shorter than an interval has one


def first_sample() -> float:
    """Seconds into a trial of its first sample: FIRST_SAMPLE, or one sampling interval if that is shorter
    (MLflow's MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL, if set, else SYSTEM_INTERVAL)."""
    from mlflow.environment_variables import MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL

    return min(FIRST_SAMPLE, MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL.get() or SYSTEM_INTERVAL)


@lru_cache(maxsize=1)
def _system_monitor_class():
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    class Monitor(SystemMetricsMonitor):
        """MLflow's monitor (its CPU, memory, disk, network and NVIDIA GPU samplers, its `system/` names and
        its batched logging) with its loop reordered, for trials: the first sample `first_sample` seconds
        in, so a trial shorter than an interval has one; each sample taken at the end of its interval, so the
        CPU share it reports is that interval's (MLflow's takes it at the start, so its first reports the
        time before the run); and stopping it waits for nothing. MLflow 3.17's loop reads the run after
        every wait, so a stop waits for that read (~10 ms on a SQLite store, measured); both drop the
        samples of the unfinished interval, which would cost the trial a write at its end."""

        def monitor(self) -> None:
            from mlflow.tracking.client import MlflowClient

            self.collect_metrics()  # primes psutil's CPU counter: the first sample covers the run from here
            for monitor in self.monitors:
                monitor.clear_metrics()
            wait, taken = min(self.first_sample, self.sampling_interval), 0
            while not self._shutdown_event.wait(wait):
                try:  # as MLflow's loop: stop if the run was ended elsewhere (its trial killed, say)
                    if MlflowClient(self._tracking_uri).get_run(self._run_id).info.status != Status.RUNNING:
                        return
                    self.collect_metrics()
                    taken += 1
                    if taken == 1 or taken % self.samples_before_logging == 0:
                        self.publish_metrics(self.aggregate_metrics())
                except Exception:  # as MLflow's: a store that refuses the samples ends the sampling, not the trial
                    return
                wait = self.sampling_interval

    return Monitor


def watch_system(uri: str, run_id: str, *, resume: bool = False, first_sample: float | None = None):
    """Start sampling this machine's system metrics into run `run_id`, in a thread: `first_sample` seconds
    in (FIRST_SAMPLE if None), then every SYSTEM_INTERVAL seconds, each sample written as MLflow's
    `system/...` metrics at the next step, through a client bound to `uri` (never MLflow's default store:
    in a Ray worker, that is Ray's temp directory). `resume` continues the steps of an earlier attempt's samples (one read).
    Returns the monitor; its `finish()` stops it at once and writes nothing."""
    import logging

    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # "Started monitoring ...", per trial
    monitor = _system_monitor_class()(run_id, sampling_interval=SYSTEM_INTERVAL, resume_logging=resume,
                                      tracking_uri=uri)
    monitor.first_sample = FIRST_SAMPLE if first_sample is None else first_sample
    monitor.start()
    return monitor
