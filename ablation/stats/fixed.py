"""What the race is compared with, for benchmarks and tests: the naive race (a fixed-sample test after
every seed, as if each look were the only one) and the fixed design the race saves against (every arm
at max_seeds, then one Holm-corrected test per arm). Same prefix rule and first-decision rule as
`racing.decide`, whose helpers they share."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from scipy import stats

from ablation.stats.paths import PrefixPath, holm_adjust, pair_path
from ablation.stats.racing import BETTER, EQUIVALENT, WORSE, Decision, _check, _first_fire, _standing

def _fixed_ranks(path: PrefixPath, start: int, K: int, alpha: float, margin: float, holm: bool):
    """Per look, from the fixed-sample paired t-test and t-based TOST at that look alone (no allowance for
    other looks): the test rank, the equivalence rank (as in `paths.holm_step_down`), whether the difference is positive,
    and the test's p-value. Without `holm` the only levels are alpha: rank 0 passes, K fails."""
    looks = len(path.mean)
    levels = [alpha / (K - r) for r in range(K)] if holm else [alpha]
    test, eq = np.full(looks, K), np.full(looks, K)
    up, p_values = np.zeros(looks, dtype=bool), np.ones(looks)
    for i in range(looks):
        se, mean = path.se[i], path.mean[i]
        if not (np.isfinite(se) and np.isfinite(mean)):
            continue
        n = start + i
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), n - 1))
        up[i], p_values[i] = t > 0, p
        for r, a in enumerate(levels):
            if (p <= a) if holm else (p < a):
                test[i] = r
                break
        for r, a in enumerate(levels):
            c = stats.t.isf(a, n - 1)
            if mean - c * se > -margin and mean + c * se < margin:
                eq[i] = r
                break
    return test, eq, up, p_values


def _fixed_decisions(values, baseline, seeds, margin, alpha, max_seeds, start, higher_is_better, arms, holm,
                     only_last) -> dict[str, Decision]:
    _check(alpha, margin, "baseline", seeds, max_seeds, start)
    family = [a for a in (arms if arms is not None else values) if a != baseline]
    K = len(family)
    if K == 0:
        return {}
    order, sign = list(seeds)[:max_seeds], (1.0 if higher_is_better else -1.0)
    looks = max_seeds - start + 1
    paths = [pair_path(values, arm, baseline, order, sign, start, max_seeds) for arm in family]
    ranks = [_fixed_ranks(path, start, K, alpha, margin, holm) for path in paths]
    test = np.array([r[0] for r in ranks]).reshape(K, looks)
    eq = np.array([r[1] for r in ranks]).reshape(K, looks)
    if only_last:  # the fixed design: one look, at max_seeds
        test[:, :-1], eq[:, :-1] = K, K
    fired = _first_fire(test, eq, [r[2] for r in ranks], [p.n for p in paths], start, looks, K)
    out = {}
    for j, (arm, path) in enumerate(zip(family, paths)):
        done = min(path.n, max_seeds)
        out[arm] = (*_standing(fired[j], done, start, max_seeds), done)
    raw = [float(ranks[j][3][out[a][0]]) if out[a][0] >= 0 else 1.0 for j, a in enumerate(family)]
    adjusted = holm_adjust(raw) if holm else raw
    decisions = {}
    for j, (arm, path) in enumerate(zip(family, paths)):
        look, state, rank, decided_at, done = out[arm]
        mean = low = high = confidence = math.nan
        if look >= 0 and np.isfinite(path.se[look]):
            n = start + look
            if state in (BETTER, WORSE):
                two_sided = alpha / (K - rank) if holm else alpha
                level = two_sided / 2
            else:
                level = (alpha / (K - rank) if holm else alpha) if state == EQUIVALENT else (alpha / K if holm else alpha)
            c = float(stats.t.isf(level, n - 1))
            mean = float(path.mean[look])
            low, high = mean - c * float(path.se[look]), mean + c * float(path.se[look])
            confidence = 1 - 2 * level
            if sign < 0:
                mean, low, high = -mean, -high, -low
        decisions[arm] = Decision(arm, state, done, decided_at, low, high, mean, adjusted[j], confidence, baseline)
    return decisions


def naive_decide(values: Mapping[str, Mapping[Hashable, float]], baseline: str, seeds: Sequence[Hashable], *,
                 margin: float, alpha: float = 0.05, max_seeds: int, start: int = 3, higher_is_better: bool = True,
                 arms: Sequence[str] | None = None, holm: bool = False) -> dict[str, Decision]:
    """The naive race, for comparison only: after every seed, the fixed-sample paired t-test (an arm stops
    at the first p < alpha) and the fixed-sample TOST (t interval at 1 - 2 alpha inside +-margin), as if
    each look were the only one. With `holm`, Holm's correction across the arms at each look (levels
    alpha / (K - r)), which fixes the multiplicity across arms but not across looks. Same prefix rule,
    look loop and first-decision rule as `decide`."""
    return _fixed_decisions(values, baseline, seeds, margin, alpha, max_seeds, start, higher_is_better, arms, holm,
                            only_last=False)


def fixed_decide(values: Mapping[str, Mapping[Hashable, float]], baseline: str, seeds: Sequence[Hashable], *,
                 margin: float, alpha: float = 0.05, max_seeds: int, start: int = 3, higher_is_better: bool = True,
                 arms: Sequence[str] | None = None) -> dict[str, Decision]:
    """The fixed design the race saves against: every arm runs max_seeds seeds, then one paired t-test per
    arm, Holm-corrected across the arms (better/worse), and one t-based TOST per arm, Holm-corrected
    (equivalent); otherwise "undecided at max". Arms short of max_seeds are "racing"."""
    return _fixed_decisions(values, baseline, seeds, margin, alpha, max_seeds, start, higher_is_better, arms, True,
                            only_last=True)
