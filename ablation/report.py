"""Summaries of a study read back from MLflow (never from Ray's files, so a remote server works too)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass

from .tracking import TrialRecord


@dataclass(frozen=True)
class ConfigSummary:
    """One configuration (a point of the search space) over its seeds."""

    config: dict[str, str]  # axis -> value, as logged
    seeds: int  # finished trials
    failed: int  # trials that raised
    killed: int  # trials an interruption stopped
    mean: float | None  # of the ranking metric's best-epoch value, over finished seeds
    std: float | None
    test_accuracy: float | None
    test_macro_f1: float | None
    params_total: int | None


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def rank(records: list[TrialRecord], axes: list[str], metric: str, mode: str) -> list[ConfigSummary]:
    """Group trials by their axis values and order the groups by the mean best-epoch `metric`."""
    groups: dict[tuple[str, ...], list[TrialRecord]] = defaultdict(list)
    for record in records:
        groups[tuple(record.params.get(axis, "") for axis in axes)].append(record)
    summaries = []
    for key, members in groups.items():
        done = [r for r in members if r.status == "FINISHED" and f"best_{metric}" in r.metrics]
        values = [r.metrics[f"best_{metric}"] for r in done]
        params = [r.metrics["params_total"] for r in members if "params_total" in r.metrics]
        summaries.append(ConfigSummary(
            config=dict(zip(axes, key)),
            seeds=len(done),
            failed=sum(r.status == "FAILED" for r in members),
            killed=sum(r.status == "KILLED" for r in members),
            mean=_mean(values),
            std=statistics.stdev(values) if len(values) > 1 else None,
            test_accuracy=_mean([r.metrics["test_accuracy"] for r in done]),
            test_macro_f1=_mean([r.metrics["test_macro_f1"] for r in done]),
            params_total=int(params[0]) if params else None,
        ))
    sign = -1 if mode == "max" else 1
    return sorted(summaries, key=lambda s: (s.mean is None, sign * (s.mean or 0.0)))
