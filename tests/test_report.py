"""The ranked table `ablate run` prints, from trial records as MLflow returns them."""

import pytest

from ablation.report import rank
from ablation.tracking import TrialRecord


def record(placement: str, seed: int, status: str = "FINISHED", value: float | None = None) -> TrialRecord:
    metrics = {"params_total": 100.0}
    if value is not None:
        metrics |= {"best_val_macro_f1": value, "test_accuracy": value - 0.1, "test_macro_f1": value - 0.2}
    return TrialRecord(f"{placement}-{seed}", f"{placement},{seed}", status,
                       {"model.placement": placement, "seed": str(seed)}, metrics)


def test_configurations_are_ranked_by_their_mean_over_seeds_and_lost_trials_are_counted():
    records = [
        record("none", 0, value=0.70), record("none", 1, value=0.80),
        record("all", 0, value=0.90), record("all", 1, "FAILED"),
        record("layer1", 0, "KILLED"),
    ]
    table = rank(records, ["model.placement"], "val_macro_f1", "max")
    assert [s.config["model.placement"] for s in table] == ["all", "none", "layer1"]
    best, second, last = table
    assert (best.seeds, best.failed, best.killed, best.std) == (1, 1, 0, None)
    assert second.mean == pytest.approx(0.75) and second.std == pytest.approx(0.0707, abs=1e-4)
    assert second.test_accuracy == pytest.approx(0.65)
    assert (last.seeds, last.killed, last.mean) == (0, 1, None)  # nothing finished: ranked last


def test_a_metric_to_minimise_ranks_the_lowest_first():
    records = [record("none", 0, value=0.3), record("all", 0, value=0.2)]
    assert [s.config["model.placement"] for s in rank(records, ["model.placement"], "val_macro_f1", "min")] == [
        "all", "none"]
