"""One arm's path in a race: the paired differences with another arm over the seeds both have finished,
their statistics at each look, where they cross a boundary, their repeated confidence intervals, and
Holm's step-down over arms. Pure numpy; `racing` decides with them, `fixed` compares with them."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Metrics are logged as float32 (about 7 significant digits): paired differences whose spread is below a
# millionth of the metric's size are the same difference to within what the metric records.
RESOLUTION = 1e-6
NO_SPREAD = "no seed-to-seed spread: the metric cannot resolve this difference"


@dataclass(frozen=True)
class PrefixPath:
    """Prefix statistics of one sample of differences, per look n = start..max (nan beyond the data)."""

    n: int  # observations
    mean: np.ndarray
    se: np.ndarray  # nan where the spread is zero (no t statistic: a degenerate look counts as no look)
    flat: np.ndarray  # per look: True where the differences so far are all the same (to RESOLUTION)

    def t(self, shift: float = 0.0) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.mean - shift) / self.se


def prefix_path(diffs: Sequence[float], start: int, max_seeds: int, scale: float | np.ndarray = 0.0) -> PrefixPath:
    """`scale`: the size of the metric itself (per prefix, the running max |value| of the pair), below
    whose RESOLUTION a spread counts as none; the differences' own size is used where it is larger."""
    x = np.asarray(diffs, dtype=float)[:max_seeds]
    looks = max_seeds - start + 1
    mean, se, flat = np.full(looks, np.nan), np.full(looks, np.nan), np.zeros(looks, dtype=bool)
    if len(x) >= start:
        # Each prefix's variance about its OWN mean (two-pass, one row per prefix): sums centred on any
        # other mean leave round-off (~1e-10) where equal differences have none, and a t of 1e8 follows.
        n = np.arange(1, len(x) + 1)
        upto = np.tri(len(x), dtype=bool)  # row k: the first k + 1 observations
        m = np.cumsum(x) / n
        dev = np.where(upto, x[None, :] - m[:, None], 0.0)
        sd = np.sqrt((dev * dev).sum(axis=1) / np.maximum(n - 1, 1))
        size = np.maximum(np.asarray(scale, dtype=float)[:len(x)] if np.ndim(scale) else scale,
                          np.maximum.accumulate(np.abs(x)))
        none = sd <= RESOLUTION * size
        used = len(x) - start + 1
        mean[:used] = m[start - 1:]
        se[:used] = np.where(none, np.nan, sd / np.sqrt(n))[start - 1:]
        flat[:used] = none[start - 1:]
    return PrefixPath(len(x), mean, se, flat)


def crossed(t: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Per level (row) and look (column): has t crossed the level's upper boundary by that look?"""
    with np.errstate(invalid="ignore"):
        hit = t[None, :] >= bounds
    return np.logical_or.accumulate(hit, axis=1)


def running_interval(path: PrefixPath, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The repeated confidence interval per level (row) and look (column): the running intersection of
    mean +- c se over the looks so far (one-sided level each side)."""
    with np.errstate(invalid="ignore"):
        half = bounds * path.se[None, :]
        high = np.where(np.isnan(half), np.inf, path.mean[None, :] + half)
        low = np.where(np.isnan(half), -np.inf, path.mean[None, :] - half)
    return np.maximum.accumulate(low, axis=1), np.minimum.accumulate(high, axis=1)


def strictest(hit: np.ndarray, none: int) -> np.ndarray:
    """Per look: the first row (strictest level) hit, or `none`."""
    return np.where(hit.any(axis=0), hit.argmax(axis=0), none)


def holm_step_down(ranks: np.ndarray) -> np.ndarray:
    """Holm's step-down from ranks (rank r = the arm's p-value is <= alpha / (K - r); K = none): which
    arms it rejects. Sorted ascending, it rejects while the i-th smallest rank is <= i."""
    order = np.sort(ranks)
    failing = order > np.arange(len(ranks))
    count = int(failing.argmax()) if failing.any() else len(ranks)
    return ranks < count


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, capped at 1), in the order given."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def paired(values: Mapping[str, Mapping[Hashable, float]], arm: str, other: str, seeds: Sequence[Hashable],
            sign: float) -> list[float]:
    """sign * (arm - other) over the longest prefix of `seeds` on which both have finished."""
    mine, theirs = values.get(arm, {}), values.get(other, {})
    out = []
    for seed in seeds:
        if seed not in mine or seed not in theirs:
            break
        a, b = float(mine[seed]), float(theirs[seed])
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError(f"seed {seed!r}: {arm} = {a}, {other} = {b}; finished trials need finite values")
        out.append(sign * (a - b))
    return out


def paired_differences(values: Mapping[str, Mapping[Hashable, float]], arm: str, other: str,
                       seeds: Sequence[Hashable]) -> list[float]:
    """arm - other over the longest prefix of `seeds` both have finished: the sample a race decides on."""
    return paired(values, arm, other, seeds, 1.0)


def pair_path(values: Mapping[str, Mapping[Hashable, float]], arm: str, other: str, seeds: Sequence[Hashable],
               sign: float, start: int, max_seeds: int) -> PrefixPath:
    """The path of the paired differences arm - other, its zero-spread guard scaled to the metric."""
    diffs = paired(values, arm, other, seeds, sign)
    # Each prefix's own metric size: a later seed's huge value (a loss that blew up) must not flatten
    # the looks before it and so undo a decision they made.
    sizes = [max(abs(float(values[arm][s])), abs(float(values[other][s]))) for s in seeds[:len(diffs)]]
    return prefix_path(diffs, start, max_seeds, np.maximum.accumulate(sizes) if sizes else 0.0)
