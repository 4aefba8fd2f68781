"""The racing procedures of benchmarks/race.py, vectorised over simulated studies (S studies, K arms, N seeds):
each mirrors `ablation.stats.racing` exactly (each prefix's variance about its own mean, no rule on a look
without spread, an equivalent arm that Holm rejects later becoming better or worse), and
`race_library.cross_check` stops a run if a single decision differs from the library's. Here: the prefix
statistics (`look_stats`, `metric_scale`), Holm's step-down (`holm_mask`), the chosen race (`race`: `ranks`,
then `run_race`), the fixed design (`fixed`), the naive race (`naive`), the candidate boundaries the method was
chosen from (`CANDIDATES`) and mode "best" (`best_race`). Decisions are integer codes (RACING_ ... UNDECIDED_;
`CODE` maps the library's states to them) so that whole arrays of studies are decided and compared at once."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.optimize import brentq

from ablation.stats import boundaries, paths, racing

RACING_, BETTER_, WORSE_, EQUIV_, UNDECIDED_ = 0, 1, 2, 3, 4
CODE = {racing.RACING: RACING_, racing.BETTER: BETTER_, racing.WORSE: WORSE_, racing.EQUIVALENT: EQUIV_,
        racing.UNDECIDED: UNDECIDED_}


# ---------------------------------------------------------------------------------------------------
# Prefix statistics and the procedures


def look_stats(D: np.ndarray, start: int, scale=0.0) -> tuple[np.ndarray, np.ndarray]:
    """Prefix mean and standard error of D (..., N) at looks n = start..N, as `paths.prefix_path`: each prefix's
    variance about its OWN mean (two-pass), and se = nan (no t statistic, so no rule fires) where the
    prefix has no spread, sd <= paths.RESOLUTION * max(scale, running max |D|). `scale`: the metric's own
    size, broadcast against D: per prefix, the running max |value| of the two arms of the pair (what
    `paths.pair_path` passes: the max over the pairs the arm has when that look is its latest); 0 for
    scale-free noise."""
    N = D.shape[-1]
    n = np.arange(1, N + 1)
    mean = np.cumsum(D, -1) / n
    upto = np.tri(N, dtype=bool)  # row k: the first k + 1 observations
    flat_D, flat_mean = D.reshape(-1, N), mean.reshape(-1, N)
    ss = np.empty(flat_D.shape)
    step = max(1, 2_000_000 // (N * N))  # rows per chunk: (rows, N, N) temporaries stay ~16 MB
    for lo in range(0, len(flat_D), step):
        dev = np.where(upto, flat_D[lo:lo + step, None, :] - flat_mean[lo:lo + step, :, None], 0.0)
        ss[lo:lo + step] = (dev * dev).sum(-1)
    sd = np.sqrt(ss.reshape(D.shape) / np.maximum(n - 1, 1))
    size = np.maximum(scale, np.maximum.accumulate(np.abs(D), axis=-1))
    se = np.where(sd <= paths.RESOLUTION * size, np.nan, sd / np.sqrt(n))
    return mean[..., start - 1:], se[..., start - 1:]


def metric_scale(X: np.ndarray) -> np.ndarray:
    """The guard's scale for every arm against the baseline (S, K, N) from arm values (S, K + 1, N): per
    prefix, the running max |value| of the arm and the baseline (as `paths.pair_path`)."""
    return np.maximum.accumulate(np.maximum(np.abs(X[:, 1:]), np.abs(X[:, :1])), axis=-1)


def cumor(x: np.ndarray) -> np.ndarray:
    return np.logical_or.accumulate(x, axis=-1)


def holm_mask(ranks: np.ndarray) -> np.ndarray:
    """Holm's step-down on rank arrays (..., K), as `paths.holm_step_down`."""
    K = ranks.shape[-1]
    order = np.sort(ranks, axis=-1)
    failing = order > np.arange(K)
    count = np.where(failing.any(-1), failing.argmax(-1), K)
    return ranks < count[..., None]


# boundaries: callables (start, N, levels) -> array (len(levels), looks) of one-sided t boundaries

