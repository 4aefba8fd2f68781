"""Racing seeds, measured: the family-wise error, power and cost of `ablation.stats.racing` against the fixed
design (every arm max seeds) and the naive race (a t-test after every seed), by simulation at the sizes
a study uses (start 3 seeds, max 8-20, 5 or 15 arms against a baseline).

    .venv/bin/python benchmarks/race.py [--tracking-uri URI --study NAME [--metric test_macro_f1]]
                                        [--sd SD] [--studies 2000] [--margin 2.0] [--quick]
    .venv/bin/python benchmarks/race.py --only quantised,skewed [--studies 2000] [--quantised-studies 10000]

Paired seed noise comes from a real study: given --tracking-uri and --study, the study is read back from
MLflow (`ablation.tracking.find_study` / `study_trials`) and the SD of the paired difference arm -
baseline is pooled over its arms (`--metric`, default test_macro_f1); its two-way (arm x seed) residuals
also drive a non-Gaussian check. With neither, a small real study is run first with the tool itself
(quickstart.yaml at 32 px, 6 seeds, into a temporary store: minutes on 2 cores) and read back. --sd
skips the study (Gaussian noise of that SD only). Every procedure here is scale-free, so effects and the
margin are set in units of that SD and converted to the metric for the record.

Real metrics (also in a full run): scores quantised as accuracy on 200 images (`simulate_quantised`: ties
and zero-spread prefixes, the guard given the metric's scale), and strongly skewed paired differences
(`simulate_skewed`), with what `ablation.stats.paired_checks` flags on the decisions. `--only` runs just these
sections and merges them into the published results (the rest of the file keeps the full run's figures,
checked against a fresh simulation of the chosen method's rows).

Each vectorised simulator below mirrors `ablation.stats.racing` exactly (each prefix's variance about its own
mean, no rule on a look without spread, an equivalent arm that Holm rejects later becoming better or
worse); `cross_check` runs the library's own `decide`, `naive_decide` and `fixed_decide` on a sample of
the simulated studies and stops if a single decision differs. Writes benchmarks/results/race.{json,md}.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from results_file import publish  # benchmarks/, the script's own folder
from scipy import stats
from scipy.optimize import brentq

from ablation.stats import paired_checks

from ablation.stats import boundaries, paths, racing
from ablation.stats import fixed as fixed_designs

ROOT = Path(__file__).resolve().parent.parent
ALPHA = 0.05
START = 3
EFFECTS = (0.5, 1.0, 1.5, 2.0)  # (b): |effect| in paired-difference SDs
CONFIGS = ((5, 8), (5, 12), (5, 20), (15, 12), (15, 20))  # (arms K, max seeds)
MARGINS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
RACING_, BETTER_, WORSE_, EQUIV_, UNDECIDED_ = 0, 1, 2, 3, 4
CODE = {racing.RACING: RACING_, racing.BETTER: BETTER_, racing.WORSE: WORSE_, racing.EQUIVALENT: EQUIV_,
        racing.UNDECIDED: UNDECIDED_}


# ---------------------------------------------------------------------------------------------------
# Noise from a real study


@dataclass
class Noise:
    sd: float  # SD of the paired difference (arm - baseline) over seeds, in the metric's units
    source: str
    residuals: np.ndarray | None = None  # two-way residuals, scaled to unit per-trial SD
    detail: dict = field(default_factory=dict)


def read_noise(uri: str, study: str, metric: str) -> Noise:
    from ablation.report.model import arm_name, collect, default_baseline
    from ablation.tracking import Outcome, find_study, study_trials

    found = find_study(uri, study)
    records = study_trials(uri, found.experiment_id, found.run.run_id)
    table: dict[str, dict[int, float]] = {}
    for r in records:
        if r.outcome == Outcome.FINISHED and metric in r.metrics:
            table.setdefault(arm_name(r.params, found.axes), {})[int(r.params["seed"])] = r.metrics[metric]
    baseline = default_baseline(collect(records, found.axes)) or min(table)
    seeds = sorted(set.intersection(*(set(v) for v in table.values())))
    names = [baseline] + sorted(a for a in table if a != baseline)
    if len(names) < 3 or len(seeds) < 3:
        raise SystemExit(f"{study}: need 3 arms and 3 seeds finished by all of them (have {len(names)}, {len(seeds)})")
    X = np.array([[table[a][s] for s in seeds] for a in names])
    D = X[1:] - X[0]
    pooled = math.sqrt(((D - D.mean(1, keepdims=True)) ** 2).sum() / (D.shape[0] * (D.shape[1] - 1)))
    resid = X - X.mean(1, keepdims=True) - X.mean(0, keepdims=True) + X.mean()
    A, S = X.shape
    sigma = math.sqrt((resid ** 2).sum() / ((A - 1) * (S - 1)))
    scaled = (resid * math.sqrt(A * S / ((A - 1) * (S - 1))) / sigma).ravel()
    detail = {"study": study, "metric": metric, "arms": names, "baseline": baseline, "seeds": seeds,
              "pooled_paired_sd": pooled, "per_arm_paired_sd": dict(zip(names[1:], D.std(1, ddof=1).tolist())),
              "mean_differences_in_sd": dict(zip(names[1:], (D.mean(1) / pooled).tolist())),
              "residual_skew": float(stats.skew(scaled)), "residual_excess_kurtosis": float(stats.kurtosis(scaled))}
    return Noise(pooled, f"study {study!r} ({len(names)} arms x {len(seeds)} seeds, {metric}) read back from {uri}",
                 scaled, detail)


def run_real_study(folder: Path) -> str:
    """A small real study with the tool: quickstart.yaml at 32 px, six seeds, logged to `folder`."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    command = [str(ROOT / ".venv" / "bin" / "ablate"), "run", str(ROOT / "search_spaces" / "quickstart.yaml"),
               "--set", "search.seeds=[0,1,2,3,4,5]", "--set", "data.image_size=32", "--set", "name=race_noise",
               "--tracking-uri", uri, "--storage", str(folder / "ray")]
    print("running a small real study for the seed noise:", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)
    return uri


# ---------------------------------------------------------------------------------------------------
# Simulated studies


def simulate(S: int, deltas: np.ndarray, N: int, rng: np.random.Generator,
             residuals: np.ndarray | None = None) -> np.ndarray:
    """Arm values (S, K + 1, N), baseline first: arm effect + independent per-trial noise whose paired
    difference has SD 1 (Gaussian, or resampled from a real study's residuals)."""
    K = deltas.shape[1]
    if residuals is None:
        noise = rng.standard_normal((S, K + 1, N))
    else:
        noise = rng.choice(residuals, size=(S, K + 1, N))
    X = noise / math.sqrt(2)
    X[:, 1:, :] += deltas[:, :, None]
    return X


def scenario(name: str, S: int, K: int, margin: float, rng: np.random.Generator) -> np.ndarray:
    """True mean differences (S, K) in SD units. (a) all 0; (b) 2 arms (K <= 6) or 4 arms with effects
    drawn from +-{0.5, 1, 1.5, 2}, the rest 0; (c) every arm uniform within +-margin/2."""
    if name == "a":
        return np.zeros((S, K))
    if name == "b":
        d = np.zeros((S, K))
        few = 2 if K <= 6 else 4
        d[:, :few] = rng.choice(EFFECTS, size=(S, few)) * rng.choice([-1.0, 1.0], size=(S, few))
        return d
    if name == "c":
        return rng.uniform(-margin / 2, margin / 2, size=(S, K))
    raise ValueError(name)


# Quantised metrics: accuracy on a few hundred images ---------------------------------------------

IMAGES = 200  # a validation split: every score is a multiple of 1/200
SEED_LEVEL_SD = 0.02  # the seed's shared component of the accuracy level (the part pairing removes)
# (label, baseline accuracy, discordant images each way; None: chosen to match the seed noise's SD)
QUANTISED = (("weak models, SD of the real study", 0.5, None), ("2 images", 0.85, 2.0), ("1 image", 0.9, 0.5))


def quantised_sd(level: float, discord: float, images: int = IMAGES, tau: float = SEED_LEVEL_SD) -> float:
    """SD of the paired difference (accuracy units) under `simulate_quantised` with no effect: given the
    baseline's count C, G - L has variance (images - C) g (1 - g) + C l (1 - l) and mean images g - C (g + l);
    C has variance images level (1 - level) + images (images - 1) tau^2."""
    g, lo = discord / (images * (1 - level)), discord / (images * level)
    var_c = images * level * (1 - level) + images * (images - 1) * tau ** 2
    var = images * (1 - level) * g * (1 - g) + images * level * lo * (1 - lo) + (g + lo) ** 2 * var_c
    return math.sqrt(var) / images


