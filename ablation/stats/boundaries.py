"""The boundaries of the race's group-sequential tests: Lan-DeMets alpha spending, and the exact null
law of the paired t statistic over looks, integrated look by look, so that the chance of first crossing
at each look is the alpha spent there (see `racing` for the method and its guarantee). Also the
sequential p-value of a path: the smallest level whose boundary it has crossed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache, lru_cache

import numpy as np
from scipy import special, stats

TEST_SPENDING = "power8"  # better/worse: alpha t^8, back-loaded, keeps the fixed design's power at max
EQUIVALENCE_SPENDING = "pocock"  # equivalence: Pocock type, spends early, where the savings are
SPENDINGS = ("obf", "pocock", "linear", "power<rho>")

# ---------------------------------------------------------------------------------------------------
# Alpha spending


def spent(kind: str, level: float, fraction):
    """One-sided alpha spent by information `fraction` (0..1] under a Lan-DeMets spending function for a
    total of `level`: "obf" (O'Brien-Fleming type, 2 - 2 Phi(z_{1-level/2} / sqrt t)), "pocock" (level
    ln(1 + (e - 1) t)), "linear" (level t) or "power<rho>" (Kim-DeMets, level t^rho, e.g. "power3")."""
    t = np.asarray(fraction, dtype=float)
    if kind == "obf":
        return 2 * stats.norm.sf(stats.norm.isf(level / 2) / np.sqrt(t))
    if kind == "pocock":
        return level * np.log1p((math.e - 1) * t)
    if kind == "linear":
        return level * t
    if kind.startswith("power") and kind[5:].replace(".", "", 1).isdigit():  # Kim-DeMets: level t^rho
        return level * t ** float(kind[5:])
    raise ValueError(f"unknown spending function {kind!r} (known: {', '.join(SPENDINGS)})")


# ---------------------------------------------------------------------------------------------------
# The null law of the t statistic over looks
#
# State after k observations: rho_k = sum(x) / (sqrt(k) |x|) in [-1, 1], the cosine of the angle between
# the data and the ones vector; t_k = sqrt(k - 1) rho_k / sqrt(1 - rho_k^2). With v = x_{k+1} / |x_{1..k}|,
# rho_{k+1} = (sqrt(k) rho_k + v) / (sqrt(k + 1) sqrt(1 + v^2)), and under "mean 0" (any sigma) sqrt(k) v is
# Student t with k degrees of freedom, independent of rho_1..rho_k. Writing v = tan(phi),
# rho_{k+1} = R sin(phi + psi) / sqrt(k + 1) with R = sqrt(k rho^2 + 1), psi = atan(sqrt(k) rho).

_BINS = 320  # bins of the state, uniform in the angle (finer near rho = +-1, where |t| is large)
_THETA = np.linspace(math.pi, 0.0, _BINS + 1)
_EDGES = np.cos(_THETA)
_EDGES[0], _EDGES[-1] = -1.0, 1.0
_CENTERS = np.cos((_THETA[:-1] + _THETA[1:]) / 2)
_PHI = np.linspace(-math.pi / 2, math.pi / 2, 2**16 + 1)  # table of the law of phi, per k


@cache
def _phi_table(k: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        table = special.stdtr(k, math.sqrt(k) * np.tan(_PHI))
    table[0], table[-1] = 0.0, 1.0
    return table


def _phi_cdf(phi: np.ndarray, k: int) -> np.ndarray:
    return np.interp(phi, _PHI, _phi_table(k))


def next_cdf(y, rho, k: int) -> np.ndarray:
    """P(rho_{k+1} <= y | rho_k = rho) under "mean 0"; y and rho broadcast."""
    y, rho = np.asarray(y, dtype=float), np.asarray(rho, dtype=float)
    radius = np.sqrt(k * rho * rho + 1.0)
    psi = np.arctan(math.sqrt(k) * rho)
    s = y * math.sqrt(k + 1) / radius
    beta = np.arcsin(np.clip(s, -1.0, 1.0))
    half = math.pi / 2

    def mass(lo, hi):  # P(lo < phi <= hi)
        lo, hi = np.maximum(lo, -half), np.minimum(hi, half)
        return np.where(hi > lo, _phi_cdf(hi, k) - _phi_cdf(lo, k), 0.0)

    # sin(w) <= s on (-pi, pi) is w in [-pi - beta, beta] U [pi - beta, pi); w = phi + psi.
    p = mass(-math.pi - beta - psi, beta - psi) + mass(math.pi - beta - psi, np.full_like(beta, half))
    return np.where(s >= 1, 1.0, np.where(s <= -1, 0.0, p))


@cache
def _transition(k: int) -> np.ndarray:
    """Bin-to-bin transition probabilities from k to k + 1 observations (from bin centres)."""
    cdf = next_cdf(_EDGES[None, :], _CENTERS[:, None], k)
    cdf[:, 0], cdf[:, -1] = 0.0, 1.0
    return np.diff(cdf, axis=1)


def _t(y: float, n: int) -> float:
    if y >= 1.0:
        return math.inf
    if y <= -1.0:
        return -math.inf
    return math.sqrt(n - 1) * y / math.sqrt(1.0 - y * y)


@lru_cache(maxsize=256)
def _boundaries(start: int, max_seeds: int, levels: tuple[float, ...], kind: str) -> np.ndarray:
    """One-sided upper boundaries on t, one row per level, one column per look n = start..max_seeds."""
    ns = np.arange(start, max_seeds + 1)
    cum = spent(kind, np.asarray(levels)[:, None], ns[None, :] / max_seeds)
    inc = np.diff(cum, axis=1, prepend=0.0)
    out = np.empty((len(levels), len(ns)))
    # first look: t_start is Student t with start - 1 degrees of freedom
    with np.errstate(divide="ignore"):
        t_edges = math.sqrt(start - 1) * _EDGES / np.sqrt(1.0 - _EDGES**2)
    cdf_edges = special.stdtr(start - 1, t_edges)
    masses = np.empty((len(levels), _BINS))
    for a, spend in enumerate(inc[:, 0]):
        c = stats.t.isf(spend, start - 1) if spend > 0 else math.inf
        out[a, 0] = c
        masses[a] = np.diff(np.minimum(cdf_edges, special.stdtr(start - 1, c)))
    for i in range(1, len(ns)):
        k = int(ns[i]) - 1  # observations before this look
        moved = masses @ _transition(k)
        above = np.cumsum(moved[:, ::-1], axis=1)[:, ::-1]  # crossing if the boundary sat at a lower edge
        spend = inc[:, i]
        none = ~(spend > 1e-300)  # nothing spent: no boundary
        everything = ~none & (spend >= above[:, 0])  # cannot happen at sane levels
        live = np.nonzero(~none & ~everything)[0]
        out[none, i], out[everything, i] = math.inf, -math.inf
        masses[everything] = 0.0
        masses[none] = moved[none]
        if not len(live):
            continue
        # the bin whose edges bracket the spend, then regula falsi (Illinois) inside it, all levels at once
        j = np.array([int(np.searchsorted(-above[a], -spend[a], side="right")) - 1 for a in live])
        j = np.minimum(j, _BINS - 1)
        lo, hi = _EDGES[j].copy(), _EDGES[j + 1].copy()
        edge_crossing = np.concatenate([above, np.zeros((len(levels), 1))], axis=1)  # 0 above rho = 1
        f_lo, f_hi = edge_crossing[live, j] - spend[live], edge_crossing[live, j + 1] - spend[live]
        source, wanted = masses[live], spend[live]

        def excess(y, source=source, wanted=wanted, k=k):
            return np.einsum("am,am->a", source, 1.0 - next_cdf(y[:, None], _CENTERS[None, :], k)) - wanted

        side = np.zeros(len(live))
        for _ in range(30):
            y = np.where(f_lo == f_hi, (lo + hi) / 2, hi - f_hi * (hi - lo) / (f_hi - f_lo))
            y = np.clip(y, lo, hi)
            f = excess(y)
            done = (np.abs(f) <= 1e-13 * spend[live]) | (hi - lo < 1e-15)
            if done.all():
                break
            left = f > 0  # still too much crossing: the boundary is higher
            f_hi = np.where(~left, f, np.where(side > 0, f_hi / 2, f_hi))
            f_lo = np.where(left, f, np.where(side < 0, f_lo / 2, f_lo))
            hi = np.where(~left, y, hi)
            lo = np.where(left, y, lo)
            side = np.where(left, 1.0, -1.0)
        n = int(ns[i])
        out[live, i] = [_t(v, n) for v in y]
        cut = next_cdf(y[:, None], _CENTERS[None, :], k) - next_cdf(_EDGES[j][:, None], _CENTERS[None, :], k)
        below = moved[live].copy()
        for row, (jj, mass) in enumerate(zip(j, np.einsum("am,am->a", source, cut))):
            below[row, jj + 1:] = 0.0
            below[row, jj] = mass
        masses[live] = below
    out.setflags(write=False)
    return out


def boundary(start: int, max_seeds: int, level: float, spending: str = TEST_SPENDING) -> np.ndarray:
    """The one-sided upper boundary c_n on the t statistic for looks n = start..max_seeds: under "mean 0",
    P(t_n >= c_n for some look n) = level, and the probability of first crossing at look n is the alpha
    `spending` spends between the previous look and n (inf where it spends nothing)."""
    _check_design(start, max_seeds)
    return _boundaries(start, max_seeds, (float(level),), spending)[0]


def _check_design(start: int, max_seeds: int) -> None:
    if start < 2:
        raise ValueError(f"start must be at least 2 seeds (a t statistic needs two), not {start}")
    if max_seeds < start:
        raise ValueError(f"max_seeds ({max_seeds}) must be at least start ({start})")


# p-values come from boundaries on a grid of levels that contains the decision levels exactly, so that
# "adjusted p <= alpha" and the decision agree; between grid levels, log p is interpolated linearly in log t.
_GRID = tuple(0.5 * 10 ** (-i / 4) for i in range(29))  # 0.5 down to 5e-8


def _levels(exact: Sequence[float]) -> tuple[float, ...]:
    return tuple(sorted({float(a) for a in exact} | set(_GRID)))


def _sequential_p(t: np.ndarray, levels: tuple[float, ...], bounds: np.ndarray, looks: int) -> float:
    """The smallest one-sided level whose boundary the path t crossed within its first `looks` looks."""
    best = 1.0
    log_levels = np.log(levels)
    for i in range(looks):
        ti = t[i]
        if not np.isfinite(ti):
            if ti == math.inf:
                return levels[0]
            continue
        c = bounds[:, i]
        ok = np.nonzero(c <= ti)[0]
        if not len(ok):
            continue
        j = int(ok[0])
        if j == 0:
            p = levels[0]
        elif not np.isfinite(c[j - 1]):
            p = levels[j]
        else:
            # log p is close to linear in log t in a t tail (p ~ t^-df): interpolate there
            if c[j] > 0 and ti > 0:
                w = (math.log(c[j - 1]) - math.log(ti)) / (math.log(c[j - 1]) - math.log(c[j]))
            else:
                w = (c[j - 1] - ti) / (c[j - 1] - c[j])
            p = math.exp(log_levels[j - 1] + w * (log_levels[j] - log_levels[j - 1]))
        best = min(best, p)
    return best
