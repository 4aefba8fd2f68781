"""Seed statistics, checked against scipy and statsmodels-free closed forms computed here."""

import math
import statistics

import numpy as np
import pytest
from scipy import integrate, stats

from ablation.stats.analysis import (Interval, clip, compare_all, holm, marginal_means, mean_ci, order, pareto_front,
                               seeds_needed)


def test_a_mean_comes_with_the_t_interval_scipy_gives():
    values = [0.81, 0.79, 0.84, 0.80]
    interval = mean_ci(values)
    low, high = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
    assert interval.mean == pytest.approx(np.mean(values))
    assert (interval.low, interval.high) == pytest.approx((low, high))
    assert math.isnan(mean_ci([0.8]).low)  # one seed has no interval


def test_arms_are_compared_with_the_baseline_paired_by_seed_and_holm_corrected():
    values = {
        "none": {0: 0.80, 1: 0.78, 2: 0.82},
        "layer4": {0: 0.85, 1: 0.83, 2: 0.88},  # clearly better on every seed
        "layer1": {0: 0.81, 1: 0.77, 2: 0.83},  # within the noise
        "layer2": {0: 0.79},  # one seed: nothing to pair
    }
    found = {c.arm: c for c in compare_all(values, "none")}
    assert set(found) == {"layer4", "layer1"}
    raw = {arm: stats.ttest_rel(list(values[arm].values()), list(values["none"].values())).pvalue
           for arm in found}
    for arm, comparison in found.items():
        assert comparison.p_t == pytest.approx(raw[arm])
        differences = np.subtract(list(values[arm].values()), list(values["none"].values()))
        assert comparison.difference.mean == pytest.approx(differences.mean())
    smaller, larger = sorted(raw.values())
    assert found["layer4"].p_holm == pytest.approx(min(1, 2 * smaller))
    assert found["layer1"].p_holm == pytest.approx(max(min(1, 2 * smaller), larger))
    assert found["layer4"].difference.low > 0 and found["layer4"].significant
    assert not found["layer1"].significant and found["layer1"].seeds_needed > 3


def test_holm_is_step_down_and_monotone_in_the_raw_p_values():
    p = [0.01, 0.04, 0.03, 0.5]
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_wilcoxon_joins_from_six_pairs():
    rng = np.random.default_rng(0)
    base = rng.normal(0.8, 0.01, 6)
    values = {"none": dict(enumerate(base)), "a": dict(enumerate(base + rng.normal(0.02, 0.01, 6)))}
    [comparison] = compare_all(values, "none")
    assert comparison.p_wilcoxon == pytest.approx(stats.wilcoxon(list(values["a"].values()), base).pvalue)
    fewer = {arm: dict(list(v.items())[:5]) for arm, v in values.items()}
    assert compare_all(fewer, "none")[0].p_wilcoxon is None


def test_the_seeds_a_decision_needs_give_the_power_asked_for():
    n = seeds_needed(0.01, 0.02)
    def power(k):
        critical = stats.t.ppf(0.975, k - 1)
        nc = 0.5 * math.sqrt(k)
        return stats.nct.sf(critical, k - 1, nc) + stats.nct.cdf(-critical, k - 1, nc)
    assert power(n) >= 0.8 > power(n - 1)
    assert 30 <= n <= 36  # the textbook figure for d = 0.5 is 34
    assert seeds_needed(0.0, 0.02) is None


def test_a_marginal_mean_weights_each_configuration_once():
    means = {"a": 0.8, "b": 0.9, "c": 0.7}
    levels = {"a": {"count": "1"}, "b": {"count": "1"}, "c": {"count": "2"}}
    assert marginal_means(means, levels, "count") == pytest.approx({"1": 0.85, "2": 0.7})


def test_the_pareto_front_keeps_what_nothing_beats_on_both_cost_and_score():
    points = {"cheap": (1.0, 0.80), "better": (2.0, 0.85), "worse": (2.0, 0.79), "costly": (3.0, 0.85)}
    assert pareto_front(points) == ["cheap", "better"]


def test_a_front_of_a_score_to_minimise_keeps_the_lowest():
    points = {"cheap": (1.0, 0.50), "better": (2.0, 0.40), "worse": (2.0, 0.60)}
    assert pareto_front(points, higher_is_better=False) == ["cheap", "better"]


def test_an_interval_is_clipped_to_the_range_and_says_so():
    two_seeds = mean_ci([0.80, 0.95])
    assert two_seeds.low < 0 and two_seeds.high > 1  # two seeds: t = 12.7 standard errors either side
    clipped = clip(two_seeds, 0.0, 1.0)
    assert (clipped.mean, clipped.low, clipped.high, clipped.clipped) == (two_seeds.mean, 0.0, 1.0, True)
    inside = mean_ci([0.80, 0.81, 0.82])
    assert clip(inside, 0.0, 1.0) == inside and not inside.clipped
    assert not clip(mean_ci([0.9]), 0.0, 1.0).clipped  # one seed: no interval to clip
    assert clip(Interval(0.1, -0.2, 0.4, 2), 0.0).low == 0.0  # a loss: bounded below only


