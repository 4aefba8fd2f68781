"""The racing statistics (ablation.stats.racing): boundaries against independent computations, the decision
rule against hand-computed cases, the prefix rule, idempotence, and a small null simulation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import integrate, stats

from ablation.stats import boundaries, fixed, racing
from ablation.stats.racing import BETTER, EQUIVALENT, RACING, UNDECIDED, WORSE


def study(diffs: dict[str, list[float]], base: list[float] | None = None) -> dict[str, dict[int, float]]:
    """arm -> seed -> value, with the baseline `base` (default 0.5 on every seed) and arm = base + diff."""
    n = max(len(d) for d in diffs.values())
    base = base if base is not None else [0.5] * n
    values = {"base": dict(enumerate(base))}
    for arm, d in diffs.items():
        values[arm] = {s: base[s] + x for s, x in enumerate(d)}
    return values


def first_boundary(level: float, start: int, max_seeds: int, kind: str = racing.TEST_SPENDING) -> float:
    """By hand: the first look spends `level` (start/max)^8 (the test's spending; O'Brien-Fleming type:
    2 - 2 Phi(z_{1 - level/2} / sqrt(start/max))), and t_start has start - 1 degrees of freedom."""
    fraction = start / max_seeds
    if kind == "obf":
        spend = 2 * stats.norm.sf(stats.norm.isf(level / 2) / math.sqrt(fraction))
    else:
        assert kind == "power8"
        spend = level * fraction**8
    return float(stats.t.isf(spend, start - 1))


# --- spending and boundaries ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["obf", "pocock", "linear", "power3"])
def test_spending_ends_at_the_level_and_grows(kind):
    t = np.linspace(0.05, 1, 20)
    spent = boundaries.spent(kind, 0.01, t)
    assert spent[-1] == pytest.approx(0.01)
    assert np.all(np.diff(spent) > 0)


def test_spending_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="unknown spending"):
        boundaries.spent("haybittle", 0.05, 0.5)


def test_a_single_look_is_the_t_quantile():
    assert boundaries.boundary(5, 5, 0.01)[0] == pytest.approx(stats.t.isf(0.01, 4))
    assert boundaries.boundary(3, 8, 0.0125, "obf")[0] == pytest.approx(first_boundary(0.0125, 3, 8, "obf"))
    assert boundaries.boundary(3, 8, 0.0125, "power8")[0] == pytest.approx(first_boundary(0.0125, 3, 8, "power8"))


def test_the_transition_law_against_numerical_integration():
    """P(rho_{k+1} <= y | rho_k = rho) in closed form against integrating, with scipy, the law of the next
    observation (v = x_{k+1} / |x_1..k|, sqrt(k) v ~ Student t_k) over the set of v where the updated
    rho = (sqrt(k) rho + v) / (sqrt(k + 1) sqrt(1 + v^2)) is <= y, the set's ends found by root finding."""
    from scipy.optimize import brentq

    for k, rho, y in [(2, 0.3, 0.1), (3, -0.8, -0.5), (5, 0.95, 0.9), (9, 0.0, -0.2), (4, 0.6, 0.97),
                      (2, -0.2, 0.5)]:
        def excess(v, k=k, rho=rho, y=y):
            return (math.sqrt(k) * rho + v) / (math.sqrt(k + 1) * math.sqrt(1 + v * v)) - y

        def density(v, k=k):
            return stats.t.pdf(math.sqrt(k) * v, k) * math.sqrt(k)

        grid = np.concatenate([-np.logspace(4, -4, 400), [0.0], np.logspace(-4, 4, 400)])
        signs = np.sign([excess(v) for v in grid])
        ends = [-np.inf] + [brentq(excess, grid[i], grid[i + 1]) for i in range(len(grid) - 1)
                            if signs[i] != signs[i + 1]] + [np.inf]
        total = 0.0
        for lo, hi in itertools.pairwise(ends):
            inside = (lo + hi) / 2 if np.isfinite(lo) and np.isfinite(hi) else \
                (hi - 1 if np.isfinite(hi) else lo + 1 if np.isfinite(lo) else 0.0)
            if excess(inside) <= 0:
                total += integrate.quad(density, lo, hi)[0]
        assert float(boundaries.next_cdf(y, rho, k)) == pytest.approx(total, abs=1e-6)