def simulate_quantised(S: int, effects: np.ndarray, N: int, rng: np.random.Generator, level: float,
                       discord: float, images: int = IMAGES, tau: float = SEED_LEVEL_SD) -> np.ndarray:
    """Accuracies on `images` images (S, K + 1, N), baseline first, every value a multiple of 1/images.

    Seed s gives the baseline C ~ Binomial(images, p_s) images right, p_s = level + tau z_s: the seed's
    shared level (data order, augmentation), common to every arm on that seed. Each arm is a different
    network on the SAME images: of the images - C the baseline missed it gets G ~ Binomial(images - C, g)
    right, of the C it got right it misses L ~ Binomial(C, l), and scores C + G - L. With no effect
    g = discord / (images (1 - level)) and l = discord / (images level): `discord` images flip each way on
    average, and E[G - L] = 0 exactly. Two networks that agree on all but a few images differ by a few
    images, so paired differences tie often and the first seeds' can all be equal; unpaired binomials
    cannot produce that (their difference has SD >= sqrt(2 level (1 - level) / images), 8 images at
    level 0.8). An effect of e (accuracy units) adds e images / (images - C) expected gains (e > 0) or
    losses (e < 0): E[D] = e exactly. `effects`: (S, K) true mean differences in accuracy units."""
    p = np.clip(level + tau * rng.standard_normal((S, 1, N)), 0.0, 1.0)
    right = rng.binomial(images, p)
    g = (discord + np.maximum(effects, 0.0) * images) / (images * (1 - level))
    lo = (discord + np.maximum(-effects, 0.0) * images) / (images * level)
    gain = rng.binomial(images - right, g[:, :, None] * np.ones((1, 1, N)))
    loss = rng.binomial(right, lo[:, :, None] * np.ones((1, 1, N)))
    return np.concatenate([right, right + gain - loss], axis=1) / images


# Skewed paired differences ------------------------------------------------------------------------

SKEWED = {
    "lognormal": "centred lognormal (sigma 0.6, skewness 2.3), its direction drawn per arm",
    "collapse": "1 seed in 10 collapses: the arm loses 5 bulk SDs on it and is 0.56 bulk SD better otherwise",
}


def simulate_skewed(kind: str, S: int, K: int, N: int, rng: np.random.Generator) -> np.ndarray:
    """Arm values (S, K + 1, N), baseline first, every arm's true mean difference 0 and paired SD 1, with
    strongly skewed paired differences. "lognormal": the arm's own noise is a centred lognormal (its
    direction, better-skewed or worse-skewed, drawn per arm). "collapse": the arm and the baseline share
    Gaussian seed noise as in `simulate`, but one seed in ten the arm's run collapses and loses 5 bulk
    SDs; otherwise it is 0.56 bulk SD better, so that its mean difference is 0 (an attention module that
    helps a little and sometimes destabilises training)."""
    base = rng.standard_normal((S, 1, N)) / math.sqrt(2)
    if kind == "lognormal":
        s = 0.6
        y = (np.exp(s * rng.standard_normal((S, K, N))) - math.exp(s * s / 2)) \
            / math.sqrt((math.exp(s * s) - 1) * math.exp(s * s))
        D = y * rng.choice([-1.0, 1.0], size=(S, K, 1))
    elif kind == "collapse":
        pi, loss = 0.1, 5.0
        lift = pi * loss / (1 - pi)
        bulk = rng.standard_normal((S, K, N)) / math.sqrt(2) - base  # the arm's own seed noise minus the baseline's
        collapsed = rng.random((S, K, N)) < pi
        D = (bulk + lift - collapsed * (lift + loss)) / math.sqrt(1 + pi * (1 - pi) * (lift + loss) ** 2)
    else:
        raise ValueError(kind)
    return np.concatenate([base, base + D], axis=1)


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
# Measures


def mc(p: float, S: int) -> float:
    """95% Monte Carlo half-width of a proportion."""
    return 1.96 * math.sqrt(max(p * (1 - p), 1e-12) / S)


def measure(state, used, deltas, margin, N, fixed_state=None) -> dict:
    _, K = state.shape
    null = deltas == 0
    claim = (state == BETTER_) | (state == WORSE_)
    right = np.where(deltas > 0, state == BETTER_, state == WORSE_)
    wrong_sign = np.where(deltas > 0, state == WORSE_, np.where(deltas < 0, state == BETTER_, False))
    out = {"fwer": float((claim & null).any(1).mean()) if null.any() else None,
           "false_equivalence": float(((state == EQUIV_) & (np.abs(deltas) >= margin)).any(1).mean()),
           "wrong_direction": float(wrong_sign.any(1).mean()),
           "trials_share": float(((used.sum(1) + used.max(1)) / ((K + 1) * N)).mean()),
           "seeds_per_arm": float(used.mean()),
           "state_share": {name: float((state == code).mean()) for name, code in
                           (("better", BETTER_), ("worse", WORSE_), ("equivalent", EQUIV_),
                            ("undecided", UNDECIDED_))}}
    power, correct = {}, {}
    for e in EFFECTS:
        sel = np.abs(deltas) == e
        if sel.any():
            power[str(e)] = float(right[sel].mean())
            ok = right | ((state == EQUIV_) & (np.abs(deltas) < margin))
            correct[str(e)] = float(ok[sel].mean())
    if power:
        out["power"], out["correct"] = power, correct
    if fixed_state is not None:
        out["agreement"] = float((state == fixed_state).mean())
        out["conflict"] = float((((state == BETTER_) & (fixed_state == WORSE_))
                                 | ((state == WORSE_) & (fixed_state == BETTER_))).mean())
    return out


# ---------------------------------------------------------------------------------------------------
# The library itself, on a sample of the simulated studies


def library_race(X: np.ndarray, start: int, margin: float, alpha: float, kind: str = "race"):
    """Run a study through `racing.decide` (or naive_decide) one round at a time; states and seeds."""
    A, N = X.shape
    names = ["baseline"] + [f"arm{j}" for j in range(1, A)]
    seeds = list(range(N))
    have = {name: start for name in names}
    fn = {"race": racing.decide, "naive": fixed_designs.naive_decide,
          "naive_holm": lambda *a, **k: fixed_designs.naive_decide(*a, holm=True, **k)}[kind]
    while True:
        values = {name: {s: float(X[a, s]) for s in range(have[name])} for a, name in enumerate(names)}
        got = fn(values, "baseline", seeds, margin=margin, alpha=alpha, max_seeds=N, start=start, arms=names[1:])
        open_ = [a for a, d in got.items() if d.state == racing.RACING]
        if not open_:
            return ([CODE[got[a].state] for a in names[1:]], [got[a].decided_at for a in names[1:]])
        for a in open_:
            have[a] += 1
        have["baseline"] = max(have[a] for a in names[1:])


def cross_check(X, deltas, N, margin, alpha, count: int, studies=None) -> int:
    """The vectorised simulators against the library, decision by decision, on `count` studies (the first
    ones, or the first `count` of the indices `studies`)."""
    D, scale = X[:, 1:] - X[:, :1], metric_scale(X)
    st, used = race(D, START, margin, alpha, scale=scale)
    nv, nused = naive(D, START, margin, alpha, scale=scale)
    nh, hused = naive(D, START, margin, alpha, holm=True, scale=scale)
    fx = fixed(D, margin, alpha, scale)
    checked = 0
    for s in (range(count) if studies is None else list(studies)[:count]):
        for kind, (ref_state, ref_used) in (("race", (st, used)), ("naive", (nv, nused)), ("naive_holm", (nh, hused))):
            states, at = library_race(X[s], START, margin, alpha, kind)
            if states != ref_state[s].tolist() or at != ref_used[s].tolist():
                raise SystemExit(f"cross-check failed ({kind}, study {s}): library {states} {at}, "
                                 f"simulator {ref_state[s].tolist()} {ref_used[s].tolist()}")
        names = ["baseline"] + [f"arm{j}" for j in range(1, X.shape[1])]
        values = {name: {i: float(X[s, a, i]) for i in range(N)} for a, name in enumerate(names)}
        got = fixed_designs.fixed_decide(values, "baseline", list(range(N)), margin=margin, alpha=alpha, max_seeds=N,
                                  start=START)
        if [CODE[got[a].state] for a in names[1:]] != fx[s].tolist():
            raise SystemExit(f"cross-check failed (fixed, study {s})")
        checked += 1
    return checked


# ---------------------------------------------------------------------------------------------------
# Asynchronous arrival


def evaluate(tr, uf, er, counts, start, L, K):
    """The library's look loop (`racing._first_fire`) for one study with arbitrary paired prefixes."""
    fired = racing._first_fire(tr, er, uf, counts, start, L, K)
    return [RACING_ if f is None else CODE[f[1]] for f in fired], [None if f is None else f[0] for f in fired]


