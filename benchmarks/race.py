"""Racing seeds, measured: the family-wise error, power and cost of `ablation.racing` against the fixed
design (every arm max seeds) and the naive race (a t-test after every seed), by simulation at the sizes
a study uses (start 3 seeds, max 8-20, 5 or 15 arms against a baseline).

    .venv/bin/python benchmarks/race.py [--tracking-uri URI --study NAME [--metric test_macro_f1]]
                                        [--sd SD] [--studies 2000] [--margin 2.0] [--quick]

Paired seed noise comes from a real study: given --tracking-uri and --study, the study is read back from
MLflow (`ablation.tracking.find_study` / `study_trials`) and the SD of the paired difference arm -
baseline is pooled over its arms (`--metric`, default test_macro_f1); its two-way (arm x seed) residuals
also drive a non-Gaussian check. With neither, a small real study is run first with the tool itself
(quickstart.yaml at 32 px, 6 seeds, into a temporary store: minutes on 2 cores) and read back. --sd
skips the study (Gaussian noise of that SD only). Every procedure here is scale-free, so effects and the
margin are set in units of that SD and converted to the metric for the record.

Each vectorised simulator below mirrors `ablation.racing` exactly; `cross_check` runs the library's own
`decide`, `naive_decide` and `fixed_decide` on a sample of the simulated studies and stops if a single
decision differs. Writes benchmarks/results/race.{json,md}.
"""

from __future__ import annotations

import argparse
import heapq
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

from ablation import racing

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
    from ablation.report import arm_name, collect, default_baseline
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