@pytest.mark.parametrize("start,max_seeds,level,kind", [(3, 8, 0.01, "obf"), (3, 8, 0.01, "power8"),
                                                         (3, 6, 0.02, "pocock"), (2, 6, 0.02, "linear")])
def test_boundaries_hold_their_level_by_monte_carlo(start, max_seeds, level, kind):
    c = boundaries.boundary(start, max_seeds, level, kind)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((200_000, max_seeds)) * 3.7  # any sigma: the law of t does not depend on it
    n = np.arange(1, max_seeds + 1)
    mean = np.cumsum(x, 1) / n
    var = (np.cumsum(x * x, 1) - n * mean * mean) / np.maximum(n - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mean / np.sqrt(var / n))[:, start - 1:]
    crossed = (t >= c).any(1).mean()
    assert abs(crossed - level) < 4 * math.sqrt(level / 200_000)
    assert np.all(np.diff(c[np.isfinite(c)]) < 0)  # spending-type boundaries fall as information grows


def test_boundaries_fall_as_the_level_rises():
    strict, loose = boundaries.boundary(3, 10, 0.001), boundaries.boundary(3, 10, 0.01)
    assert np.all(strict[np.isfinite(strict)] > loose[np.isfinite(strict)])


# --- the decision rule, by hand -----------------------------------------------------------------------


def test_a_clear_winner_stops_at_start():
    values = study({"win": [0.10, 0.1001, 0.0999]})
    t = 0.1 / (0.0001 / math.sqrt(3))  # 1732
    c = first_boundary(0.025, 3, 8)  # one arm: the two-sided 0.05 test is one-sided 0.025 a side; 226
    assert c == pytest.approx(boundaries.boundary(3, 8, 0.025)[0])
    assert t > c
    got = racing.decide(values, "base", range(8), margin=0.01, max_seeds=8, start=3)["win"]
    assert (got.state, got.seeds, got.decided_at) == (BETTER, 3, 3)
    assert got.mean == pytest.approx(0.1)
    assert 0 < got.low < got.mean < got.high  # the test's interval, which excludes 0
    assert got.p_value <= 0.05
    assert got.confidence == pytest.approx(0.95)
    # the same differences, where lower is better: the arm is worse, the interval stays arm - baseline
    lower = racing.decide(values, "base", range(8), margin=0.01, max_seeds=8, start=3, higher_is_better=False)
    assert lower["win"].state == WORSE and lower["win"].low == pytest.approx(got.low)


def test_a_winner_that_a_t_test_at_start_would_call_waits():
    """t = 17 at three seeds clears the fixed-sample t-test (p = 0.003) but not the sequential boundary
    (about 226 at the first of six looks)."""
    values = study({"arm": [0.09, 0.10, 0.11]})
    assert 2 * stats.t.sf(0.1 / (0.01 / math.sqrt(3)), 2) < 0.05
    assert racing.decide(values, "base", range(8), margin=0.0, max_seeds=8, start=3)["arm"].state == RACING
    assert fixed.naive_decide(values, "base", range(8), margin=0.0, max_seeds=8, start=3)["arm"].state == BETTER


def test_an_arm_whose_spread_never_shrinks_goes_on_to_max():
    diffs = [0.1 + 0.5 * (-1) ** s for s in range(8)]  # the mean hovers near 0.1, the spread stays 0.5
    for n in range(3, 9):
        got = racing.decide(study({"arm": diffs[:n]}), "base", range(8), margin=0.2, max_seeds=8, start=3)["arm"]
        if n < 8:
            assert (got.state, got.decided_at, got.seeds) == (RACING, None, n)
        else:
            assert (got.state, got.decided_at, got.seeds) == (UNDECIDED, 8, 8)
            assert got.low < -0.2 and got.high > 0.2


