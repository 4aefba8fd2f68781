"""Before Ray starts: whether the trials that will run at once fit in this machine's memory (said, with
the concurrency that fits, rather than found out when Ray's memory monitor kills a worker); and the
memory each trial asks a cluster's Ray for, so that Ray schedules trials by memory, not by CPUs alone.

A trial's memory is the largest peak the study's trials of its arm recorded (`worker_peak_rss_mb`,
a re-run or a resume), else `core.memory`'s estimate from its model and batch.
"""

from __future__ import annotations

import os

from ablation import tracking
from ablation.accounting import static_costs
from ablation.core import Study
from ablation.core.memory import MemoryFit, available_mb, trial_memory_mb
from ablation.data import classes_of


def trial_memory(study: Study, uri: str, found: tracking.StudyRecord | None) -> tuple[float, bool]:
    """The memory, in MB, the study's largest trial needs, and whether a recorded peak says so (`found`: the
    study's parent run, if it ran before)."""
    peaks: dict[str, float] = {}
    for record in tracking.study_trials(uri, found.experiment_id, found.run.run_id) if found else ():
        if tracking.PEAK_RSS_MB in record.metrics:
            arm = record.params.get("arm", "")
            peaks[arm] = max(peaks.get(arm, 0.0), record.metrics[tracking.PEAK_RSS_MB])
    largest, measured = 0.0, True
    for arm, trial in {t.arm: t for t in study.trials}.items():
        if arm in peaks:
            need = peaks[arm]
        else:
            s = trial.spec
            params = static_costs(s.model, num_classes=len(classes_of(s.data)), image_size=s.data.image_size)
            need = trial_memory_mb(s.model.arch, params["params_total"], s.data.image_size, s.train.batch_size)
        if need > largest:
            largest, measured = need, arm in peaks
    return largest, measured


def check_memory(study: Study, uri: str, found: tracking.StudyRecord | None, console) -> float:
    """Say, before a private Ray starts, whether the trials run at once fit in this machine's memory, and
    if not, the `resources.cpu` that fits; returns a trial's memory in MB."""
    need, measured = trial_memory(study, uri, found)
    spec = study.spec
    cpus = os.cpu_count() or 1
    at_once = max(1, min(len(study.trials), int(cpus // spec.resources.cpu)))
    fit = MemoryFit(need, measured, at_once, available_mb())
    if not fit.fits:
        from rich.markup import escape

        console.print(f"[yellow]{escape(fit.describe(cpus, spec.resources.cpu))}[/yellow]", highlight=False)
    return need


def memory_to_ask(study: Study, uri: str, found: tracking.StudyRecord | None, console, *, cluster: bool) -> float:
    """What each trial asks Ray for, in MB: on a cluster its memory, so that Ray places trials by it; on this
    machine 0 (its CPUs decide), once `check_memory` has said whether the trials at once fit."""
    if cluster:
        return trial_memory(study, uri, found)[0]
    check_memory(study, uri, found, console)
    return 0.0