def look_stats(D: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Prefix mean and standard error of D (..., N) at looks n = start..N."""
    N = D.shape[-1]
    n = np.arange(1, N + 1)
    cs, cq = np.cumsum(D, -1), np.cumsum(D * D, -1)
    mean = cs / n
    var = np.maximum(cq - n * mean * mean, 0) / np.maximum(n - 1, 1)
    se = np.sqrt(var / n)
    scale = np.maximum(np.abs(mean), np.sqrt(cq / n))
    se = np.where(np.sqrt(var) <= 1e-12 * np.maximum(scale, 1e-300), np.nan, se)  # no spread: no look, as racing
    return mean[..., start - 1:], se[..., start - 1:]


def cumor(x: np.ndarray) -> np.ndarray:
    return np.logical_or.accumulate(x, axis=-1)


def holm_mask(ranks: np.ndarray) -> np.ndarray:
    """Holm's step-down on rank arrays (..., K), as `racing._holm`."""
    K = ranks.shape[-1]
    order = np.sort(ranks, axis=-1)
    failing = order > np.arange(K)
    count = np.where(failing.any(-1), failing.argmax(-1), K)
    return ranks < count[..., None]


# boundaries: callables (start, N, levels) -> array (len(levels), looks) of one-sided t boundaries

def exact_bounds(spending: str):
    return lambda start, N, levels: racing._boundaries(start, N, tuple(float(a) for a in levels), spending)


def ranks(D: np.ndarray, start: int, margin: float, alpha: float, test_bounds, eq_bounds):
    """Per study, arm and look: the strictest Holm rank at which the sequential test has crossed (either
    side), whether the upper side came first, and the strictest rank at which the repeated equivalence
    interval lies inside +-margin: exactly `racing._decide_baseline`'s arrays."""
    _, K, N = D.shape
    mean, se = look_stats(D, start)
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
    none. Returns states (S, K) and the look index each arm stopped at."""
    S, K, L = test_rank.shape
    state = np.zeros((S, K), dtype=int)
    at = np.full((S, K), L - 1)
    rows = np.arange(S)[:, None]
    cols = np.arange(K)[None, :]
    for i in range(L):
        idx = np.where(state == RACING_, i, at)
        tr, er, uf = test_rank[rows, cols, idx], eq_rank[rows, cols, idx], up_first[rows, cols, idx]
        verdict = np.where(holm_mask(tr), np.where(uf, BETTER_, WORSE_), np.where(holm_mask(er), EQUIV_, RACING_))
        fire = (state == RACING_) & (verdict != RACING_)
        state = np.where(fire, verdict, state)
        at = np.where(fire, i, at)
    return np.where(state == RACING_, UNDECIDED_, state), at


def race(D, start, margin, alpha, test_bounds=None, eq_bounds=None):
    """The chosen procedure (or the candidate given by its boundaries), synchronously: states, seeds."""
    test_bounds = test_bounds or exact_bounds(racing.TEST_SPENDING)
    eq_bounds = eq_bounds or exact_bounds(racing.EQUIVALENCE_SPENDING)
    tr, uf, er = ranks(D, start, margin, alpha, test_bounds, eq_bounds)
    state, at = run_race(tr, uf, er)
    return state, at + start


def fixed_ranks(mean, se, n, K, alpha, margin, holm=True):
    """Fixed-sample t-test and TOST ranks at one look with n pairs (as `racing._fixed_ranks`)."""
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


def fixed(D, margin, alpha):
    _, K, N = D.shape
    mean, se = look_stats(D, N)
    test, eq, up = fixed_ranks(mean[..., 0], se[..., 0], N, K, alpha, margin)
    return np.where(holm_mask(test), np.where(up, BETTER_, WORSE_), np.where(holm_mask(eq), EQUIV_, UNDECIDED_))


def naive(D, start, margin, alpha, holm=False):
    S, K, N = D.shape
    mean, se = look_stats(D, start)
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
    cum = racing.spent(spending, level, fractions)
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
    fn = {"race": racing.decide, "naive": racing.naive_decide,
          "naive_holm": lambda *a, **k: racing.naive_decide(*a, holm=True, **k)}[kind]
    while True:
        values = {name: {s: float(X[a, s]) for s in range(have[name])} for a, name in enumerate(names)}
        got = fn(values, "baseline", seeds, margin=margin, alpha=alpha, max_seeds=N, start=start, arms=names[1:])
        open_ = [a for a, d in got.items() if d.state == racing.RACING]
        if not open_:
            return ([CODE[got[a].state] for a in names[1:]], [got[a].decided_at for a in names[1:]])
        for a in open_:
            have[a] += 1
        have["baseline"] = max(have[a] for a in names[1:])


def cross_check(X, deltas, N, margin, alpha, count: int) -> int:
    """The vectorised simulators against the library, decision by decision, on `count` studies."""
    D = X[:, 1:] - X[:, :1]
    st, used = race(D, START, margin, alpha)
    nv, nused = naive(D, START, margin, alpha)
    nh, hused = naive(D, START, margin, alpha, holm=True)
    fx = fixed(D, margin, alpha)
    checked = 0
    for s in range(count):
        for kind, (ref_state, ref_used) in (("race", (st, used)), ("naive", (nv, nused)), ("naive_holm", (nh, hused))):
            states, at = library_race(X[s], START, margin, alpha, kind)
            if states != ref_state[s].tolist() or at != ref_used[s].tolist():
                raise SystemExit(f"cross-check failed ({kind}, study {s}): library {states} {at}, "
                                 f"simulator {ref_state[s].tolist()} {ref_used[s].tolist()}")
        names = ["baseline"] + [f"arm{j}" for j in range(1, X.shape[1])]
        values = {name: {i: float(X[s, a, i]) for i in range(N)} for a, name in enumerate(names)}
        got = racing.fixed_decide(values, "baseline", list(range(N)), margin=margin, alpha=alpha, max_seeds=N,
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
        mean, se = look_stats(X[:, i] - X[:, j], start)
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
which `ablation.racing.boundary` integrates numerically; exact up to that integration, checked by Monte
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
    args = parser.parse_args()
    began = time.time()
    rng = np.random.default_rng(args.seed)
    S, m = args.studies, args.margin

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
        c = racing.boundary(start, N, level, kind)
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
            c = racing.boundary(START, N, ALPHA / K, racing.EQUIVALENCE_SPENDING)
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