def test_an_equivalent_arm_stops_once_inside_the_margin():
    diffs = [0.004, -0.006, 0.005, -0.004, 0.006, -0.005, 0.004, -0.005]
    margin, max_seeds = 0.01, 8
    c = boundaries.boundary(3, max_seeds, 0.05, "pocock")  # one arm: the equivalence level is alpha
    low, high, expected = -math.inf, math.inf, None
    for n in range(3, max_seeds + 1):  # the running intersection of mean +- c_n s_n / sqrt(n), by hand
        x = np.array(diffs[:n])
        half = c[n - 3] * x.std(ddof=1) / math.sqrt(n)
        low, high = max(low, x.mean() - half), min(high, x.mean() + half)
        if expected is None and -margin < low and high < margin:
            expected = n
    assert expected == 5  # the case is built to need more than `start` seeds
    for n in range(3, max_seeds + 1):
        got = racing.decide(study({"arm": diffs[:n]}), "base", range(8), margin=margin, max_seeds=max_seeds,
                            start=3)["arm"]
        if n < expected:
            assert got.state == RACING
        else:
            assert (got.state, got.decided_at) == (EQUIVALENT, expected)
            assert -margin < got.low < got.high < margin
            assert got.confidence == pytest.approx(0.9)  # TOST convention: one-sided 0.05 a side


def test_holm_counts_every_arm_of_the_family():
    values = study({"win": [0.10, 0.1001, 0.0999]})
    alone = racing.decide(values, "base", range(8), margin=0.0, max_seeds=8, start=3)["win"]
    family = racing.decide(values, "base", range(8), margin=0.0, max_seeds=8, start=3,
                           arms=["win", "slow", "slower"])
    assert family["slow"].state == RACING and family["slow"].seeds == 0
    assert family["win"].p_value == pytest.approx(min(1.0, 3 * alone.p_value), rel=1e-3)


def test_holm_steps_down_across_arms():
    """Two arms: one decided at Holm's first step (alpha/2), the other's t between the boundaries of its
    second step (alpha) and its first, so only the step-down decides it, not Bonferroni."""
    first, second = boundaries.boundary(3, 8, 0.05 / 4)[0], boundaries.boundary(3, 8, 0.05 / 2)[0]
    t = (first + second) / 2
    spread = 0.1 * math.sqrt(3) / t  # three differences 0.1 - e, 0.1, 0.1 + e have sd e
    weaker = [0.1 - spread, 0.1, 0.1 + spread]
    with_winner = racing.decide(study({"strong": [0.10, 0.10001, 0.09999], "weaker": weaker}), "base", range(8),
                                margin=0.0, max_seeds=8, start=3)
    assert with_winner["strong"].state == BETTER and with_winner["weaker"].state == BETTER
    assert with_winner["weaker"].p_value <= 0.05
    with_null = racing.decide(study({"null": [0.3, -0.3, 0.1], "weaker": weaker}), "base", range(8), margin=0.0,
                              max_seeds=8, start=3)
    assert with_null["weaker"].state == RACING and with_null["weaker"].p_value > 0.05


# --- prefixes, order, idempotence ---------------------------------------------------------------------


def test_the_sample_is_the_longest_finished_prefix_of_the_seed_order():
    order = [7, 3, 11, 5, 2, 9]
    base = {s: 0.5 for s in order}
    arm = {7: 0.51, 3: 0.49, 11: 0.52, 2: 0.48, 9: 0.5}  # seed 5, fourth in the order, not finished
    got = racing.decide({"base": base, "arm": arm}, "base", order, margin=0.1, max_seeds=6, start=3)["arm"]
    assert got.seeds == 3
    # the baseline's gaps cut the prefix too
    del base[3]
    got = racing.decide({"base": base, "arm": arm}, "base", order, margin=0.1, max_seeds=6, start=3)["arm"]
    assert (got.seeds, got.state) == (1, RACING)
    # values beyond max_seeds in the order are ignored
    base = {s: 0.5 + 0.01 * (s % 3) for s in range(20)}
    arm = {s: base[s] + 0.01 * (-1) ** s for s in range(20)}
    got = racing.decide({"base": base, "arm": arm}, "base", range(20), margin=0.1, max_seeds=6, start=3)["arm"]
    assert got.seeds == 6