def async_study(X, tr, uf, er, start, N, workers, rng, cap=None):
    """One study under asynchronous arrival: `workers` slots, trial durations lognormal (sd 0.3) times a
    per-arm speed; a freed slot takes the next useful trial at once (the undecided arm with the fewest
    seeds started, its baseline seed first; with `cap`, only arms with fewer than `cap` seeds in flight);
    decisions recomputed after every result. Returns final states, trials started, wall-clock time."""
    A = X.shape[0]
    K, L = A - 1, N - start + 1
    speed = rng.uniform(0.8, 1.25, A)
    launched, done = [0] * A, [set() for _ in range(A)]
    initial = [(a, s) for s in range(start) for a in range(A)]
    running: list[tuple[float, int, int]] = []
    now, total = 0.0, 0
    states = [RACING_] * K

    def prefix(a):
        n = 0
        while n in done[a]:
            n += 1
        return n

    def next_trial():
        if initial:
            return initial.pop(0)
        open_ = [j for j in range(K) if states[j] == RACING_ and launched[j + 1] < N
                 and (cap is None or launched[j + 1] - len(done[j + 1]) < cap)]
        if not open_:
            return None
        j = min(open_, key=lambda j: (launched[j + 1], j)) + 1
        if launched[0] <= launched[j]:
            return 0, launched[0]
        return j, launched[j]

    def fill():
        nonlocal total
        while len(running) < workers:
            nxt = next_trial()
            if nxt is None:
                return
            a, s = nxt
            launched[a] = max(launched[a], s + 1)
            heapq.heappush(running, (now + speed[a] * rng.lognormal(0, 0.3), a, s))
            total += 1

    fill()
    counts = [0] * K
    while running:
        now, a, s = heapq.heappop(running)
        done[a].add(s)
        base = prefix(0)
        counts = [min(prefix(j + 1), base, N) for j in range(K)]
        states, _ = evaluate(tr, uf, er, counts, start, L, K)
        fill()
    final = [UNDECIDED_ if st == RACING_ and c >= N else st for st, c in zip(states, counts)]
    return final, total, now


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


def library_best(X, start, margin, alpha):
    A, N = X.shape
    names = ["baseline"] + [f"arm{j}" for j in range(1, A)]
    have = {name: start for name in names}
    while True:
        values = {name: {s: float(X[a, s]) for s in range(have[name])} for a, name in enumerate(names)}
        got = racing.decide(values, "baseline", list(range(N)), margin=margin, alpha=alpha, max_seeds=N,
                            start=start, mode="best", arms=names[1:])
        open_ = [a for a, d in got.items() if d.state == racing.RACING]
        if not open_:
            return [CODE[got[a].state] for a in names], [got[a].decided_at for a in names]
        for a in open_:
            have[a] += 1


def measure_best(state, used, mu, margin, N):
    S, A = state.shape
    top = mu.max(1, keepdims=True)
    first_best = (mu == top).argmax(1)
    dropped_best = state[np.arange(S), first_best] == WORSE_
    standing = (state == EQUIV_) | (state == BETTER_) | (state == UNDECIDED_)
    ended_tied = (state == EQUIV_).any(1)
    far = ((state == EQUIV_) & (mu <= top - margin)).any(1)
    unique = (mu == top).sum(1) == 1
    winner_ok = ((state == BETTER_) & (mu == top)).any(1)
    return {"best_dropped": float(dropped_best.mean()),
            "false_tie": float((ended_tied & far).mean()),
            "error": float((dropped_best | (ended_tied & far)).mean()),
            "any_dropped_when_all_tied": float((state == WORSE_).any(1).mean()) if (mu == top).all() else None,
            "winner_found": float(winner_ok[unique].mean()) if unique.any() else None,
            "standing_at_end": float(standing.sum(1).mean()),
            "trials_share": float((used.sum(1) / (A * N)).mean())}


# ---------------------------------------------------------------------------------------------------
# Report


def fmt(p, S=None):
    if p is None:
        return "-"
    return f"{p:.3f}" + (f" ± {mc(p, S):.3f}" if S else "")


def pct(x):
    return f"{100 * x:.0f}%"


GUARANTEE = """\
Racing decides each arm against the baseline from the paired differences (arm − baseline) on the longest
prefix of the study's seed order that both have finished, so the looks fall at n = start, …, max pairs
whatever order the trials finish in. **Better/worse** is a group-sequential paired t-test: Lan–DeMets
alpha spending α·(n/max)⁸ over those looks (back-loaded, so that the last look keeps nearly the fixed
design's power), with boundaries computed for the t statistic itself, unknown variance included (under
"no difference" the t statistics of a Gaussian sample form a Markov chain whose law does not depend on σ,
which `ablation.stats.boundaries.boundary` integrates numerically; exact up to that integration, checked by Monte
Carlo below, whereas the usual normal-theory boundaries exceed their level by 10–25 % at 3–20 seeds). An arm's
sequential p-value, the smallest level whose boundary its path has crossed, is valid at every look, so
Holm's step-down across the K arms, applied at every look, keeps the family-wise error at α: a first
false rejection needs the smallest of the m₀ true nulls' p-values to reach α/m₀, which has probability
≤ m₀·α/m₀. **Equivalent** means the arm's repeated confidence interval (the running intersection of
mean ± cₙ·sₙ/√n, Pocock-type spending, one-sided level e per side) lies inside ±margin, a sequential
TOST, with the same Holm step-down over the arms (e = α/K, α/(K−1), …). **The guarantee**: if the paired
differences are Gaussian (any variance, any correlation between arms, any order of finishing), then
P(some arm whose true mean difference is 0 is ever declared better or worse) ≤ α, and P(some arm whose
true difference is at least the margin in size is ever declared equivalent) ≤ α; an arm that reaches
max seeds undecided is reported "undecided at max". The two bounds are separate (as for a fixed-design
t-test plus TOST), so a study that contains both kinds of arm could make one error of each kind with
probability up to 2α in all. Mode "best" (arms drop out once significantly worse than another arm) tests
every pair at α/(2(A−1)) per side for A arms and guarantees: P(the best arm is dropped, or the race stops
declaring the arms still standing within the margin of each other while one of them is the margin or
more below the best) ≤ α, whichever arm happens to lead; it does not bound how often a non-best arm is
dropped by another that is not better than it. The simulation below checks all of this at the sizes
used, with the seed noise of a real study."""


# ---------------------------------------------------------------------------------------------------
# Real metrics: quantised scores, skewed differences (also runnable alone: --only, merged into the results)

NEW_CONFIGS = ((5, 8), (5, 20), (15, 20))