def exact_bounds(spending: str):
    return lambda start, N, levels: boundaries._boundaries(start, N, tuple(float(a) for a in levels), spending)


def ranks(D: np.ndarray, start: int, margin: float, alpha: float, test_bounds, eq_bounds, scale=0.0):
    """Per study, arm and look: the strictest Holm rank at which the sequential test has crossed (either
    side), whether the upper side came first, and the strictest rank at which the repeated equivalence
    interval lies inside +-margin: exactly `racing._decide_baseline`'s arrays. `scale`: as `look_stats`."""
    _, K, N = D.shape
    mean, se = look_stats(D, start, scale)
    with np.errstate(invalid="ignore"):
        t = mean / se
    holm = [alpha / (K - r) for r in range(K)]
    tb = test_bounds(start, N, [a / 2 for a in holm])
    eb = eq_bounds(start, N, holm)
    r_up = np.full(t.shape, K)
    r_down = np.full(t.shape, K)
    r_eq = np.full(t.shape, K)
    for r in reversed(range(K)):
        r_up = np.where(cumor(t >= tb[r]), r, r_up)
        r_down = np.where(cumor(-t >= tb[r]), r, r_down)
        half = np.where(np.isnan(se), np.inf, eb[r] * se)
        low = np.maximum.accumulate(mean - half, axis=-1)
        high = np.minimum.accumulate(mean + half, axis=-1)
        r_eq = np.where((low > -margin) & (high < margin), r, r_eq)
    return np.minimum(r_up, r_down), r_up <= r_down, r_eq


