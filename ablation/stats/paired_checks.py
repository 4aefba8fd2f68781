"""Is a race's decision resting on Gaussian-looking paired differences? A check for the report.

The race's guarantee (`ablation.stats.racing`) assumes Gaussian paired differences. Two departures break a
t-based rule at 3-20 seeds: strongly skewed differences, and an outlier seed (a run that diverged or
collapsed). `check` looks at the differences an arm was decided on (arm - baseline, one per seed, in
seed order) and flags them when they are far from Gaussian, with a sign-flip permutation p-value of
"mean 0" as a second opinion.

* Skewness: the adjusted Fisher-Pearson coefficient G1 (`scipy.stats.skew(bias=False)`), flagged when
  |G1| > SKEW_SE * se(n), se(n) = sqrt(6 n (n - 1) / ((n - 2) (n + 1) (n + 3))) its exact standard error
  under normality (`skewness_limit`). G1 is bounded at small n (|G1| <= 1.73 at n = 3, 2.0 at n = 4), so
  the rule cannot fire below 5 seeds.
* Outlier seed: the seed farthest from the mean, scored by its leave-one-out studentised z,
  z = (x_i - mean of the others) / (SD of the others * sqrt(1 + 1 / (n - 1))). With the sample SD of all
  n seeds, max |z| is bounded by (n - 1) / sqrt(n) (< 3 for n <= 10): one diverged seed inflates the SD
  it is measured by and can never look extreme. Leaving it out removes that, and under normality z is
  exactly Student t with n - 2 degrees of freedom, so the threshold is exact at every n: the seed is
  flagged when the Bonferroni p-value of the largest |z|, n * 2 * P(t_{n-2} > |z|), is below
  OUTLIER_LEVEL (`outlier_limit`). (A MAD-based robust z was the alternative; with 3-20 seeds and
  quantised metrics the MAD is often 0, and it has no exact null law.)
* Zero spread: differences equal to within RESOLUTION of their size (as `racing`: a millionth) have no
  skewness (nan) and no outlier (None), and are not flagged; if all seeds but one are equal, that seed's
  z is infinite (it is the only seed that moved), and it is flagged.
* The second opinion: the two-sided sign-flip permutation p-value of mean 0
  (`scipy.stats.permutation_test`, one sample, permutation_type "samples"), exact over all 2^n sign
  flips for n <= 14, PERMUTATIONS random flips from a fixed seed beyond (deterministic). It needs
  symmetry, not normality, and it can never be below 2 / 2^n (0.0625 at 5 seeds).

Thresholds (chosen by simulation, benchmarks/paired_checks.py; figures in
benchmarks/results/paired_checks.md): SKEW_SE = 2 and OUTLIER_LEVEL = 0.05.
* False alarms: under Gaussian differences the skewness rule fires on 4.6-5.2% of samples at every n
  from 5 to 20, the outlier rule on 5.0% at every n from 3 (its null law is exact), the flag on
  5.0-6.9%. On the arms a simulated race decided on Gaussian differences (null or not, margin 0 or 2 SD,
  5 or 15 arms, max 8 or 20 seeds) the flag fired on 4.5-8.3%: about one decided arm in twenty.
* What it catches: a departure that is IN the sample. One seed collapsed by 10 SD is flagged in at least
  half the samples from n = 4, by 5 SD from n = 6; a centred lognormal (skewness 2.3) from n = 16.
* What it does not: most false claims under a skewed null. Of the race's false claims it flags 7-25%
  under the lognormal and 5-8% under a 1-in-10 collapse (about its false-alarm rate): such a claim rests
  on the seeds that missed the tail, and they look Gaussian. No candidate with rare false alarms does
  much better (c = 1.5, q = 0.1: at most 36% and 18%, at 12-15% false alarms). A flag is a warning that a
  decision rests on non-Gaussian differences, not a detector of false claims.
* Quantised metrics (accuracy on 200 images, paired SD of one or two images): it fires on 6-20% of the
  decided arms, often (13-78% of those flags) samples in which one seed moved while all the others tied
  (reason "all other seeds equal"); the race's error rates hold there (benchmarks/results/race.md), so
  these flags are noise. The check sees only the differences, not the metric's resolution: one image
  among seeds that tie looks the same as a collapse among seeds that agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ablation.stats.paths import RESOLUTION  # spreads below a millionth of the size are none

SKEW_SE = 2.0  # flag |skewness| above this many of its standard errors under normality
OUTLIER_LEVEL = 0.05  # flag the extreme seed when its Bonferroni p-value (leave-one-out t) is below this
PERMUTATIONS = 2**14  # sign flips: all 2^n of them for n <= 14, this many random ones beyond
PERMUTATION_SEED = 20260  # the random flips' seed (n > 14): the same differences, the same p-value


@dataclass(frozen=True)
class PairedCheck:
    """How far from Gaussian one arm's paired differences are, and a permutation second opinion."""

    n: int  # seeds (paired differences)
    skewness: float  # adjusted Fisher-Pearson G1; nan for n < 3 or no spread
    outlier: int | None  # index (in the order given) of the seed farthest from the mean; None if n < 3 or no spread
    outlier_z: float  # its leave-one-out studentised z (signed; +-inf if all other seeds are equal); nan if None
    flagged: bool  # skewness or the outlier beyond its threshold at this n
    reason: str  # words for the report ("" when not flagged)
    permutation_p: float  # two-sided sign-flip permutation p-value of mean 0 (nan for n = 0)