def quantised_section(S: int, m: float, unit: float, rng: np.random.Generator, quick: bool):
    """Accuracy on IMAGES images (`simulate_quantised`): family-wise error under the null and false
    equivalence with every arm at the margin, race and fixed design, the guard given the metric's scale;
    the library cross-checked on studies with zero-spread looks. Returns (result rows, lines, checked)."""
    rows, checked, flat_checked = [], 0, 0
    lines = ["", "## Quantised metrics: accuracy on 200 images", "",
             "Every score is a multiple of 1/200, so paired differences tie and the first seeds' can be all "
             "equal: the case `racing` treats as no spread (se = nan: no rule fires on that look), the guard "
             "given the metric's own scale as `paths.pair_path` does. Each seed gives the baseline "
             "Binomial(200, p) images right, p = level + 0.02·z per seed (shared by every arm on that seed); "
             "each arm is a different network on the same 200 images, which gets Binomial right of the images "
             "the baseline missed and misses Binomial of those it got right, `discord` images each way on "
             "average (`simulate_quantised`; its mean difference is exactly 0, or exactly the effect). Weak "
             f"models (level 0.5) with the discord that gives the seed noise above ({unit:.4f}, "
             f"{unit * IMAGES:.1f} images); closer networks (level 0.85, 2 images each way; level 0.9, half an "
             "image each way), whose differences are a few images or one. Margin 2 SD of each noise (so 4 and "
             "2 images for the last two). Null: every arm equal to the baseline (FWER at margin 0, the test "
             "alone, and at margin 2 SD). At the margin: every arm's true difference ±margin (false "
             "equivalence: some arm called equivalent). ± 95% MC on the race's figures.", "",
             "| differences (paired SD) | K | max | arms with no spread at look 3 | FWER race (fixed), margin 0 | "
             "FWER race (fixed), margin 2 SD | false equiv. at the margin, race (fixed) | "
             "trials used, null / at margin |",
             "|---|---|---|---|---|---|---|---|"]
    configs = NEW_CONFIGS if not quick else ((5, 8),)
    for label, level, discord in QUANTISED:
        if discord is None:
            discord = brentq(lambda d: quantised_sd(level, d) - unit, 1e-3, IMAGES * min(level, 1 - level))
        sd = quantised_sd(level, discord)
        margin = m * sd
        for K, N in configs:
            row = {"noise": label, "level": level, "discord_images": discord, "paired_sd": sd,
                   "paired_sd_images": sd * IMAGES, "margin": margin, "K": K, "max": N}
            for name, effect, mg in (("null_margin0", 0.0, 0.0), ("null", 0.0, margin), ("at_margin", margin, margin)):
                deltas = effect * rng.choice([-1.0, 1.0], size=(S, K))
                X = simulate_quantised(S, deltas, N, rng, level, discord)
                D, scale = X[:, 1:] - X[:, :1], metric_scale(X)
                st, used = race(D, START, mg, ALPHA, scale=scale)
                fx = fixed(D, mg, ALPHA, scale)
                _, se = look_stats(D, START, scale)
                row[name] = {"race": measure(st, used, deltas, mg, N),
                             "fixed": measure(fx, np.full((S, K), N), deltas, mg, N),
                             "no_spread_at_start": float(np.isnan(se[..., 0]).mean()),
                             "no_spread_any_look": float(np.isnan(se).any(-1).mean())}
                if effect:  # the differences' skewness, signed so that the effect is positive
                    row[name]["skewness"] = float(stats.skew((D * np.sign(deltas)[:, :, None]).ravel()))
                flat = np.nonzero(np.isnan(se).any(axis=(1, 2)))[0]  # studies with a zero-spread look
                count = 1 if quick else (3 if K <= 6 else 2)
                got = cross_check(X, deltas, N, mg, ALPHA, count, flat if len(flat) else None)
                checked += got
                flat_checked += got if len(flat) else 0
            rows.append(row)
            z, n, a = row["null_margin0"], row["null"], row["at_margin"]
            lines.append(f"| {label} ({sd:.4f}, {sd * IMAGES:.1f} images) | {K} | {N} | "
                         f"{pct(z['no_spread_at_start'])} | {fmt(z['race']['fwer'], S)} ({fmt(z['fixed']['fwer'])}) | "
                         f"{fmt(n['race']['fwer'], S)} ({fmt(n['fixed']['fwer'])}) | "
                         f"{fmt(a['race']['false_equivalence'], S)} ({fmt(a['fixed']['false_equivalence'])}) | "
                         f"{pct(n['race']['trials_share'])} / {pct(a['race']['trials_share'])} |")
    worst = max((r[k]["race"]["fwer"], r["noise"], r["K"], r["max"]) for r in rows for k in ("null_margin0", "null"))
    worst_eq = max((r["at_margin"]["race"]["false_equivalence"], r["noise"], r["K"], r["max"]) for r in rows)
    fixed_eq = max(r["at_margin"]["fixed"]["false_equivalence"] for r in rows)
    skew = {r["noise"]: r["at_margin"]["skewness"] for r in rows}
    lines += ["", f"Highest race FWER {worst[0]:.3f} ({worst[1]}, K = {worst[2]}, max {worst[3]}), highest false "
              f"equivalence {worst_eq[0]:.3f} ({worst_eq[1]}, K = {worst_eq[2]}, max {worst_eq[3]}), against α = "
              f"{ALPHA} (± {mc(ALPHA, S):.3f} at {S:,} studies). A look without spread decides nothing, so ties "
              "cannot make a claim or an equivalence; what remains is the t statistic on lattice differences. At "
              "the margin they lean to the side of the effect (skewness "
              + ", ".join(f"{v:.2f} for {k}" for k, v in skew.items())
              + "; Poisson-like when the SD is an image or two), where a t-based equivalence interval is least "
              f"exact: the fixed design's false equivalence reaches {fixed_eq:.3f} there too. The vectorised "
              f"simulator matched `racing.decide`, `naive_decide` and `fixed_decide` decision for decision on "
              f"{checked} of these studies, {flat_checked} of them chosen among studies with a zero-spread look."]
    return rows, lines, checked


def claim_checks(D: np.ndarray, used: np.ndarray, arms: np.ndarray, permutations: int = 0):
    """`paired_checks` on the differences each of the given arms (rows of (study, arm)) was decided on:
    per arm, flagged (skewness or outlier beyond its threshold at its seeds), and the permutation p-values
    of the first `permutations` of them."""
    flagged = np.zeros(len(arms), dtype=bool)
    ns = used[arms[:, 0], arms[:, 1]] if len(arms) else np.zeros(0, dtype=int)
    for n in np.unique(ns):
        pick = np.nonzero(ns == n)[0]
        skew, _, z = paired_checks.scores(D[arms[pick, 0], arms[pick, 1], :n])
        skewed, outlying = paired_checks.flags(int(n), skew, z)
        flagged[pick] = skewed | outlying
    p = np.array([paired_checks.permutation_p(D[s, k, :used[s, k]]) for s, k in arms[:permutations]])
    return flagged, p


def skewed_section(S: int, m: float, rng: np.random.Generator, quick: bool):
    """Strongly skewed paired differences (`simulate_skewed`) against Gaussian ones: the race's and the
    fixed design's FWER, and what `paired_checks` flags. Returns (result rows, lines)."""
    perms = 100 if quick else 300
    lines = ["", "## Skewed paired differences", "",
             "The guarantee assumes Gaussian paired differences. Two strongly skewed kinds, every arm's true mean "
             "difference 0: " + "; ".join(f"**{k}**: {v}" for k, v in SKEWED.items()) + ". The Gaussian rows are "
             "scenario (a) again, on the same footing. Margin 0 is the test alone (every equal arm faces every "
             "look); at 2 SD equal arms mostly stop as equivalent first. Then `ablation.stats.paired_checks` on the "
             "differences each arm was decided on (`check`: skewness beyond 2 of its standard errors, or an "
             "outlier seed by the leave-one-out t at Bonferroni 0.05; see benchmarks/results/paired_checks.md): "
             "*false claims flagged*, among the null studies with a false claim (race, margin 0), the share in "
             "which a falsely claimed arm is flagged; *permutation p ≤ α*, the share of false claims whose "
             f"sign-flip permutation p-value (the second opinion) is ≤ {ALPHA} too (first {perms} claims per row); "
             "*decided arms flagged*: the share of all arms decided (better, worse or equivalent) at margin "
             "2 SD that are flagged, for the Gaussian rows the false-alarm rate.", "",
             "| differences | K | max | FWER race (fixed), margin 0 | FWER race (fixed), margin 2 SD | "
             "false claims flagged | false claims with permutation p ≤ α | decided arms flagged, margin 2 SD |",
             "|---|---|---|---|---|---|---|---|"]
    rows, checked = [], 0
    for K, N in (NEW_CONFIGS if not quick else ((5, 8),)):
        for kind in ("gaussian", *SKEWED):
            row = {"differences": kind, "K": K, "max": N}
            for margin in (0.0, m):
                deltas = np.zeros((S, K))
                X = simulate(S, deltas, N, rng) if kind == "gaussian" else simulate_skewed(kind, S, K, N, rng)
                D, scale = X[:, 1:] - X[:, :1], metric_scale(X)
                st, used = race(D, START, margin, ALPHA, scale=scale)
                fx = fixed(D, margin, ALPHA, scale)
                out = {"race": measure(st, used, deltas, margin, N),
                       "fixed": measure(fx, np.full((S, K), N), deltas, margin, N)}
                claims = np.argwhere((st == BETTER_) | (st == WORSE_))
                decided = np.argwhere(st != UNDECIDED_)
                if margin == 0.0:
                    flagged, p = claim_checks(D, used, claims, perms)
                    studies = np.unique(claims[:, 0])
                    hit = np.unique(claims[flagged, 0])
                    out["false_claims"] = int(len(claims))
                    out["studies_with_false_claim"] = int(len(studies))
                    out["false_claim_studies_flagged"] = float(len(hit) / len(studies)) if len(studies) else None
                    out["false_claims_flagged"] = float(flagged.mean()) if len(claims) else None
                    out["false_claims_permutation_p_at_most_alpha"] = float((p <= ALPHA).mean()) if len(p) else None
                    out["permutation_checked"] = int(len(p))
                    out["seeds_at_false_claim"] = (float(used[claims[:, 0], claims[:, 1]].mean()) if len(claims)
                                                   else None)
                else:
                    flagged, _ = claim_checks(D, used, decided)
                    out["decided_arms"] = int(len(decided))
                    out["decided_arms_flagged"] = float(flagged.mean()) if len(decided) else None
                row["margin0" if margin == 0.0 else "margin"] = out
                checked += cross_check(X, deltas, N, margin, ALPHA, 1 if quick else 2)
            rows.append(row)
            z, g = row["margin0"], row["margin"]
            lines.append(f"| {kind} | {K} | {N} | {fmt(z['race']['fwer'], S)} ({fmt(z['fixed']['fwer'])}) | "
                         f"{fmt(g['race']['fwer'], S)} ({fmt(g['fixed']['fwer'])}) | "
                         f"{fmt(z['false_claim_studies_flagged'])} of {z['studies_with_false_claim']} | "
                         f"{fmt(z['false_claims_permutation_p_at_most_alpha'])} | {fmt(g['decided_arms_flagged'])} |")

    def span(kind, margin, key, side="race"):
        v = [r[margin][side][key] if side else r[margin][key] for r in rows if r["differences"] == kind]
        v = [x for x in v if x is not None]
        if not v:
            return "-"
        return f"{min(v):.2f}" if f"{min(v):.2f}" == f"{max(v):.2f}" else f"{min(v):.2f}–{max(v):.2f}"
    skewed = [k for k in SKEWED]
    lines += ["", "At margin 0 the race's family-wise error under skewed differences is "
              + ", ".join(f"{span(k, 'margin0', 'fwer')} ({k}; fixed design {span(k, 'margin0', 'fwer', 'fixed')})"
                          for k in skewed)
              + f", against {span('gaussian', 'margin0', 'fwer')} with Gaussian ones: the guarantee does not hold "
              "there, for the fixed design either. The flag catches "
              + ", ".join(f"{span(k, 'margin0', 'false_claim_studies_flagged', None)} of the studies with a false "
                          f"claim ({k})" for k in skewed)
              + f", and fires on {span('gaussian', 'margin0', 'false_claim_studies_flagged', None)} of the Gaussian "
              f"studies with a (false) claim and on {span('gaussian', 'margin', 'decided_arms_flagged', None)} of "
              "the Gaussian arms decided at margin 2 SD (its false alarms). A false claim under skew rests on the "
              "seeds that happened to miss the tail: a lognormal arm called worse had no seed in its long upper "
              "tail, a collapsing arm called better had no collapse among its seeds, and those seeds look "
              "Gaussian. A check of the decided sample sees the skew only where the bulk itself is skewed and "
              "the seeds are many; it cannot see a collapse that did not happen. The sign-flip permutation "
              "p-value is ≤ α for "
              + ", ".join(f"{span(k, 'margin0', 'false_claims_permutation_p_at_most_alpha', None)} of the false "
                          f"claims ({k})" for k in skewed)
              + " (it assumes symmetry, which a skewed null breaks too; it cannot go below 2/2^n, 0.0625 at 5 "
              "seeds, 0.0156 at 7). With a margin of 2 SD the race stops equal arms as equivalent before the rare "
              "seeds matter "
              f"(FWER {span(skewed[0], 'margin', 'fwer')} and {span(skewed[1], 'margin', 'fwer')}), where the "
              f"fixed design still claims ({span(skewed[0], 'margin', 'fwer', 'fixed')}, "
              f"{span(skewed[1], 'margin', 'fwer', 'fixed')}). The vectorised simulator matched the library on "
              f"{checked} of these studies."]
    return rows, lines, checked


