"""What the report tests share: studies logged to a real MLflow store as `ablate run` logs them (one of
known effects, one cut short), and a report's arms made by hand, with no store at all."""

import yaml

from ablation import tracking
from ablation.core import Study, StudySpec
from ablation.core.emotions import EMOTIONS
from ablation.report.model import Arm, StudyReport
from ablation.tracking import TrialRecord

# Two seeds per configuration: layer4 is clearly better than vanilla, layer1 is within the noise,
# and layer2's second seed diverged.
KNOWN = {
    "none": {0: 0.70, 1: 0.74},
    "layer4": {0: 0.80, 1: 0.83},
    "layer1": {0: 0.69, 1: 0.76},
    "layer2": {0: 0.72},
}

PLANNED = ["none", "layer4", "layer2", "layer1"]


def open_trial(uri: str, experiment_id: str, parent_run_id: str, *, name: str, trial_id: str,
               params: dict) -> tracking.TrackedRun:
    """A trial's run with its params logged, as a started trial has them (a trial logs its params when
    it starts on its worker, so a run only opened has none yet)."""
    run = tracking.open_trial(uri, experiment_id, parent_run_id, name=name, trial_id=trial_id, params=params).run
    run.log_params(params)
    return run


def log_known_study(uri: str, spec_yaml: str = "name: known\n") -> None:
    experiment_id, parent = tracking.open_study(
        uri, "known", params={"search.seeds": [0, 1], "trials": 8}, spec_yaml=spec_yaml)
    parent.set_tags({"ablate.axes": "model.placement", "ablate.metric": "val_macro_f1"})
    for placement, by_seed in KNOWN.items():
        for seed in (0, 1):
            run = open_trial(uri, experiment_id, parent.run_id, name=f"placement={placement},seed={seed}",
                             trial_id=f"{placement}-{seed}", params={
                                 "arm": f"placement={placement}", "model.placement": placement,
                                 "model.attention": "identity_cbam", "seed": seed})
            if seed not in by_seed:
                run.set_tags({"ablate.failure": "divergence"})
                run.finish("FAILED")
                continue
            value = by_seed[seed]
            run.log_metrics({"params_total": 1e6 + 1e5 * len(placement), "params_added": 1e5 * len(placement),
                             "macs": 2e8 + 1e6 * len(placement), "latency_ms": 1.5})
            for epoch in (1, 2):
                run.log_metrics({"val_macro_f1": value - 0.1 / epoch}, step=epoch)
            run.log_metrics({"test_accuracy": value + 0.01, "test_macro_f1": value,
                             **{f"test_f1_{c}": value + 0.01 * i for i, c in enumerate(EMOTIONS)}})
            run.finish("FINISHED")
    parent.finish("FINISHED")


def log_interrupted_study(uri: str, finished: dict[str, dict[int, float]], killed: set[tuple[str, int]] = frozenset(),
                          name: str = "interrupted") -> StudySpec:
    """A grid study logged as `ablate run` logs it, cut short: only the trials in `finished` (placement ->
    seed -> test macro-F1) and `killed` ever started."""
    spec = StudySpec.model_validate({"name": name, "search": {"space": {"model.placement": PLANNED},
                                                              "seeds": [0, 1]}})
    trials = Study.from_spec(spec).trials
    experiment_id, parent = tracking.open_study(
        uri, name, params=spec.params() | {"search.seeds": spec.search.seeds, "trials": len(trials)},
        spec_yaml=yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    parent.set_tags({"ablate.axes": "model.placement", "ablate.design": "grid", "ablate.metric": "val_macro_f1"})
    for trial in trials:
        placement = trial.spec.model.placement
        value = finished.get(placement, {}).get(trial.seed)
        if value is None and (placement, trial.seed) not in killed:
            continue  # never started
        run = open_trial(uri, experiment_id, parent.run_id, name=trial.name, trial_id=trial.id,
                                  params=trial.params())
        if value is None:
            run.finish("KILLED")
            continue
        run.log_metrics({"val_macro_f1": value}, step=1)
        # The worker's high-water mark, as the trainable logs it: 600 MB plus 100 MB per trial logged.
        run.log_metrics({"test_accuracy": value + 0.01, "test_macro_f1": value,
                         "worker_peak_rss_mb": 600.0 + 100 * len(run.client.search_runs([experiment_id]))})
        run.finish("FINISHED")
    parent.finish("KILLED")
    return spec


def made_arm(name: str, scores: dict[str, dict[int, float]], costs: dict[str, float] | None = None,
             levels: dict[str, str] | None = None) -> Arm:
    """An arm as the report sees it, with a finished trial per seed its scores name."""
    arm = Arm(name, levels or {"model.placement": name}, scores=scores, costs=costs or {})
    seeds = sorted({s for by_seed in scores.values() for s in by_seed})
    arm.finished = [TrialRecord(f"{name}-{s}", f"{name},{s}", "FINISHED", {"seed": str(s)}, {}) for s in seeds]
    return arm


def made_report(*arms: Arm, **kw) -> StudyReport:
    return StudyReport("unit", "val_macro_f1", {a.name: a for a in arms}, None, None, {}, {}, {}, **kw)
