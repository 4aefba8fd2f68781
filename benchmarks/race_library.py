"""The library itself on benchmarks/race.py's simulated studies: `racing.decide`, `fixed.naive_decide` and
`fixed.fixed_decide` run one round at a time on a sample of them, to hold the vectorised procedures
(race_vectorised.py) to the library decision by decision (`cross_check`; mode "best": `library_best`), and the
library's look loop under asynchronous arrival (`async_study`), which a synchronous simulator cannot show."""

from __future__ import annotations

import heapq

import numpy as np
from race_simulate import START  # benchmarks/, the script's own folder
from race_vectorised import CODE, RACING_, UNDECIDED_, fixed, metric_scale, naive, race

from ablation.stats import fixed as fixed_designs
from ablation.stats import racing


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