ADDED = ("<!-- sections added by `benchmarks/race.py --only`: start -->",
         "<!-- sections added by `benchmarks/race.py --only`: end -->")
NEW_SECTIONS = ("quantised", "skewed")


def new_sections(which, S: int, m: float, unit: float, rng: np.random.Generator, quick: bool, result: dict,
                 quantised_S: int | None = None):
    """The real-metric sections (`--only` runs just these): their lines, results stored in `result`.
    `quantised_S`: studies per quantised scenario (default S), more for a tighter check of <= alpha."""
    lines, checked = [], 0
    if "quantised" in which:
        result["quantised"], more, got = quantised_section(quantised_S or S, m, unit, rng, quick)
        lines += more
        checked += got
    if "skewed" in which:
        result["skewed"], more, got = skewed_section(S, m, rng, quick)
        lines += more
        checked += got
    return lines, checked


def still_stands(old: dict, S: int, m: float, rng: np.random.Generator) -> tuple[dict, list[str]]:
    """The published chosen-method rows (Gaussian, margin m) against a fresh simulation with the current
    code: since they were run, `racing` centres each prefix on its own mean with a guard scaled to the
    metric, and an arm stopped as equivalent that Holm rejects later becomes better or worse."""
    flat, looks, gaps = 0, 0, []
    for row in old.get("main", []):
        K, N, name = row["K"], row["max"], row["scenario"]
        deltas = scenario(name, S, K, m, rng)
        X = simulate(S, deltas, N, rng)
        D, scale = X[:, 1:] - X[:, :1], metric_scale(X)
        _, se = look_stats(D, START, scale)
        flat += int(np.isnan(se).sum())
        looks += se.size
        now = measure(*race(D, START, m, ALPHA, scale=scale), deltas, m, N)
        for key in ("fwer", "false_equivalence", "trials_share"):
            a, b = now[key], row["race"][key]
            if a is None or b is None:
                continue
            err = math.sqrt((a * (1 - a) + b * (1 - b)) / S) if key != "trials_share" else math.nan
            z = abs(a - b) / err if err > 0 else (0.0 if a == b else math.inf)
            gaps.append({"K": K, "max": N, "scenario": name, "measure": key, "published": b, "now": a,
                         "z": None if key == "trials_share" else z})
    tested = [g for g in gaps if g["z"] is not None]
    beyond = sum(g["z"] > 1.96 for g in tested)
    worst = {key: max((g for g in gaps if g["measure"] == key), key=lambda g: abs(g["now"] - g["published"]))
             for key in ("fwer", "false_equivalence", "trials_share")}
    check = {"looks": looks, "zero_spread_looks": flat, "comparisons": gaps, "beyond_1.96_se": beyond,
             "tested": len(tested)}

    def say(g):
        return (f"{g['now']:.3f} against {g['published']:.3f} ({g['scenario']}, K = {g['K']}, max {g['max']}; "
                f"{g['z']:.1f} standard errors)")
    line = (f"Do the rows above stand? Since they were run, `racing` computes each look's variance about its "
            "own mean, with no rule on a look without spread (to a millionth of the metric), and an arm stopped "
            "as equivalent that Holm rejects at a later look becomes better or worse. Re-simulated with the "
            f"current code ({S:,} fresh studies per row of \"The chosen method\"): {flat} of {looks:,} Gaussian "
            f"looks had zero spread, so the guard changes nothing on continuous noise; {beyond} of {len(tested)} "
            "FWER and false-equivalence figures differ from the published ones by more than 1.96 standard "
            f"errors of a difference (about {0.05 * len(tested):.0f} expected by chance). Largest gaps: FWER "
            f"{say(worst['fwer'])}, false equivalence {say(worst['false_equivalence'])}, trials used "
            f"{100 * abs(worst['trials_share']['now'] - worst['trials_share']['published']):.1f} points.")
    return check, [line]


def merge(which, args, S: int, m: float, rng: np.random.Generator, began: float) -> None:
    """`--only`: run only the new sections and merge them into the published results (race.json, race.md),
    replacing any earlier merge; the rest of the file keeps the full run's figures."""
    from results_file import RESULTS

    old = json.loads((RESULTS / "race.json").read_text())
    text = (RESULTS / "race.md").read_text()
    if ADDED[0] in text:
        text = text[:text.index(ADDED[0])].rstrip("\n") + text[text.index(ADDED[1]) + len(ADDED[1]):]
    if abs(old["margin_sd"] - m) > 1e-12:
        raise SystemExit(f"--margin {m} differs from the published results' {old['margin_sd']}")
    unit = old["noise"]["sd"]
    result = dict(old)
    lines, checked = new_sections(which, S, m, unit, rng, args.quick, result, quantised_studies(args))
    result["stands"], stand = still_stands(old, S, m, rng)
    seconds = time.time() - began
    command = f".venv/bin/python benchmarks/race.py --only {','.join(which)}" + (" --quick" if args.quick else "")
    result["merged"] = {"sections": list(which), "command": command, "studies_per_scenario": S,
                        "quantised_studies_per_scenario": quantised_studies(args), "seed": args.seed,
                        "seconds": seconds, "cross_checked_studies": checked}
    block = [ADDED[0], "", "## Racing on real metrics (added)", "",
             f"These sections were run on their own (`{command}`, {S:,} simulated studies per scenario, "
             f"{quantised_studies(args):,} for the quantised ones, seed {args.seed}, {seconds:.0f} s) and merged "
             "into the full run's results: a full run starts with a new "
             "real study for the seed noise (the one above was logged to a temporary store that is gone, with the "
             "residuals the non-Gaussian check resamples), which would change every figure. They use that study's "
             f"paired SD ({unit:.4f}) and margin ({m:g} SD)."]
    block += [""] + stand + lines + ["", ADDED[1]]
    body, targets = (text.split("\n## The targets", 1) + [None])[:2]
    text = body.rstrip("\n") + "\n\n" + "\n".join(block) + ("\n\n## The targets" + targets if targets else "\n")
    publish("race", result, text.rstrip("\n").split("\n"))