def skewness_limit(n: int) -> float:
    """|skewness| above which n differences are flagged as skewed (inf for n < 3)."""
    if n < 3:
        return math.inf
    return SKEW_SE * math.sqrt(6.0 * n * (n - 1) / ((n - 2) * (n + 1) * (n + 3)))


def outlier_limit(n: int) -> float:
    """|leave-one-out z| above which the extreme seed of n is flagged (inf for n < 3): the Bonferroni
    p-value n * 2 * P(t_{n-2} > |z|) is then below OUTLIER_LEVEL."""
    if n < 3:
        return math.inf
    return float(stats.t.isf(OUTLIER_LEVEL / (2 * n), n - 2))


def scores(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised over rows of n differences each (shape (m, n)): skewness, the extreme seed's index
    (-1 where none) and its leave-one-out z, as `check` computes them."""
    x = np.atleast_2d(np.asarray(rows, dtype=float))
    m, n = x.shape
    skew = np.full(m, np.nan)
    index = np.full(m, -1)
    z = np.full(m, np.nan)
    if n < 3:
        return skew, index, z
    size = np.abs(x).max(axis=1)
    mean = x.mean(axis=1)
    dev = x - mean[:, None]
    spread = np.sqrt((dev * dev).sum(axis=1) / (n - 1))
    live = spread > RESOLUTION * size  # no spread: no skewness, no outlier
    if live.any():
        with np.errstate(invalid="ignore", divide="ignore"):
            skew[live] = stats.skew(x[live], axis=1, bias=False)
        i = np.argmax(np.abs(dev), axis=1)
        rows_ = np.arange(m)
        xi = x[rows_, i]
        rest_mean = (x.sum(axis=1) - xi) / (n - 1)
        rest = x - rest_mean[:, None]
        rest[rows_, i] = 0.0
        rest_sd = np.sqrt((rest * rest).sum(axis=1) / (n - 2))
        gap = xi - rest_mean
        with np.errstate(invalid="ignore", divide="ignore"):
            zz = gap / (rest_sd * math.sqrt(1.0 + 1.0 / (n - 1)))
        flat_rest = rest_sd <= RESOLUTION * size  # all the others equal: the one that moved is infinitely far
        zz = np.where(flat_rest, np.copysign(np.inf, gap), zz)
        index[live] = i[live]
        z[live] = zz[live]
    return skew, index, z


def flags(n: int, skew, z) -> tuple[np.ndarray, np.ndarray]:
    """Which of the scores (from `scores`, n differences each) are flagged: (skewed, outlier)."""
    with np.errstate(invalid="ignore"):
        return np.abs(skew) > skewness_limit(n), np.abs(z) > outlier_limit(n)


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def permutation_p(diffs: Sequence[float]) -> float:
    """Two-sided sign-flip permutation p-value of mean 0 (scipy.stats.permutation_test, one sample)."""
    x = np.asarray(diffs, dtype=float)
    if len(x) == 0:
        return math.nan
    if len(x) == 1:  # x and -x: the observed mean is always as extreme as its flip (scipy needs two)
        return 1.0
    result = stats.permutation_test((x,), _mean, permutation_type="samples", vectorized=True,
                                    n_resamples=PERMUTATIONS, alternative="two-sided",
                                    rng=np.random.default_rng(PERMUTATION_SEED))
    return float(result.pvalue)


def check(diffs: Sequence[float]) -> PairedCheck:
    """Check one arm's paired differences (one per seed): skewness, an outlier seed, and the sign-flip
    permutation p-value. Flagged when |skewness| > `skewness_limit(n)` or the extreme seed's |z| >
    `outlier_limit(n)` (module docstring)."""
    x = np.asarray(diffs, dtype=float).ravel()
    if not np.isfinite(x).all():
        raise ValueError("paired differences must be finite")
    n = len(x)
    skew, index, z = (float(v[0]) for v in scores(x[None, :])) if n >= 3 else (math.nan, -1, math.nan)
    skewed, outlying = (bool(v[0]) for v in flags(n, np.array([skew]), np.array([z])))
    reasons = []
    if skewed:
        reasons.append(f"skewed differences (skewness {skew:.1f})")
    if outlying:
        where = "all other seeds equal" if math.isinf(z) else f"z = {z:.1f}"
        reasons.append(f"an outlier seed (seed index {int(index)}, {where})")
    return PairedCheck(n=n, skewness=skew, outlier=int(index) if index >= 0 else None, outlier_z=z,
                       flagged=skewed or outlying, reason="; ".join(reasons), permutation_p=permutation_p(x))
