"""ablation.stats.paired_checks: is a race's decision resting on Gaussian-looking paired differences?"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from ablation.stats import paired_checks as pc
from ablation.stats.paired_checks import PairedCheck, check

GAUSSIAN_LOOKING = [0.012, -0.004, 0.007, 0.001, -0.009, 0.015, 0.003, -0.002, 0.006, 0.010]


def brute_force_p(x) -> float:
    """Two-sided sign-flip p-value over all 2^n sign vectors: P(|mean| >= |observed mean|), up to ties."""
    x = np.asarray(x, dtype=float)
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=len(x))))
    means = signs @ x / len(x)
    obs = x.mean()
    tol = 1e-12 * max(abs(obs), 1e-300)
    return min(1.0, float(np.mean(np.abs(means) >= abs(obs) - tol)))


def test_the_api():
    fields = [f.name for f in dataclasses.fields(PairedCheck)]
    assert fields == ["n", "skewness", "outlier", "outlier_z", "flagged", "reason", "permutation_p"]
    got = check(GAUSSIAN_LOOKING)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.flagged = True  # type: ignore[misc]


def test_a_gaussian_looking_sample_is_not_flagged():
    got = check(GAUSSIAN_LOOKING)
    assert got.n == 10 and not got.flagged and got.reason == ""
    assert got.skewness == pytest.approx(stats.skew(GAUSSIAN_LOOKING, bias=False))
    assert abs(got.skewness) < pc.skewness_limit(10)
    assert got.outlier == 4 and abs(got.outlier_z) < pc.outlier_limit(10)  # -0.009: farthest from the mean


def test_one_huge_outlier_is_flagged_with_its_index():
    diffs = [0.010, 0.012, 0.008, 0.011, 0.009, -0.300, 0.010, 0.013]
    got = check(diffs)
    assert got.flagged and got.outlier == 5
    assert got.outlier_z < -pc.outlier_limit(8)
    # leave-one-out studentised: against the other seeds' mean and SD
    rest = np.delete(diffs, 5)
    assert got.outlier_z == pytest.approx((diffs[5] - rest.mean()) / (rest.std(ddof=1) * math.sqrt(1 + 1 / 7)))
    assert "an outlier seed (seed index 5, z = " in got.reason
    # with the SD of all seeds the same seed could never look extreme: |z| <= (n - 1) / sqrt(n)
    assert abs(diffs[5] - np.mean(diffs)) / np.std(diffs, ddof=1) <= 7 / math.sqrt(8)


def test_strongly_skewed_differences_are_flagged():
    diffs = [0.10, 0.20, 0.15, 0.30, 0.50, 0.90, 1.60, 3.00, 0.25, 0.12]  # a long upper tail
    got = check(diffs)
    assert got.skewness > pc.skewness_limit(10) and got.flagged
    assert got.reason.startswith(f"skewed differences (skewness {got.skewness:.1f})")


@pytest.mark.parametrize("n", [5, 8, 12, 20])
def test_the_thresholds_are_the_documented_ones(n):
    se = math.sqrt(6 * n * (n - 1) / ((n - 2) * (n + 1) * (n + 3)))
    assert pc.skewness_limit(n) == pytest.approx(pc.SKEW_SE * se)
    # the outlier limit is where the Bonferroni p-value of the leave-one-out t reaches OUTLIER_LEVEL
    assert n * 2 * stats.t.sf(pc.outlier_limit(n), n - 2) == pytest.approx(pc.OUTLIER_LEVEL)
    # a seed just inside / just beyond the limit (the others fixed and symmetric: no skewness of their own)
    rest = np.linspace(-1.0, 1.0, n - 1)
    unit = rest.std(ddof=1) * math.sqrt(1 + 1 / (n - 1))
    for factor, beyond in ((0.98, False), (1.02, True)):
        got = check([*rest, factor * pc.outlier_limit(n) * unit])
        assert got.outlier == n - 1
        assert ("an outlier seed" in got.reason) == beyond


def test_the_skewness_limit_at_its_edge():
    x = np.array([0.0, 0.1, -0.1, 0.2, -0.2, 0.05, -0.05, 0.0, 0.0, 1.0])
    limit = pc.skewness_limit(len(x))
    # scale the largest value until the skewness sits just either side of the limit
    for target, flagged in ((0.97 * limit, False), (1.03 * limit, True)):
        lo, hi = 0.0, 5.0
        for _ in range(60):
            mid = (lo + hi) / 2
            y = x.copy()
            y[-1] = mid
            lo, hi = (mid, hi) if stats.skew(y, bias=False) < target else (lo, mid)
        got = check(y)
        assert got.skewness == pytest.approx(target, rel=1e-6)
        assert ("skewed differences" in got.reason) == flagged


def test_gaussian_differences_are_flagged_about_as_often_as_documented():
    """Each rule fires on about 5% of Gaussian samples at every n from 5 to 20; together 6-8%."""
    rng = np.random.default_rng(3)
    for n in (6, 12, 20):
        skew, _, z = pc.scores(rng.standard_normal((4000, n)))
        skewed, outlying = pc.flags(n, skew, z)
        assert 0.03 < skewed.mean() < 0.07 and 0.03 < outlying.mean() < 0.07
        assert (skewed | outlying).mean() < 0.10


@pytest.mark.parametrize("diffs", [
    [0.31, -0.12, 0.45, 0.08, 0.27, -0.05, 0.19, 0.36],
    [0.02, 0.01, 0.03, 0.02, -0.01, 0.04, 0.02, 0.03],  # ties: equal means under different flips
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0],
    [0.005, -0.005, 0.0, 0.01, 0.0, 0.005, -0.005, 0.015],  # quantised, with exact zeros
])
def test_the_permutation_p_is_the_enumeration_of_all_sign_flips(diffs):
    assert check(diffs).permutation_p == pytest.approx(brute_force_p(diffs), abs=1e-12)


def test_the_permutation_p_beyond_exact_enumeration_is_deterministic_and_close():
    x = np.random.default_rng(5).normal(0.5, 1.0, 16)
    p1, p2 = pc.permutation_p(x), pc.permutation_p(x)
    assert p1 == p2
    assert p1 == pytest.approx(brute_force_p(x), abs=0.01)


@pytest.mark.parametrize("value", [0.02, -0.015, 0.0])
def test_zero_spread_does_not_crash_and_is_not_flagged(value):
    n = 6
    got = check([value] * n)
    assert got.n == n and math.isnan(got.skewness) and got.outlier is None and math.isnan(got.outlier_z)
    assert not got.flagged and got.reason == ""
    assert got.permutation_p == (1.0 if value == 0.0 else pytest.approx(2 / 2**n))


def test_quantised_ties_with_round_off_are_zero_spread():
    """Accuracy differences on 200 images: one image better on every seed is (k + 1)/200 - k/200, which
    is not the same float for every k. Round-off is no spread: no skewness, no outlier."""
    diffs = [(k + 1) / 200 - k / 200 for k in (20, 27, 34, 41, 48, 55)]
    assert len(set(diffs)) > 1
    got = check(diffs)
    assert math.isnan(got.skewness) and got.outlier is None and not got.flagged


def test_one_seed_that_moved_while_the_others_tie_is_an_outlier():
    got = check([0.01] * 7 + [-0.4])
    assert got.flagged and got.outlier == 7 and got.outlier_z == -math.inf
    assert "seed index 7, all other seeds equal" in got.reason


@pytest.mark.parametrize("diffs", [[], [0.3], [0.3, -0.1]])
def test_fewer_than_three_seeds(diffs):
    got = check(diffs)
    assert got.n == len(diffs) and math.isnan(got.skewness) and got.outlier is None and not got.flagged
    assert math.isnan(got.permutation_p) if not diffs else 0 < got.permutation_p <= 1


def test_non_finite_differences_are_refused():
    with pytest.raises(ValueError):
        check([0.1, math.nan, 0.2])