def quantised_studies(args) -> int:
    return args.studies if args.quick else max(args.studies, args.quantised_studies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri")
    parser.add_argument("--study")
    parser.add_argument("--metric", default="test_macro_f1")
    parser.add_argument("--sd", type=float, help="paired-difference SD to use instead of a real study's")
    parser.add_argument("--studies", type=int, default=2000, help="simulated studies per scenario")
    parser.add_argument("--margin", type=float, default=2.0, help="margin in paired-difference SDs")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--quick", action="store_true", help="fewer configurations and checks (a smoke run)")
    parser.add_argument("--quantised-studies", type=int, default=10_000,
                        help="studies per quantised scenario (at least --studies): FWER <= alpha to +-0.004")
    parser.add_argument("--only", help="run only these sections (comma-separated: quantised, skewed) and merge "
                        "them into the published results/race.{json,md}, keeping the rest of the full run's")
    args = parser.parse_args()
    began = time.time()
    rng = np.random.default_rng(args.seed)
    S, m = args.studies, args.margin
    if args.only:
        which = [w.strip() for w in args.only.split(",") if w.strip()]
        if not which or set(which) - set(NEW_SECTIONS):
            raise SystemExit(f"--only takes {', '.join(NEW_SECTIONS)}, not {args.only!r}")
        merge(which, args, S, m, rng, began)
        return

    if args.sd:
        noise = Noise(args.sd, f"--sd {args.sd} (Gaussian)")
    else:
        if not (args.tracking_uri and args.study):
            folder = Path(tempfile.mkdtemp(prefix="race_noise_"))
            args.tracking_uri, args.study = run_real_study(folder), "race_noise"
        noise = read_noise(args.tracking_uri, args.study, args.metric)
    unit = noise.sd
    result: dict = {"alpha": ALPHA, "start": START, "studies_per_scenario": S, "margin_sd": m,
                    "margin_metric": m * unit, "noise": {"sd": unit, "source": noise.source, **noise.detail}}
    lines = ["# Racing seeds: error, power and cost by simulation", "",
             f"`.venv/bin/python benchmarks/race.py{' --quick' if args.quick else ''}` — {S:,} simulated "
             f"studies per scenario, α = {ALPHA}, start = {START} seeds.", "",
             f"**Seed noise**: {noise.source}. SD of the paired difference (arm − baseline) over seeds: "
             f"**{unit:.4f}**; effects and margins below are in units of it (all the procedures are "
             f"scale-free). Margin for the scenarios: **{m:g} SD = {m * unit:.4f}**."]
    if noise.detail:
        d = noise.detail
        lines += ["", f"Per arm, that SD ranges {min(d['per_arm_paired_sd'].values()):.4f}–"
                  f"{max(d['per_arm_paired_sd'].values()):.4f}; the arms' mean differences are "
                  + ", ".join(f"{v:+.2f}" for v in d["mean_differences_in_sd"].values())
                  + f" SD; residual skew {d['residual_skew']:.2f}, excess kurtosis "
                  f"{d['residual_excess_kurtosis']:.2f} (the non-Gaussian check below resamples them)."]
    lines += ["", "Scenarios: (a) every arm equal to the baseline; (b) 2 arms (K = 5) or 4 arms (K = 15) "
              "better or worse by 0.5, 1, 1.5 or 2 SD (drawn per study), the rest equal; (c) every arm's "
              "true difference uniform in ±margin/2. Fixed design: every arm max seeds, paired t-test with "
              "Holm plus TOST with Holm, at max. Trials used count the baseline's too (it runs every seed an "
              "undecided arm runs).", "", "## The guarantee", "", GUARANTEE]

    # 0. boundary exactness ----------------------------------------------------------------------------
    checks = []
    draws = 400_000 if args.quick else 2_000_000
    for start, N, level, kind in ((3, 8, 0.005, "power8"), (3, 20, 0.025 / 15, "power8"), (3, 8, 0.005, "obf"),
                                  (3, 20, 0.025 / 15, "obf"), (3, 20, 0.05 / 15, "pocock"), (3, 12, 0.01, "pocock")):
        c = boundaries.boundary(start, N, level, kind)
        z = normal_bounds(kind)(start, N, [level])[0]
        hits = hits_z = 0
        for _ in range(draws // 200_000):
            x = rng.standard_normal((200_000, N))
            mean, se = look_stats(x, start)
            t = mean / se
            hits += int((t >= c).any(1).sum())
            hits_z += int((t >= z).any(1).sum())
        checks.append({"start": start, "max": N, "level": level, "spending": kind, "draws": draws,
                       "exact": hits / draws, "normal_approximation": hits_z / draws})
    result["boundary_check"] = checks
    lines += ["", "## Are the boundaries exact?", "",
              f"Probability that a null t path crosses a one-sided boundary, by {draws:,} Monte Carlo paths "
              "(± 95% MC):", "", "| start–max | spending | level | exact-t boundary | normal-theory boundary |",
              "|---|---|---|---|---|"]
    for c in checks:
        lines.append(f"| {c['start']}–{c['max']} | {c['spending']} | {c['level']:.5f} | "
                     f"{c['exact']:.5f} ± {mc(c['exact'], draws):.5f} | {c['normal_approximation']:.5f} "
                     f"({c['normal_approximation'] / c['level']:.2f}×) |")

    # 1. the candidates -------------------------------------------------------------------------------
    cand_configs = ((5, 12), (15, 20)) if not args.quick else ((5, 12),)
    result["candidates"] = []
    lines += ["", "## Choosing the method", "",
              "Every candidate on the same simulated studies. The test alone (margin 0, so no arm stops as "
              "equivalent and every equal arm faces every look): family-wise error in (a) and power in (b), "
              "the share of arms with that true |effect| declared better or worse in the right direction. "
              f"Then the trials used at margin {m:g} SD, where the savings come from.", "",
              "| K | max | method | FWER (a), margin 0 | power 0.5 / 1 / 1.5 / 2, margin 0 | "
              f"trials (a) / (b) / (c), margin {m:g} |", "|---|---|---|---|---|---|"]
    for K, N in cand_configs:
        data = {}
        for name in "abc":
            for margin in (0.0, m):
                deltas = scenario(name, S, K, margin if name == "c" else m, rng)
                X = simulate(S, deltas, N, rng)
                data[name, margin] = (deltas, X[:, 1:] - X[:, :1])
        for label, (tb, eb) in CANDIDATES.items():
            got = {}
            for (name, margin), (deltas, D) in data.items():
                if margin == 0.0 and name == "c":
                    continue
                st, used = race(D, START, margin, ALPHA, tb, eb)
                got[f"{name}{'' if margin else '_test_alone'}"] = measure(st, used, deltas, margin, N)
            result["candidates"].append({"K": K, "max": N, "method": label, **got})
            pw = got["b_test_alone"]["power"]
            lines.append(f"| {K} | {N} | {label} | {fmt(got['a_test_alone']['fwer'], S)} | "
                         + " / ".join(f"{pw[str(e)]:.2f}" for e in EFFECTS) + " | "
                         + " / ".join(pct(got[x]['trials_share']) for x in "abc") + " |")
        fa = measure(fixed(data["a", 0.0][1], 0.0, ALPHA), np.full((S, K), N), data["a", 0.0][0], 0.0, N)
        fb = measure(fixed(data["b", 0.0][1], 0.0, ALPHA), np.full((S, K), N), data["b", 0.0][0], 0.0, N)
        result["candidates"].append({"K": K, "max": N, "method": "fixed design", "a_test_alone": fa,
                                     "b_test_alone": fb})
        lines.append(f"| {K} | {N} | fixed design (max seeds, Holm) | {fmt(fa['fwer'], S)} | "
                     + " / ".join(f"{fb['power'][str(e)]:.2f}" for e in EFFECTS) + " | 100% / 100% / 100% |")

    # 1b. the test alone, every configuration: what the correction buys ---------------------------------
    result["test_alone"] = []
    lines += ["", "## The test alone: what the correction buys", "",
              "Margin 0 (no equivalence stop): scenario (a) family-wise error of the race, of the naive race "
              "(a t-test after every seed, stop at p < 0.05, per arm; and with Holm across arms at each look) "
              "and of the fixed design; scenario (b) power per |effect| 0.5 / 1 / 1.5 / 2 SD, race (fixed).", "",
              "| K | max | FWER race | FWER naive, per arm | FWER naive, Holm per look | FWER fixed | "
              "power race (fixed) | seeds per arm (b) |", "|---|---|---|---|---|---|---|---|"]
    for K, N in (CONFIGS if not args.quick else ((5, 8), (15, 20))):
        row = {"K": K, "max": N}
        for name in "ab":
            deltas = scenario(name, S, K, 0.0, rng)
            X = simulate(S, deltas, N, rng)
            D = X[:, 1:] - X[:, :1]
            row[name] = {"race": measure(*race(D, START, 0.0, ALPHA), deltas, 0.0, N),
                         "naive": measure(*naive(D, START, 0.0, ALPHA), deltas, 0.0, N),
                         "naive_holm": measure(*naive(D, START, 0.0, ALPHA, holm=True), deltas, 0.0, N),
                         "fixed": measure(fixed(D, 0.0, ALPHA), np.full((S, K), N), deltas, 0.0, N)}
        result["test_alone"].append(row)
        a, b = row["a"], row["b"]
        lines.append(f"| {K} | {N} | {fmt(a['race']['fwer'], S)} | {fmt(a['naive']['fwer'], S)} | "
                     f"{fmt(a['naive_holm']['fwer'], S)} | {fmt(a['fixed']['fwer'], S)} | "
                     + " / ".join(f"{b['race']['power'][str(e)]:.2f} ({b['fixed']['power'][str(e)]:.2f})"
                                  for e in EFFECTS)
                     + f" | {b['race']['seeds_per_arm']:.1f} of {N} |")

    # 2. the chosen method at every configuration --------------------------------------------------------
    configs = CONFIGS if not args.quick else ((5, 8), (15, 20))
    result["main"] = []
    lines += ["", f"## The chosen method, margin {m:g} SD", "",
              "FWER: share of studies in which some arm equal to the baseline was declared better or worse "
              "(± 95% MC). Power and correct (b): per true |effect| 0.5 / 1 / 1.5 / 2 SD, race (fixed design); "
              "'correct' also counts 'equivalent' for effects inside the margin. Trials: race trials / fixed "
              "design trials. Agree: share of arms with the same decision as the fixed design; in brackets, the share "
              "with the opposite direction. (A race 'equivalent' where the fixed design says 'better' is no "
              "contradiction when the effect is inside the margin: it stopped on a different true statement.)", "",
              "| K | max | scenario | FWER race | FWER naive (per arm / Holm per look) | FWER fixed | false equiv. | "
              "power race (fixed) | correct race (fixed) | trials used | agree (opposite) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    checked = 0
    for K, N in configs:
        for name in "abc":
            deltas = scenario(name, S, K, m, rng)
            X = simulate(S, deltas, N, rng)
            D = X[:, 1:] - X[:, :1]
            st, used = race(D, START, m, ALPHA)
            fx = fixed(D, m, ALPHA)
            nv, nused = naive(D, START, m, ALPHA)
            nh, hused = naive(D, START, m, ALPHA, holm=True)
            r = measure(st, used, deltas, m, N, fx)
            f = measure(fx, np.full((S, K), N), deltas, m, N)
            n1 = measure(nv, nused, deltas, m, N)
            n2 = measure(nh, hused, deltas, m, N)
            checked += cross_check(X, deltas, N, m, ALPHA, 3 if args.quick else (10 if K <= 6 else 4))
            result["main"].append({"K": K, "max": N, "scenario": name, "race": r, "fixed": f, "naive": n1,
                                   "naive_holm": n2})
            power = correct = "-"
            if "power" in r:
                power = " / ".join(f"{r['power'][str(e)]:.2f} ({f['power'][str(e)]:.2f})" for e in EFFECTS)
                correct = " / ".join(f"{r['correct'][str(e)]:.2f} ({f['correct'][str(e)]:.2f})" for e in EFFECTS)
            lines.append(f"| {K} | {N} | ({name}) | {fmt(r['fwer'], S)} | {fmt(n1['fwer'])} / {fmt(n2['fwer'])} | "
                         f"{fmt(f['fwer'])} | {fmt(r['false_equivalence'])} | {power} | {correct} | "
                         f"{pct(r['trials_share'])} | {pct(r['agreement'])} ({r['conflict']:.3f}) |")
    result["cross_checked_studies"] = checked
    lines += ["", f"The vectorised simulator matched `racing.decide`, `naive_decide` and `fixed_decide` decision "
              f"for decision (state and seeds) on {checked} of these studies (all three procedures, every arm)."]

    # 3. the margin --------------------------------------------------------------------------------------
    result["margins"] = []
    sweep = CONFIGS if not args.quick else ((15, 20),)
    lines += ["", "## Trials used against the margin", "",
              "Share of the fixed design's trials the race uses, and its power for effects of 1 and 2 SD in "
              "(b), race (fixed), by margin in SD units:", "",
              "| K | max | margin (SD) | trials (a) | trials (b) | trials (c) | power 1 SD | power 2 SD | FWER (a) |",
              "|---|---|---|---|---|---|---|---|---|"]
    sweep_S = S // 2
    for K, N in sweep:
        for margin in MARGINS:
            row = {"K": K, "max": N, "margin_sd": margin}
            for name in "abc":
                deltas = scenario(name, sweep_S, K, margin, rng)
                X = simulate(sweep_S, deltas, N, rng)
                D = X[:, 1:] - X[:, :1]
                st, used = race(D, START, margin, ALPHA)
                row[name] = measure(st, used, deltas, margin, N)
                if name == "b":
                    row["fixed_b"] = measure(fixed(D, margin, ALPHA), np.full((sweep_S, K), N), deltas, margin, N)
            result["margins"].append(row)
            b, fb = row["b"], row["fixed_b"]
            lines.append(f"| {K} | {N} | {margin:g} | {pct(row['a']['trials_share'])} | {pct(b['trials_share'])} | "
                         f"{pct(row['c']['trials_share'])} | {b['power']['1.0']:.2f} ({fb['power']['1.0']:.2f}) | "
                         f"{b['power']['2.0']:.2f} ({fb['power']['2.0']:.2f}) | {fmt(row['a']['fwer'], sweep_S)} |")

    # 3b. why a short race cannot save half: the narrowest valid interval at n seeds -------------------
    widths = {}
    lines += ["", "## Why short races cannot save half", "",
              "An equal arm stops as equivalent at n seeds only once its interval, mean ± h, lies inside "
              "±margin. The table gives h/s at n seeds (s: the sample SD of the differences, about 1 in these "
              "units): first for a single fixed-sample TOST look at n seeds (α/K one-sided; no allowance for "
              "other looks: no valid procedure does better), then for the race's repeated interval at "
              "Holm's first level (Pocock-type spending over looks 3..max).", "",
              "| K | interval | n = 3 | 4 | 5 | 6 | 8 | 10 | 12 | 16 | 20 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for K in (5, 15):
        single = {n: float(stats.t.isf(ALPHA / K, n - 1) / math.sqrt(n)) for n in (3, 4, 5, 6, 8, 10, 12, 16, 20)}
        widths[f"K={K} single look"] = single
        lines.append(f"| {K} | one look at n | " + " | ".join(f"{v:.2f}" for v in single.values()) + " |")
        for N in (8, 12, 20):
            c = boundaries.boundary(START, N, ALPHA / K, racing.EQUIVALENCE_SPENDING)
            row = {n: float(c[n - START] / math.sqrt(n)) for n in (3, 4, 5, 6, 8, 10, 12, 16, 20) if n <= N}
            widths[f"K={K} race max {N}"] = row
            lines.append(f"| {K} | race, max {N} | " + " | ".join(f"{row[n]:.2f}" if n in row else "" for n in
                                                               (3, 4, 5, 6, 8, 10, 12, 16, 20)) + " |")
    result["half_widths"] = widths
    one, r12, r20 = widths["K=5 single look"], widths["K=5 race max 12"], widths["K=5 race max 20"]
    lines += ["", "Using at most half the fixed design's trials means the equal arms must stop by about n = max/2: "
              f"n = 4 for max 8, where even a single look needs a margin above {one[4]:.1f} s (K = 5) plus the "
              f"noise of the mean, and n = 6 for max 12 ({one[6]:.1f} s for one look, {r12[6]:.1f} s for the "
              "race's interval). A margin that wide also calls effects smaller than it 'equivalent', which is the "
              "power the race gives up in (b) for effects inside the margin. With max 20 the equal arms can stop "
              f"near n = 8-10 ({r20[8]:.1f}-{r20[10]:.1f} s), where a 2 SD margin suffices."]

    # 4. asynchronous arrival --------------------------------------------------------------------------
    result["async"] = []
    A_S = 300 if args.quick else 1000
    A_S15 = 300 if args.quick else 400
    lines += ["", "## Asynchronous arrival", "",
              f"{A_S} studies per row ({A_S15} with K = 15): trials finish in random order (lognormal durations, per-arm speeds); a "
              "freed slot takes the next useful trial at once and decisions are recomputed from the finished "
              "trials after every result. Trials used count every trial started, including seeds already "
              "running when their arm was decided.", "",
              "| K | max | scenario | workers | seeds in flight per arm | FWER | trials used | wall clock (trial durations) | "
              "same decisions as the synchronous race |",
              "|---|---|---|---|---|---|---|---|---|"]
    for K, N in ((5, 20), (15, 20)) if not args.quick else ((5, 20),):
        for name in "ab":
            n_studies = A_S if K <= 6 else A_S15
            deltas = scenario(name, n_studies, K, m, rng)
            X = simulate(n_studies, deltas, N, rng)
            D = X[:, 1:] - X[:, :1]
            tr, uf, er = ranks(D, START, m, ALPHA, exact_bounds(racing.TEST_SPENDING),
                               exact_bounds(racing.EQUIVALENCE_SPENDING))
            sync, _ = run_race(tr, uf, er)
            for workers, cap in ((2, None), (8, None), (32, None), (8, 1), (32, 1)):
                states, totals, clock = [], [], []
                for s in range(n_studies):
                    st, total, took = async_study(X[s], tr[s], uf[s], er[s], START, N, workers, rng, cap)
                    states.append(st)
                    totals.append(total)
                    clock.append(took)
                states = np.array(states)
                null = deltas == 0
                fwer = float((((states == BETTER_) | (states == WORSE_)) & null).any(1).mean()) if null.any() else None
                share = float(np.mean(totals) / ((K + 1) * N))
                same = float((states == sync).all(1).mean())
                result["async"].append({"K": K, "max": N, "scenario": name, "workers": workers, "cap": cap,
                                        "studies": n_studies, "fwer": fwer, "trials_share": share,
                                        "same_as_sync": same, "wall_clock": float(np.mean(clock))})
                lines.append(f"| {K} | {N} | ({name}) | {workers} | {cap or '-'} | {fmt(fwer, n_studies)} | {pct(share)} | "
                             f"{np.mean(clock):.1f} | {pct(same)} |")

    capped = {(r["K"], r["scenario"], r["workers"], r["cap"]): r for r in result["async"]}
    if (5, "a", 32, None) in capped and (5, "a", 32, 1) in capped:
        free, one = capped[5, "a", 32, None], capped[5, "a", 32, 1]
        lines += ["", f"Decisions do not depend on the order of arrival (the prefix rule), but trials do: with "
                  f"many workers and no limit, slots start seeds that an arm turns out not to need (K = 5, 32 "
                  f"workers: {pct(free['trials_share'])} of the fixed design's trials against "
                  f"{pct(capped[5, 'a', 2, None]['trials_share'])} with 2 workers). At most one seed in flight "
                  f"per racing arm keeps {pct(one['trials_share'])} for "
                  f"{one['wall_clock'] / free['wall_clock']:.1f}× the wall clock."]

    # 5. mode best ---------------------------------------------------------------------------------------
    result["best"] = []
    lines += ["", "## Mode \"best\"", "",
              "Error: the (first) best arm was dropped, or the race stopped declaring the standing arms tied "
              "within the margin while one was a margin or more below the best; the guarantee is ≤ α. (a) has "
              "every arm tied, so every arm is a best arm: the row also shows how often any arm was dropped.", "",
              "| K + 1 arms | max | scenario | error | best dropped | any dropped (all tied) | unique best found | "
              "arms standing at the end | trials used |", "|---|---|---|---|---|---|---|---|---|"]
    for K, N in ((5, 12), (5, 20)) if not args.quick else ((5, 12),):
        for name in "abc":
            deltas = scenario(name, S, K, m, rng)
            X = simulate(S, deltas, N, rng)
            st, used = best_race(X, START, m, ALPHA)
            mu = np.concatenate([np.zeros((S, 1)), deltas], axis=1)
            for s in range(3 if args.quick else 8):
                ref = library_best(X[s], START, m, ALPHA)
                if ref[0] != st[s].tolist() or ref[1] != used[s].tolist():
                    raise SystemExit(f"best-mode cross-check failed at study {s}: {ref} vs {st[s]} {used[s]}")
            r = measure_best(st, used, mu, m, N)
            result["best"].append({"K": K, "max": N, "scenario": name, **r})
            lines.append(f"| {K + 1} | {N} | ({name}) | {fmt(r['error'], S)} | {fmt(r['best_dropped'])} | "
                         f"{fmt(r['any_dropped_when_all_tied'])} | {fmt(r['winner_found'])} | "
                         f"{r['standing_at_end']:.1f} | {pct(r['trials_share'])} |")

    # 6. non-Gaussian noise -----------------------------------------------------------------------------
    if noise.residuals is not None:
        result["bootstrap"] = []
        lines += ["", "## Non-Gaussian noise", "",
                  f"Scenario (a) with per-trial noise resampled from the real study's {len(noise.residuals)} "
                  "two-way residuals instead of Gaussian draws:", "",
                  "| K | max | FWER race | FWER naive (per arm / Holm per look) | trials used |", "|---|---|---|---|---|"]
        for K, N in ((5, 8), (5, 20), (15, 20)) if not args.quick else ((5, 20),):
            deltas = np.zeros((S, K))
            X = simulate(S, deltas, N, rng, noise.residuals)
            D = X[:, 1:] - X[:, :1]
            st, used = race(D, START, m, ALPHA)
            r = measure(st, used, deltas, m, N)
            n1 = measure(*naive(D, START, m, ALPHA), deltas, m, N)
            n2 = measure(*naive(D, START, m, ALPHA, holm=True), deltas, m, N)
            result["bootstrap"].append({"K": K, "max": N, "race": r, "naive": n1, "naive_holm": n2})
            checked += cross_check(X, deltas, N, m, ALPHA, 2 if args.quick else 4)
            lines.append(f"| {K} | {N} | {fmt(r['fwer'], S)} | {fmt(n1['fwer'])} / {fmt(n2['fwer'])} | "
                         f"{pct(r['trials_share'])} |")

    # 6b. real metrics: quantised scores, skewed differences -------------------------------------------
    more, got = new_sections(NEW_SECTIONS, S, m, unit, rng, args.quick, result, quantised_studies(args))
    lines += more
    checked += got

    # 7. the targets ----------------------------------------------------------------------------------
    targets = []
    lines += ["", "## The targets", ""]
    worst = max((r["race"]["fwer"], r["K"], r["max"]) for r in result["main"] if r["scenario"] == "a")
    alone = max((r["a"]["race"]["fwer"], r["K"], r["max"]) for r in result["test_alone"])
    ok = all(f - mc(f, S) <= ALPHA for f, _, _ in (worst, alone))
    targets.append({"target": "FWER <= alpha in (a)", "met": ok, "worst_margin": worst[0], "worst_margin_0": alone[0]})
    lines.append(f"- **FWER ≤ α in (a): {'met' if ok else 'NOT met'}.** Highest race FWER: {worst[0]:.3f} at margin "
                 f"{m:g} SD (K = {worst[1]}, max {worst[2]}); {alone[0]:.3f} with no margin (K = {alone[1]}, max "
                 f"{alone[2]}), against {max(r['a']['naive']['fwer'] for r in result['test_alone']):.3f} for the "
                 "naive race.")
    for K, N in configs:
        rows = {r["scenario"]: r for r in result["main"] if (r["K"], r["max"]) == (K, N)}
        shares = {x: rows[x]["race"]["trials_share"] for x in "bc"}
        met = all(v <= 0.5 for v in shares.values())
        need = [row["margin_sd"] for row in result["margins"] if (row["K"], row["max"]) == (K, N)
                and row["b"]["trials_share"] <= 0.5 and row["c"]["trials_share"] <= 0.5]
        b = rows["b"]
        beyond = [e for e in EFFECTS if e >= m]
        inside = [e for e in EFFECTS if e < m]
        loss = {e: b["fixed"]["power"][str(e)] - b["race"]["power"][str(e)] for e in EFFECTS}
        alone_row = next(r for r in result["test_alone"] if (r["K"], r["max"]) == (K, N)) \
            if any((r["K"], r["max"]) == (K, N) for r in result["test_alone"]) else None
        loss0 = ({e: alone_row["b"]["fixed"]["power"][str(e)] - alone_row["b"]["race"]["power"][str(e)] for e in EFFECTS}
                 if alone_row else {})
        power_ok = all(loss[e] <= 0.05 for e in beyond)
        targets.append({"K": K, "max": N, "trials_b": shares["b"], "trials_c": shares["c"], "trials_met": met,
                        "margins_meeting_trials": need, "power_loss_margin": loss, "power_loss_test_alone": loss0,
                        "power_met_beyond_margin": power_ok})
        text = (f"- K = {K}, max {N}: trials used {pct(shares['b'])} (b), {pct(shares['c'])} (c): "
                f"**{'met' if met else 'NOT met'}**")
        if not met:
            text += (f" (the sweep meets ≤ 50% from margin {min(need):g} SD)" if need else
                     " (no margin in the sweep reaches 50%)")
        text += ("; power lost against the fixed design at |effect| "
                 + ", ".join(f"{e:g}: {100 * loss[e]:+.0f}" for e in EFFECTS) + " points")
        if beyond:
            text += f" — **{'met' if power_ok else 'NOT met'}** for effects at or beyond the margin"
        if inside:
            text += (f"; effects inside the margin ({', '.join(f'{e:g}' for e in inside)} SD) are mostly answered "
                     "'equivalent', which the margin makes a correct answer")
        if loss0:
            text += ("; with no margin (the test alone) the loss is "
                     + ", ".join(f"{100 * loss0[e]:+.0f}" for e in EFFECTS) + " points")
        lines.append(text + ".")
    wrong = max(r["race"]["wrong_direction"] for r in result["main"])
    lines.append(f"- Directional errors (an arm with a true effect declared better or worse the wrong way round): "
                 f"at most {wrong:.4f} of studies in any row above.")
    result["targets"] = targets
    result["cross_checked_studies"] = checked

    result["seconds"] = time.time() - began
    lines += ["", f"({result['seconds']:.0f} s)"]
    publish("race", result, lines)


if __name__ == "__main__":
    main()