def test_finishing_order_does_not_matter():
    """Seeds finish out of order: each finished set gives the decision its prefix gives."""
    rng = np.random.default_rng(11)
    base = {s: 0.7 + 0.02 * rng.standard_normal() for s in range(8)}
    arms = {"a": 0.08, "b": 0.0, "c": -0.01}
    full = {"base": base, **{a: {s: base[s] + d + 0.01 * rng.standard_normal() for s in range(8)}
                             for a, d in arms.items()}}
    for _ in range(20):
        finished = {a: {s: v for s, v in vals.items() if rng.random() < 0.8} for a, vals in full.items()}
        got = racing.decide(finished, "base", range(8), margin=0.03, max_seeds=8, start=3)
        for a in arms:
            n = 0
            while n in finished[a] and n in finished["base"]:
                n += 1
            prefix = {"base": {s: full["base"][s] for s in range(n)}, a: {s: full[a][s] for s in range(n)}}
            prefix |= {b: {s: full[b][s] for s in range(8) if s in finished[b]} for b in arms if b != a}
            again = racing.decide(prefix, "base", range(8), margin=0.03, max_seeds=8, start=3)[a]
            assert got[a].seeds == n
            assert (got[a].state, got[a].decided_at, got[a].mean) == (again.state, again.decided_at, again.mean)


def test_decisions_are_idempotent_and_never_undone():
    rng = np.random.default_rng(5)
    for _ in range(15):
        effects = rng.choice([0.0, 0.0, 0.03, -0.03, 0.1], size=4)
        full = rng.standard_normal((5, 10)) * 0.01
        full[1:] += effects[:, None]
        names = ["base", "a", "b", "c", "d"]
        have = {n: 3 for n in names}
        seen: dict[str, tuple[str, int]] = {}
        while True:
            values = {n: {s: full[i, s] for s in range(have[n])} for i, n in enumerate(names)}
            got = racing.decide(values, "base", range(10), margin=0.02, max_seeds=10, start=3)
            shuffled = {n: dict(reversed(list(values[n].items()))) for n in reversed(names)}
            assert racing.decide(shuffled, "base", list(range(10)), margin=0.02, max_seeds=10, start=3) == got
            for arm, (state, at) in seen.items():
                assert got[arm].decided, f"{arm} was {state} at {at}, now racing"
            seen |= {a: (d.state, d.decided_at) for a, d in got.items() if d.decided}
            open_ = [a for a, d in got.items() if d.state == RACING]
            if not open_:
                break
            for a in open_:
                have[a] += 1
            have["base"] = max(have[a] for a in names[1:])


def test_more_results_for_a_decided_arm_keep_its_decision():
    values = study({"win": [0.10, 0.1001, 0.0999, 0.1, 0.1]})
    first = racing.decide(study({"win": [0.10, 0.1001, 0.0999]}), "base", range(8), margin=0.01, max_seeds=8, start=3)
    later = racing.decide(values, "base", range(8), margin=0.01, max_seeds=8, start=3)
    assert (later["win"].state, later["win"].decided_at) == (first["win"].state, first["win"].decided_at)
    assert later["win"].seeds == 5


# --- error control by simulation -------------------------------------------------------------------------


def race(full: np.ndarray, margin: float, max_seeds: int, start: int = 3) -> dict[str, racing.Decision]:
    """A synchronous race through `decide`: undecided arms get the next seed, the baseline every seed."""
    names = ["base"] + [f"arm{j}" for j in range(1, full.shape[0])]
    have = {n: start for n in names}
    while True:
        values = {n: {s: full[i, s] for s in range(have[n])} for i, n in enumerate(names)}
        got = racing.decide(values, "base", range(max_seeds), margin=margin, max_seeds=max_seeds, start=start)
        open_ = [a for a, d in got.items() if d.state == RACING]
        if not open_:
            return got
        for a in open_:
            have[a] += 1
        have["base"] = max(have[a] for a in names[1:])


def test_null_studies_keep_the_family_wise_error():
    rng = np.random.default_rng(2026)
    studies, errors, naive_errors = 300, 0, 0
    for _ in range(studies):
        full = rng.standard_normal((4, 6)) * 0.02
        got = race(full, margin=0.0, max_seeds=6)
        errors += any(d.state in (BETTER, WORSE) for d in got.values())
        values = {n: dict(enumerate(full[i])) for i, n in enumerate(["base", "arm1", "arm2", "arm3"])}
        naive = fixed.naive_decide(values, "base", range(6), margin=0.0, max_seeds=6, start=3)
        naive_errors += any(d.state in (BETTER, WORSE) for d in naive.values())
    slack = 3 * math.sqrt(0.05 * 0.95 / studies)
    assert errors / studies <= 0.05 + slack
    assert naive_errors / studies > 0.05 + slack  # what the correction buys