def run_race(test_rank: np.ndarray, up_first: np.ndarray, eq_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The synchronous race from rank arrays (S, K, looks): undecided arms get the next seed, decided arms
    none. Returns states (S, K) and the look index each arm stopped at. As `racing._first_fire`, an arm
    stopped as equivalent that Holm's step-down rejects at a later look (other arms' ranks fell) becomes
    better or worse, still at its own look."""
    S, K, L = test_rank.shape
    state = np.zeros((S, K), dtype=int)
    at = np.full((S, K), L - 1)
    rows = np.arange(S)[:, None]
    cols = np.arange(K)[None, :]
    for i in range(L):
        idx = np.where(state == RACING_, i, at)
        tr, er, uf = test_rank[rows, cols, idx], eq_rank[rows, cols, idx], up_first[rows, cols, idx]
        rejected = holm_mask(tr)
        verdict = np.where(rejected, np.where(uf, BETTER_, WORSE_), np.where(holm_mask(er), EQUIV_, RACING_))
        fire = (state == RACING_) & (verdict != RACING_)
        state = np.where(fire, verdict, state)
        at = np.where(fire, i, at)
        state = np.where((state == EQUIV_) & rejected, np.where(uf, BETTER_, WORSE_), state)
    return np.where(state == RACING_, UNDECIDED_, state), at


def race(D, start, margin, alpha, test_bounds=None, eq_bounds=None, scale=0.0):
    """The chosen procedure (or the candidate given by its boundaries), synchronously: states, seeds."""
    test_bounds = test_bounds or exact_bounds(racing.TEST_SPENDING)
    eq_bounds = eq_bounds or exact_bounds(racing.EQUIVALENCE_SPENDING)
    tr, uf, er = ranks(D, start, margin, alpha, test_bounds, eq_bounds, scale)
    state, at = run_race(tr, uf, er)
    return state, at + start


def fixed_ranks(mean, se, n, K, alpha, margin, holm=True):
    """Fixed-sample t-test and TOST ranks at one look with n pairs (as `fixed._fixed_ranks`)."""
    with np.errstate(invalid="ignore"):
        t = mean / se
    p = 2 * stats.t.sf(np.abs(t), n - 1)
    levels = [alpha / (K - r) for r in range(K)] if holm else [alpha]
    test = np.full(t.shape, K)
    eq = np.full(t.shape, K)
    for r in reversed(range(len(levels))):
        a = levels[r]
        test = np.where((p <= a) if holm else (p < a), r, test)
        c = stats.t.isf(a, n - 1)
        eq = np.where((mean - c * se > -margin) & (mean + c * se < margin), r, eq)
    return test, eq, t > 0


def fixed(D, margin, alpha, scale=0.0):
    _, K, N = D.shape
    mean, se = look_stats(D, N, scale)
    test, eq, up = fixed_ranks(mean[..., 0], se[..., 0], N, K, alpha, margin)
    return np.where(holm_mask(test), np.where(up, BETTER_, WORSE_), np.where(holm_mask(eq), EQUIV_, UNDECIDED_))


def naive(D, start, margin, alpha, holm=False, scale=0.0):
    S, K, N = D.shape
    mean, se = look_stats(D, start, scale)
    L = N - start + 1
    test, eq, up = np.empty((S, K, L), int), np.empty((S, K, L), int), np.empty((S, K, L), bool)
    for i in range(L):
        test[..., i], eq[..., i], up[..., i] = fixed_ranks(mean[..., i], se[..., i], start + i, K, alpha, margin, holm)
    state, at = run_race(test, up, eq)
    return state, at + start


# the candidates the method was chosen from ----------------------------------------------------------

def bf_bounds(g: float):
    """The scale-invariant Bayes factor (N(0, g) prior on the standardised effect, right-Haar prior on
    sigma; a test martingale under "mean 0" for every sigma, so Ville's inequality applies) reaches 1/a
    exactly when |t_n| >= t*_n(a): a two-sided boundary at level a, i.e. one-sided rows at a/2. Its
    confidence sequence at level 1 - e is mean +- t*_n(e) se."""
    def tstar(n, a):
        R = (math.sqrt(1 + n * g) / a) ** (2 / n)
        if R >= 1 + n * g:
            return math.inf
        return math.sqrt((n - 1) * (R - 1) / (1 - R / (1 + n * g)))

    def test(start, N, levels):  # rows are one-sided a/2: the two-sided test at a
        return np.array([[tstar(n, 2 * a) for n in range(start, N + 1)] for a in levels])

    def eq(start, N, levels):
        return np.array([[tstar(n, a) for n in range(start, N + 1)] for a in levels])
    return test, eq


def bayes_factor(t: float, n: int, g: float) -> float:
    nu = n - 1
    return (1 + n * g) ** -0.5 * ((1 + t * t / nu) / (1 + t * t / (nu * (1 + n * g)))) ** (n / 2)


def z_boundaries(fractions: np.ndarray, level: float, spending: str) -> np.ndarray:
    """Lan-DeMets one-sided boundaries on the Z scale (known variance), by the usual recursive numerical
    integration (Armitage, McPherson & Rowe), with Simpson's rule on the score scale."""
    cum = boundaries.spent(spending, level, fractions)
    h = math.sqrt(np.min(np.diff(np.concatenate([[0.0], fractions])))) / 12

    def grid(lo, hi):
        m = max(3, math.ceil((hi - lo) / h))
        m += 1 - m % 2
        x = np.linspace(lo, hi, m)
        w = np.ones(m)
        w[1:-1:2], w[2:-1:2] = 4, 2
        return x, w * (x[1] - x[0]) / 3

    out = []
    sd = math.sqrt(fractions[0])
    u = sd * stats.norm.isf(cum[0]) if cum[0] > 0 else math.inf
    out.append(u / sd)
    x, w = grid(-9 * sd, min(u, 9 * sd))
    dens = stats.norm.pdf(x, scale=sd)
    for k in range(1, len(fractions)):
        step = math.sqrt(fractions[k] - fractions[k - 1])
        spend = cum[k] - cum[k - 1]
        wd = w * dens
        if spend <= 1e-300:
            u = math.inf
        else:
            def f(v, wd=wd, x=x, step=step, spend=spend):
                return wd @ stats.norm.sf((v - x) / step) - spend

            hi = 1.0
            while f(hi) > 0:
                hi *= 2
            u = brentq(f, -20.0, hi, xtol=1e-10)
        sdk = math.sqrt(fractions[k])
        out.append(u / sdk)
        xn, wn = grid(-9 * sdk, min(u, 9 * sdk))
        dens = stats.norm.pdf(xn[:, None] - x[None, :], scale=step) @ wd
        x, w = xn, wn
    return np.array(out)


def normal_bounds(spending: str):
    """Lan-DeMets boundaries computed for a known variance, applied to the t statistic by matching
    nominal p-values (the usual approximation)."""
    def bounds(start, N, levels):
        ns = np.arange(start, N + 1)
        return np.array([stats.t.isf(stats.norm.sf(z_boundaries(ns / N, a, spending)), ns - 1) for a in levels])
    return bounds


CANDIDATES = {
    "alpha spending, exact t: power-8 tests, Pocock equivalence (chosen)": (exact_bounds("power8"),
                                                                          exact_bounds("pocock")),
    "alpha spending, exact t: OBF tests, Pocock equivalence": (exact_bounds("obf"), exact_bounds("pocock")),
    "alpha spending, exact t: OBF both": (exact_bounds("obf"), exact_bounds("obf")),
    "alpha spending, exact t: Pocock both": (exact_bounds("pocock"), exact_bounds("pocock")),
    "alpha spending, normal approximation: OBF tests, Pocock equivalence": (normal_bounds("obf"),
                                                                          normal_bounds("pocock")),
    "e-process (Bayes factor, g = 1)": bf_bounds(1.0),
    "e-process (Bayes factor, g = 4)": bf_bounds(4.0),
}


# ---------------------------------------------------------------------------------------------------
# Mode "best"


def best_race(X, start, margin, alpha):
    """Mode "best" (as `racing._decide_best`), synchronous: every pair's sequential test and equivalence
    interval, each one-sided at alpha / (2 (A - 1)). Returns states (S, A), seeds used (S, A)."""
    S, A, N = X.shape
    L = N - start + 1
    a = alpha / (2 * (A - 1))
    tb = exact_bounds(racing.TEST_SPENDING)(start, N, [a])[0]
    eb = exact_bounds(racing.EQUIVALENCE_SPENDING)(start, N, [a])[0]
    pairs = [(i, j) for i in range(A) for j in range(i + 1, A)]
    beat = np.zeros((S, A, A, L), dtype=bool)  # beat[:, i, j]: i shown better than j by that look
    within = np.zeros((S, A, A, L), dtype=bool)
    for i, j in pairs:
        pair_scale = np.maximum.accumulate(np.maximum(np.abs(X[:, i]), np.abs(X[:, j])), axis=-1)
        mean, se = look_stats(X[:, i] - X[:, j], start, pair_scale)
        with np.errstate(invalid="ignore"):
            t = mean / se
        beat[:, i, j], beat[:, j, i] = cumor(t >= tb), cumor(-t >= tb)
        half = np.where(np.isnan(se), np.inf, eb * se)
        low = np.maximum.accumulate(mean - half, axis=-1)
        high = np.minimum.accumulate(mean + half, axis=-1)
        within[:, i, j] = within[:, j, i] = (low > -margin) & (high < margin)
    state = np.zeros((S, A), dtype=int)
    at = np.full((S, A), L - 1)
    over = np.zeros(S, dtype=bool)
    for i in range(L):
        cap = np.where(state == RACING_, i, at)  # the last look each arm has data for
        pair_look = np.minimum(cap[:, :, None], cap[:, None, :])
        b = np.take_along_axis(beat, pair_look[..., None], axis=-1)[..., 0]
        w = np.take_along_axis(within, pair_look[..., None], axis=-1)[..., 0]
        dropped_now = (state == RACING_) & ~over[:, None] & b.any(axis=1)
        state = np.where(dropped_now, WORSE_, state)
        at = np.where(dropped_now, i, at)
        standing = state == RACING_
        alone = (standing.sum(1) == 1) & ~over
        eye = np.eye(A, dtype=bool)[None]
        both = standing[:, :, None] & standing[:, None, :] & ~eye
        tied = (~both | w).all(axis=(1, 2)) & (standing.sum(1) >= 2) & ~over
        state = np.where(alone[:, None] & standing, BETTER_, state)
        state = np.where(tied[:, None] & standing, EQUIV_, state)
        at = np.where((alone | tied)[:, None] & standing, i, at)
        over |= alone | tied
    state = np.where(state == RACING_, UNDECIDED_, state)
    return state, at + start