def test_order_puts_the_best_first_in_either_mode():
    means = {"a": 0.7, "b": 0.9, "c": 0.8}
    assert order(means, "max") == ["b", "c", "a"] and order(means, "min") == ["a", "c", "b"]
    with pytest.raises(ValueError, match="'best'"):
        order(means, "best")


def test_identical_differences_on_every_seed_leave_the_test_undefined_not_significant():
    values = {"none": {0: 0.70, 1: 0.74}, "same_gain": {0: 0.71, 1: 0.75}, "noisy": {0: 0.69, 1: 0.80}}
    found = {c.arm: c for c in compare_all(values, "none")}
    assert math.isnan(found["same_gain"].p_t) and math.isnan(found["same_gain"].p_holm)
    assert not found["same_gain"].significant
    # the undefined test still counts in Holm's family
    assert found["noisy"].p_holm == pytest.approx(min(1, 2 * found["noisy"].p_t))


def quadrature_power(n: int, effect: float, alpha: float) -> float:
    """A two-sided paired t-test's power for `n` pairs, without the noncentral t: T = (Z + nc) / sqrt(V / df)
    with Z normal and V chi-square, so power = E_V[Phi(nc - c sqrt(V/df)) + Phi(-nc - c sqrt(V/df))].
    Integrated over V's quantiles, which keeps the integrand bounded (V's density is infinite at 0 for df = 1)."""
    df = n - 1
    critical, noncentrality = stats.t.ppf(1 - alpha / 2, df), effect * math.sqrt(n)

    def given(u):
        scaled = critical * math.sqrt(stats.chi2.ppf(u, df) / df)
        return stats.norm.cdf(noncentrality - scaled) + stats.norm.cdf(-noncentrality - scaled)

    return integrate.quad(given, 0, 1, limit=200, epsabs=1e-12)[0]


def fewest_pairs(effect: float, alpha: float, power: float = 0.8) -> int:
    return next(n for n in range(2, 1001) if quadrature_power(n, effect, alpha) >= power)


def test_the_quadrature_power_agrees_with_the_noncentral_t_where_that_is_finite():
    for n, effect in [(5, 0.8), (10, 0.5), (34, 0.5), (4, 1.5)]:
        critical, nc = stats.t.ppf(0.975, n - 1), effect * math.sqrt(n)
        exact = stats.nct.sf(critical, n - 1, nc) + stats.nct.cdf(-critical, n - 1, nc)
        assert quadrature_power(n, effect, 0.05) == pytest.approx(exact, abs=1e-9)


def test_a_large_effect_needs_the_few_seeds_the_power_allows():
    # scipy 1.17's nct.cdf is nan here; a nan lower tail made every n up to 5 look underpowered.
    assert quadrature_power(3, 4.75, 0.05) == pytest.approx(0.965, abs=1e-3)
    assert quadrature_power(2, 4.75, 0.05) < 0.8
    assert seeds_needed(4.75, 1.0) == 3


@pytest.mark.parametrize("alpha", [0.05, 0.05 / 3, 0.01, 0.05 / 7])
@pytest.mark.parametrize("effect", [0.3, 0.5, 0.8, 1.2, 2.0, 3.0, 3.77, 4.75, 5.05, 5.6, 8.0, 12.7])
def test_the_seeds_needed_are_the_fewest_with_the_power_by_quadrature(effect, alpha):
    n = seeds_needed(effect, 1.0, alpha=alpha)
    # Power grows with n, so one pair fewer falling short makes n the fewest.
    assert quadrature_power(n, effect, alpha) >= 0.8
    assert n == 2 or quadrature_power(n - 1, effect, alpha) < 0.8


def test_a_two_seed_study_of_four_arms_reports_the_seeds_the_power_allows():
    baseline = {0: 0.700, 1: 0.720}
    values = {"none": baseline,
              "layer4": {0: 0.726, 1: 0.758},  # differences 0.026 and 0.038: 3.77 standard deviations
              "layer3": {0: 0.690, 1: 0.750}, "layer2": {0: 0.710, 1: 0.700}}
    found = {c.arm: c for c in compare_all(values, "none")}
    differences = [values["layer4"][s] - baseline[s] for s in (0, 1)]
    effect = statistics.fmean(differences) / statistics.stdev(differences)
    # Holm's strictest level over three arms is what the seeds are worked out for.
    assert found["layer4"].seeds_needed == fewest_pairs(effect, 0.05 / 3) == 4


@pytest.mark.parametrize("alpha", [0.05, 0.0125])
def test_the_seeds_needed_are_statsmodels_sample_size_rounded_up(alpha):
    """The least n a search by halving finds is statsmodels' solved sample size, rounded up, from a
    large difference (n = 2 or 3) to a small one (hundreds of pairs), and None past the most."""
    from statsmodels.stats.power import TTestPower

    for d in (5.0, 2.0, 1.0, 0.5, 0.3, 0.15, 0.1):
        solved = TTestPower().solve_power(effect_size=d, alpha=alpha, power=0.8, alternative="two-sided")
        expected = max(2, math.ceil(solved - 1e-9))
        assert seeds_needed(d * 0.02, 0.02, alpha=alpha) == (expected if expected <= 1000 else None), d
    assert seeds_needed(0.001, 0.02, alpha=alpha, most=100) is None  # d = 0.05 needs over 3,000