def test_arms_at_the_margin_are_rarely_called_equivalent():
    rng = np.random.default_rng(99)
    studies, errors = 300, 0
    for _ in range(studies):
        full = rng.standard_normal((4, 8)) / math.sqrt(2)
        full[1:] += np.array([[1.0], [-1.0], [1.0]])  # every arm exactly one margin away
        got = race(full, margin=1.0, max_seeds=8)
        errors += any(d.state == EQUIVALENT for d in got.values())
    assert errors / studies <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / studies)


# --- mode "best", the naive race, the fixed design ----------------------------------------------------------


def test_best_mode_drops_the_clearly_worse_and_crowns_the_winner():
    values = study({"win": [0.30, 0.3001, 0.2999], "mid": [0.10, 0.1002, 0.0999]},
                   base=[0.5, 0.5005, 0.4995])
    got = racing.decide(values, "base", range(8), margin=0.001, max_seeds=8, start=3, mode="best")
    assert set(got) == {"base", "win", "mid"}
    assert got["base"].state == WORSE and got["mid"].state == WORSE
    assert got["win"].state == BETTER and got["win"].decided_at == 3
    assert got["base"].against == "win" and got["base"].high < 0


def test_best_mode_ties_within_the_margin():
    rng = np.random.default_rng(4)
    base = [0.5 + 0.001 * e for e in rng.standard_normal(8)]
    values = study({"a": [0.0005 * e for e in rng.standard_normal(8)],
                    "b": [0.0005 * e for e in rng.standard_normal(8)]}, base=base)
    got = racing.decide(values, "base", range(8), margin=0.05, max_seeds=8, start=3, mode="best")
    assert {d.state for d in got.values()} == {EQUIVALENT}


def test_the_fixed_design_waits_for_max_and_holm_corrects():
    values = study({"win": [0.10, 0.101, 0.099, 0.1, 0.1, 0.1], "eq": [0.001, -0.001] * 3})
    short = fixed.fixed_decide(study({"win": [0.10, 0.101, 0.099]}), "base", range(6), margin=0.01,
                                max_seeds=6, start=3)
    assert short["win"].state == RACING
    got = fixed.fixed_decide(values, "base", range(6), margin=0.01, max_seeds=6, start=3)
    assert got["win"].state == BETTER and got["eq"].state == EQUIVALENT
    raw = 2 * stats.t.sf(abs(np.mean([0.1, 0.101, 0.099, 0.1, 0.1, 0.1])
                             / (np.std([0.1, 0.101, 0.099, 0.1, 0.1, 0.1], ddof=1) / math.sqrt(6))), 5)
    assert got["win"].p_value == pytest.approx(min(1, 2 * raw), rel=1e-6)


# --- what is refused ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,message", [
    ({"start": 1}, "start must be at least 2"),
    ({"max_seeds": 2}, "must be at least start"),
    ({"max_seeds": 30}, "fewer than max_seeds"),
    ({"alpha": 0.0}, "alpha must lie"),
    ({"margin": -1.0}, "margin must be"),
    ({"mode": "fastest"}, "mode must be"),
])
def test_bad_designs_are_refused(kwargs, message):
    args = {"margin": 0.01, "max_seeds": 8, "start": 3} | kwargs
    with pytest.raises(ValueError, match=message):
        racing.decide(study({"a": [0.1, 0.1, 0.1]}), "base", range(10), **args)


def test_repeated_seeds_and_non_finite_values_are_refused():
    with pytest.raises(ValueError, match="repeats a seed"):
        racing.decide(study({"a": [0.1] * 3}), "base", [0, 1, 2, 2, 3, 4, 5, 6], margin=0.01, max_seeds=8)
    values = study({"a": [0.1, math.nan, 0.1]})
    with pytest.raises(ValueError, match="finite"):
        racing.decide(values, "base", range(8), margin=0.01, max_seeds=8)


def test_identical_differences_decide_nothing():
    """No spread: no t statistic and no interval, so no decision before max (and no false certainty)."""
    got = racing.decide(study({"flat": [0.02] * 8}), "base", range(8), margin=0.01, max_seeds=8, start=3)["flat"]
    assert got.state == UNDECIDED and got.p_value == 1.0 and got.mean == pytest.approx(0.02)
