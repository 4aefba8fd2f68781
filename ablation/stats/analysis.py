"""The statistics of a study: which differences survive seed noise.

Per configuration (arm), the mean of a metric over its seeds with a t-based 95% confidence
interval; per arm against the baseline, the difference paired by seed with its interval, a paired
t-test (and a Wilcoxon signed-rank test from six pairs on), Holm-corrected across arms, and the
seeds a decision would need at the observed variance (for arms not yet decided); per
axis of a multi-axis study, each value's marginal mean over the other axes. Pure functions over
numbers keyed by arm and seed: no MLflow, no plotting.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from scipy import stats

from ablation.core.names import is_score

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
POWER = 0.8
WILCOXON_FROM = 6  # pairs; below this its smallest attainable p-value cannot reach 0.05


@dataclass(frozen=True)
class Interval:
    """A mean with its confidence interval (nan bounds from fewer than two values)."""

    mean: float
    low: float
    high: float
    n: int
    clipped: bool = False  # a bound was moved to the edge of the metric's range

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def mean_ci(values: list[float], confidence: float = CONFIDENCE) -> Interval:
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    sem = statistics.stdev(values) / math.sqrt(n)
    if sem == 0:
        return Interval(mean, mean, mean, n)
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high), n)


def metric_range(key: str) -> tuple[float, float]:
    """What a metric can take, so that an interval is never printed beyond it: accuracies, F1 scores
    and the cue scores are shares, a loss is not negative."""
    if key.endswith("_loss"):
        return 0.0, math.inf
    if is_score(key) or key.startswith(("best_val_", "val_")):
        return 0.0, 1.0
    return -math.inf, math.inf


def clip(interval: Interval, low: float = -math.inf, high: float = math.inf) -> Interval:
    """`interval` with its bounds inside [low, high], marked `clipped` if either moved. A t interval on
    few seeds runs past what a metric can take (an accuracy above 1); the clipped bounds are what the
    data allow, and the mark tells a reader the interval was wider than the range."""
    if math.isnan(interval.low) or (low <= interval.low and interval.high <= high):
        return interval
    return Interval(interval.mean, max(low, interval.low), min(high, interval.high), interval.n, clipped=True)


@dataclass(frozen=True)
class Comparison:
    """An arm against the baseline, paired by seed."""

    arm: str
    difference: Interval  # arm minus baseline
    p_t: float  # paired t-test
    p_wilcoxon: float | None  # from WILCOXON_FROM pairs on
    p_holm: float = math.nan  # the t-test's p-value, Holm-corrected across the study's arms
    seeds_needed: int | None = None  # pairs for 80% power at the observed mean and spread of the differences

    @property
    def significant(self) -> bool:
        return self.p_holm < ALPHA


def compare(arm: str, values: Mapping[int, float], baseline: Mapping[int, float], *,
            alpha: float = ALPHA) -> Comparison | None:
    """`arm` against `baseline`, both seed -> value, over the seeds they share (None under two);
    `alpha` is the level the seeds needed are worked out for."""
    seeds = sorted(set(values) & set(baseline))
    if len(seeds) < 2:
        return None
    a, b = [values[s] for s in seeds], [baseline[s] for s in seeds]
    differences = [x - y for x, y in zip(a, b)]
    interval = mean_ci(differences)
    # Identical differences on every seed (common with few seeds and accuracies in steps of 1/N) leave
    # the t-test undefined; nan says so, rather than a p-value of 0 that two seeds cannot support.
    # Metrics are float32 when computed; differences within their precision are equal.
    flat = all(math.isclose(d, differences[0], abs_tol=1e-6) for d in differences)
    p_t = math.nan if flat else float(stats.ttest_rel(a, b).pvalue)
    p_w = None
    if len(seeds) >= WILCOXON_FROM:
        p_w = 1.0 if not any(differences) else float(stats.wilcoxon(a, b).pvalue)
    needed = None if flat else seeds_needed(interval.mean, statistics.stdev(differences), alpha=alpha)
    return Comparison(arm, interval, p_t, p_w, seeds_needed=needed)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment, in the order given; an undefined (nan) p-value counts in the family
    as 1 and stays nan."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: 1.0 if math.isnan(p_values[i]) else p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        p = 1.0 if math.isnan(p_values[i]) else p_values[i]
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = math.nan if math.isnan(p_values[i]) else running
    return adjusted


def compare_all(values: Mapping[str, Mapping[int, float]], baseline: str) -> list[Comparison]:
    """Every arm of `values` (arm -> seed -> value) but the baseline against it, Holm-corrected; the
    seeds each would need are worked out at Holm's strictest level, 0.05 over the arms compared."""
    arms = [arm for arm in values if arm != baseline]
    found = [c for arm in arms if (c := compare(arm, values[arm], values[baseline],
                                                alpha=ALPHA / max(1, len(arms)))) is not None]
    adjusted = holm([c.p_t for c in found])
    return [Comparison(c.arm, c.difference, c.p_t, c.p_wilcoxon, p, c.seeds_needed)
            for c, p in zip(found, adjusted)]


def seeds_needed(mean: float, sd: float, *, alpha: float = ALPHA, power: float = POWER,
                 most: int = 1000) -> int | None:
    """Pairs a two-sided paired t-test needs to detect a difference of `mean` with paired standard
    deviation `sd` at `power` (None beyond `most`, or for no difference at all)."""
    if mean == 0 or not math.isfinite(mean) or not math.isfinite(sd):
        return None
    if sd == 0:
        return 2
    effect = abs(mean) / sd

    def reached(n: int) -> bool:
        critical = stats.t.ppf(1 - alpha / 2, n - 1)
        noncentrality = effect * math.sqrt(n)
        # The lower tail P(T < -c) as the upper tail of the mirrored distribution: scipy 1.17's
        # nct.cdf(-c) is nan at large noncentrality, and a nan power skipped n that already had it.
        return stats.nct.sf(critical, n - 1, noncentrality) + stats.nct.sf(critical, n - 1, -noncentrality) >= power

    # Power grows with n, so the least n that reaches it is found by halving [2, most]: ten looks
    # rather than one per n (hundreds for a small difference: 4.6 s of a 16-arm report's 14).
    if not reached(most):
        return None
    low, high = 2, most
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if reached(middle) else (middle + 1, high)
    return low


def marginal_means(config_means: Mapping[str, float], levels: Mapping[str, Mapping[str, str]],
                   axis: str) -> dict[str, float]:
    """Each value of `axis` with the mean over the configurations that have it (each configuration
    weighted once, whatever its seed count): its effect averaged over the other axes.
    `levels` is arm -> axis -> value."""
    groups: dict[str, list[float]] = defaultdict(list)
    for arm, mean in config_means.items():
        groups[levels[arm][axis]].append(mean)
    return {value: statistics.fmean(means) for value, means in groups.items()}


def pareto_front(points: Mapping[str, tuple[float, float]], *, higher_is_better: bool = True) -> list[str]:
    """The arms no other arm beats on both counts: (cost, lower is better; score, higher is better unless
    `higher_is_better` is false, as for a loss)."""
    sign = 1 if higher_is_better else -1
    return [arm for arm, (cost, score) in points.items()
            if not any(c <= cost and sign * s >= sign * score and (c, s) != (cost, score)
                       for c, s in points.values())]


def order(means: Mapping[str, float], mode: str) -> list[str]:
    """The keys of `means`, best first: descending for mode "max", ascending for "min"."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode {mode!r} is not one of: max, min")
    return sorted(means, key=lambda k: -means[k] if mode == "max" else means[k])
