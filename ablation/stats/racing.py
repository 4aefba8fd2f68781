"""Racing seeds: which arms are decided, with a family-wise error guarantee that survives looking after
every seed.

A study compares K arms with a baseline, paired by seed. Every arm runs the first `start` seeds of the
study's seed order; an arm that is still undecided gets the next seed, up to `max_seeds`. After any new
result the decisions are recomputed from the finished trials alone: pure functions of numbers keyed by
arm and seed, with no Ray, MLflow or torch.

The method (chosen by simulation, benchmarks/race.py; its results in benchmarks/results/race.md):

* Each arm's sample is the paired differences (arm - baseline) on the longest PREFIX of the seed order
  on which both have finished. Looks therefore fall at n = start, start+1, ..., max_seeds pairs whatever
  the order in which trials finish, so the look schedule is fixed in advance.
* Better/worse: a group-sequential paired t-test with Lan-DeMets alpha spending of the power type,
  level (n / max_seeds)^8 (back-loaded: with 3-7 seeds the t statistic has so few degrees of freedom that
  an early boundary must be huge anyway, and the seeds are saved on the equivalence side; measured, this
  keeps the fixed design's power within 3 points where O'Brien-Fleming-type spending loses up to 6).
  Its boundaries are EXACT for the t statistic with unknown variance, not the usual normal approximation
  (which, measured here, exceeds its level by 10-25 % with 3-20 seeds): under "no difference" the t
  statistics t_n of a Gaussian sample form a Markov chain whose law does not depend on the variance (the
  direction of the data vector is uniform on the sphere, independent of its length; t_n is a function of
  the angle between the first n coordinates and the ones vector, and the next coordinate divided by the
  current length is a scaled Student t variable independent of that angle). `boundary` integrates that
  chain numerically, look by look, so that the probability of first crossing at each look is the alpha
  spent there. A two-sided test at level a uses the one-sided boundary at a/2 on each side.
  Each arm's sequential p-value (the smallest level whose boundary its path has crossed) is valid at any
  look, so Holm's step-down over the arms, applied at every look, keeps the family-wise error at alpha:
  the first false rejection needs min over the m0 true nulls of their (running minimum) p-values to be
  <= alpha / m0, which each does with probability <= alpha / m0.
* Equivalent: the arm's repeated confidence interval (the running intersection of x_n +- c_n s_n/sqrt n
  over the looks so far, with Pocock-type spending, which spends early because the seeds saved come from
  arms that are equal) lies inside +-margin. That is a sequential TOST: both one-sided tests of
  |difference| >= margin reject at level e. Holm's step-down runs over these equivalence p-values too,
  with the same argument.
* An arm that reaches `max_seeds` undecided ends "undecided at max".

The guarantee (Gaussian paired differences, any variance, any number of arms, any order of finishing):
P(some arm whose true mean difference is 0 is ever declared better or worse) <= alpha, and
P(some arm whose true mean difference is at least the margin in size is ever declared equivalent)
<= alpha. Mode "best" has its own (see `decide`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ablation.stats.boundaries import (EQUIVALENCE_SPENDING, TEST_SPENDING, _boundaries, _check_design, _levels,
                                       _sequential_p)
from ablation.stats.paths import NO_SPREAD, crossed, holm_adjust, holm_step_down, pair_path, running_interval, strictest

RACING, BETTER, WORSE, EQUIVALENT, UNDECIDED = "racing", "better", "worse", "equivalent", "undecided at max"
STOPPED = "stopped"  # undecided, and no seed can come: a seed it needs next failed for good
STATES = (RACING, BETTER, WORSE, EQUIVALENT, UNDECIDED, STOPPED)
MODES = ("baseline", "best")


@dataclass(frozen=True)
class Decision:
    """Where one arm stands in the race."""

    arm: str
    state: str  # one of STATES
    seeds: int  # paired seeds finished: the longest prefix of the seed order (capped at max_seeds)
    decided_at: int | None  # the arm's seeds when the decision was reached; max_seeds when undecided at max
    low: float  # the sequentially valid interval of the mean difference (arm - `against`) at `confidence`:
    high: float  # the test's for better/worse, the equivalence one otherwise (nan before `start` seeds)
    mean: float  # mean difference at decided_at (or at `seeds` while racing)
    p_value: float  # anytime-valid p-value of "no difference", Holm-adjusted across the arms
    confidence: float = math.nan  # the interval's confidence level
    against: str = ""  # the baseline, or in mode "best" the arm it was compared with (the leader)
    note: str = ""  # why an arm is where it is when the state alone does not say (no spread, a failed seed)

    @property
    def decided(self) -> bool:
        return self.state != RACING


# ---------------------------------------------------------------------------------------------------
# Decisions


def _check(alpha: float, margin: float, mode: str, seeds: Sequence[Hashable], max_seeds: int, start: int) -> None:
    _check_design(start, max_seeds)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), not {alpha}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, not {margin}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if len(seeds) < max_seeds:
        raise ValueError(f"the seed order lists {len(seeds)} seeds, fewer than max_seeds ({max_seeds})")
    if len(set(seeds)) != len(seeds):
        raise ValueError("the seed order repeats a seed")


def decide(values: Mapping[str, Mapping[Hashable, float]], baseline: str, seeds: Sequence[Hashable], *,
           margin: float, alpha: float = 0.05, max_seeds: int, start: int = 3, mode: str = "baseline",
           higher_is_better: bool = True, arms: Sequence[str] | None = None,
           test_spending: str = TEST_SPENDING, equivalence_spending: str = EQUIVALENCE_SPENDING,
           failed: Mapping[str, Collection[Hashable]] | None = None) -> dict[str, Decision]:
    """Each arm's state in the race, recomputed from scratch from the finished trials.

    `values`: arm -> seed -> metric of FINISHED trials only (the baseline's among them). `seeds`: the
    study's seed order (at least `max_seeds` long); every arm runs the first `start`. `arms`: the whole
    family of arms compared (default: every key of `values` but the baseline); pass it whenever some arm
    may have no finished trial yet, since Holm's correction must count it. `margin` is in the metric's
    units; `higher_is_better` says which sign is "better". `failed`: arm -> seeds that failed for good
    (never a result); an open arm whose next seed is among them, or among the baseline's, is "stopped".
    An arm whose differences so far are all the same (no seed-to-seed spread, to RESOLUTION) has no t
    statistic: no rule fires on such a look, and its Decision's note says so.

    The same data always give the same decisions, and more data never undo one: the race is evaluated at
    looks n = start..max_seeds, each arm using its first min(n, its seeds) pairs, and an arm's decision is
    the first look at which a rule fired for it. (A later result of another arm can move an arm's decision
    to an earlier look, or make an arm that stopped as equivalent "better" or "worse" instead, through
    Holm's step-down; it cannot make a decided arm undecided.)

    mode "baseline": every arm against the baseline (module docstring). The baseline gets no Decision.
    mode "best": which arm (baseline included) is best. An arm is dropped ("worse") once another arm is
    significantly better than it; the last arm standing is "better" (the best); the arms standing are all
    "equivalent" once every pair of them is within +-margin. Every pair uses the group-sequential t-test
    (`test_spending`) and the equivalence interval (`equivalence_spending`), each one-sided at
    alpha / (2 (A - 1)) for A arms, with no Holm step. Guarantee: P(the best arm is dropped, or the race
    ends with the arms standing declared within the margin of each other while one of them is `margin` or
    more below the best) <= alpha, whichever arm leads when (a union bound over the A - 1 pairs that
    contain the best arm, both sides). It does not bound how often an arm that is not the best is dropped
    by another that is not better than it.
    """
    _check(alpha, margin, mode, seeds, max_seeds, start)
    family = [a for a in (arms if arms is not None else values) if a != baseline]
    if len(set(family)) != len(family):
        raise ValueError("an arm is listed twice")
    order = list(seeds)[:max_seeds]
    sign = 1.0 if higher_is_better else -1.0
    if mode == "best":
        decisions = _decide_best(values, [baseline, *family], order, margin, alpha, max_seeds, start, sign,
                                 test_spending, equivalence_spending)
    else:
        decisions = _decide_baseline(values, baseline, family, order, margin, alpha, max_seeds, start, sign,
                                     test_spending, equivalence_spending)
    return _stop_stuck(decisions, failed or {}, baseline if mode == "baseline" else None, order)


def _stop_stuck(decisions: dict[str, Decision], failed: Mapping[str, Collection[Hashable]], baseline: str | None,
                order: Sequence[Hashable]) -> dict[str, Decision]:
    """An open arm whose next seed failed for good (its own, or the baseline's it pairs with) can get no
    more data: it is stopped where it stands, undecided, with the reason."""
    out = {}
    for arm, d in decisions.items():
        seed = order[d.seeds] if d.seeds < len(order) else None
        if d.decided or seed is None:
            note = None
        elif seed in failed.get(arm, ()):
            note = f"seed {seed} failed for good: no pairs beyond {d.seeds} seeds"
        elif baseline is not None and seed in failed.get(baseline, ()):
            note = f"the baseline's seed {seed} failed for good: every open arm stops at {d.seeds} seeds"
        else:
            note = None
        out[arm] = d if note is None else replace(d, state=STOPPED, decided_at=d.seeds, note=note)
    return out


def _decide_baseline(values, baseline, family, order, margin, alpha, max_seeds, start, sign, test_spending,
                     equivalence_spending) -> dict[str, Decision]:
    K = len(family)
    if K == 0:
        return {}
    looks = max_seeds - start + 1
    holm_levels = [alpha / (K - r) for r in range(K)]  # rank r: the (r+1)-th step of Holm's step-down
    test_levels = _levels([a / 2 for a in holm_levels])
    test_bounds = _boundaries(start, max_seeds, test_levels, test_spending)
    test_rows = [test_levels.index(float(a / 2)) for a in holm_levels]
    eq_bounds = _boundaries(start, max_seeds, tuple(float(a) for a in holm_levels), equivalence_spending)

    paths, test_rank, eq_rank, up_first = [], np.full((K, looks), K), np.full((K, looks), K), []
    for j, arm in enumerate(family):
        path = pair_path(values, arm, baseline, order, sign, start, max_seeds)
        paths.append(path)
        t = path.t()
        up = crossed(t, test_bounds[test_rows])
        down = crossed(-t, test_bounds[test_rows])
        r_up, r_down = strictest(up, K), strictest(down, K)
        test_rank[j] = np.minimum(r_up, r_down)
        up_first.append(r_up <= r_down)
        low, high = running_interval(path, eq_bounds)
        eq_rank[j] = strictest((low > -margin) & (high < margin), K)

    fired = _first_fire(test_rank, eq_rank, up_first, [p.n for p in paths], start, looks, K)

    # p-values at everyone's full data, Holm-adjusted (consistent with the decisions: see `decide`)
    raw = []
    for j, path in enumerate(paths):
        used = max(0, min(path.n, max_seeds) - start + 1)
        t = path.t()
        one = min(_sequential_p(t, test_levels, test_bounds, used), _sequential_p(-t, test_levels, test_bounds, used))
        raw.append(min(1.0, 2 * one))
    adjusted = holm_adjust(raw)

    out = {}
    for j, (arm, path) in enumerate(zip(family, paths)):
        seeds_done = min(path.n, max_seeds)
        look, state, rank, decided_at = _standing(fired[j], seeds_done, start, max_seeds)
        mean, low, high, confidence = math.nan, math.nan, math.nan, math.nan
        if look >= 0:
            mean = float(path.mean[look]) * sign
            if state in (BETTER, WORSE):
                level = holm_levels[rank]
                lo, hi = running_interval(path, test_bounds[[test_rows[rank]]])
                confidence = 1 - level
            else:
                level = holm_levels[rank] if state == EQUIVALENT else alpha / K
                lo, hi = running_interval(path, eq_bounds[[holm_levels.index(level)]])
                confidence = 1 - 2 * level
            low, high = float(lo[0, look]), float(hi[0, look])
            if sign < 0:
                low, high = -high, -low
        note = NO_SPREAD if look >= 0 and state in (RACING, UNDECIDED) and path.flat[look] else ""
        out[arm] = Decision(arm, state, seeds_done, decided_at, low, high, mean, adjusted[j], confidence, baseline,
                            note)
    return out


def _standing(fired, seeds_done: int, start: int, max_seeds: int) -> tuple[int, str, int | None, int | None]:
    """(look, state, Holm rank, decided_at) of an arm: where a rule fired for it, or where it stands."""
    if fired is not None:
        look, state, rank = fired
        return look, state, rank, start + look
    state = UNDECIDED if seeds_done >= max_seeds else RACING
    return seeds_done - start, state, None, (max_seeds if state == UNDECIDED else None)


def _first_fire(test_rank: np.ndarray, eq_rank: np.ndarray, up_first: Sequence[np.ndarray], counts: Sequence[int],
                start: int, looks: int, K: int) -> list[tuple[int, str, int] | None]:
    """Looks n = start..max in turn, each arm at its own look min(n, its pairs): Holm's step-down over the
    test ranks and over the equivalence ranks; an arm's decision is the first look that decides it.
    Returns per arm (its look index, state, Holm rank) or None."""
    fired: list[tuple[int, str, int] | None] = [None] * K
    for i in range(looks):
        at = [min(i, n - start) for n in counts]  # negative: not yet at start
        tr = np.array([test_rank[j, a] if a >= 0 else K for j, a in enumerate(at)])
        er = np.array([eq_rank[j, a] if a >= 0 else K for j, a in enumerate(at)])
        rejected, equivalent = holm_step_down(tr), holm_step_down(er)
        for j in range(K):
            if at[j] < 0 or (fired[j] is not None and fired[j][1] != EQUIVALENT):
                continue
            if rejected[j]:  # the differences are signed: "up" is better
                # An arm stopped as equivalent that Holm rejects later (other arms' p-values fell) is
                # better or worse: its decision follows its adjusted p-value, which is then <= alpha.
                fired[j] = (at[j], BETTER if up_first[j][at[j]] else WORSE, int(tr[j]))
            elif equivalent[j] and fired[j] is None:
                fired[j] = (at[j], EQUIVALENT, int(er[j]))
    return fired


def _decide_best(values, arms, order, margin, alpha, max_seeds, start, sign, test_spending,
                 equivalence_spending) -> dict[str, Decision]:
    A = len(arms)
    if A < 2:
        return {}
    looks = max_seeds - start + 1
    level = alpha / (2 * (A - 1))
    test_levels = _levels([level])
    test_bounds = _boundaries(start, max_seeds, test_levels, test_spending)
    row = test_levels.index(float(level))
    eq_bounds = _boundaries(start, max_seeds, (float(level),), equivalence_spending)
    own = []
    for arm in arms:
        done = values.get(arm, {})
        count = 0
        for seed in order:
            if seed not in done:
                break
            count += 1
        own.append(count)

    # pair (i, j), i < j: differences i - j (signed so that positive means i is better)
    beats = np.full((A, A), looks, dtype=int)  # beats[i, j]: first look index at which i is shown better than j
    within = np.zeros((A, A, looks), dtype=bool)  # running equivalence interval of the pair inside +-margin
    paths = {}
    for i in range(A):
        for j in range(i + 1, A):
            path = pair_path(values, arms[i], arms[j], order, sign, start, max_seeds)
            paths[i, j] = path
            t = path.t()
            for a, b, tt in ((i, j, t), (j, i, -t)):
                hit = crossed(tt, test_bounds[[row]])[0]
                if hit.any():
                    beats[a, b] = int(hit.argmax())
            lo, hi = running_interval(path, eq_bounds)
            within[i, j] = within[j, i] = (lo[0] > -margin) & (hi[0] < margin)
    dropped_at = [looks] * A
    by = [None] * A
    for j in range(A):
        for i in range(A):
            if i != j and beats[i, j] < dropped_at[j]:
                dropped_at[j], by[j] = int(beats[i, j]), i

    states: list[tuple[int, str] | None] = [None] * A
    for j in range(A):
        if dropped_at[j] < looks:
            states[j] = (dropped_at[j], WORSE)
    for i in range(looks):
        standing = [j for j in range(A) if dropped_at[j] > i]
        if len(standing) == 1:
            states[standing[0]] = (i, BETTER)
            break
        if all(own[a] >= start for a in standing) and all(
                within[a, b, i] for a in standing for b in standing if a < b):
            for a in standing:
                states[a] = (i, EQUIVALENT)
            break

    # the p-value that an arm is the best: Bonferroni over its A - 1 rivals, both directions of the pair
    raw = []
    for j in range(A):
        best = 1.0
        for i in range(A):
            if i == j:
                continue
            path = paths[min(i, j), max(i, j)]
            t = path.t() if i < j else -path.t()
            used = max(0, min(path.n, max_seeds) - start + 1)
            best = min(best, _sequential_p(t, test_levels, test_bounds, used))
        raw.append(min(1.0, 2 * (A - 1) * best))
    out = {}
    for j, arm in enumerate(arms):
        seeds_done = min(own[j], max_seeds)
        if states[j] is not None:
            look, state = states[j]
            look = min(look, seeds_done - start)
        else:
            look = seeds_done - start
            state = UNDECIDED if seeds_done >= max_seeds else RACING
        decided_at = start + look if state not in (RACING, UNDECIDED) else (max_seeds if state == UNDECIDED else None)
        # compared with: whoever dropped it, else the arm ahead of it by the most at its look (for the
        # leader: the runner-up)
        rival = by[j] if state == WORSE else None
        if rival is None and look >= 0:
            ahead = {}
            for i in range(A):
                if i == j:
                    continue
                path = paths[min(i, j), max(i, j)]
                if path.n >= start:
                    ahead[i] = path.mean[min(look, path.n - start)] * (1.0 if i < j else -1.0)
            if ahead:
                rival = max(ahead, key=lambda i: (ahead[i], -i))
        p = raw[j] if state != BETTER else max(raw[i] for i in range(A) if i != j)
        mean = low = high = confidence = math.nan
        note = ""
        if rival is not None and look >= 0:
            path = paths[min(rival, j), max(rival, j)]
            at = min(look, path.n - start)
            if state in (RACING, UNDECIDED) and path.flat[at]:
                note = NO_SPREAD
            flip = 1.0 if j < rival else -1.0  # paths hold (lower index - higher index)
            bounds = test_bounds[[row]] if state == WORSE else eq_bounds
            lo, hi = running_interval(path, bounds)
            lo, hi = float(lo[0, at]), float(hi[0, at])
            m = float(path.mean[at])
            if flip < 0:
                lo, hi, m = -hi, -lo, -m
            if sign < 0:
                lo, hi, m = -hi, -lo, -m
            mean, low, high = m, lo, hi
            confidence = 1 - 2 * level
        out[arm] = Decision(arm, state, seeds_done, decided_at, low, high, mean, p, confidence,
                            arms[rival] if rival is not None else "", note)
    return out
