"""What benchmarks/race.py's simulated decisions score: family-wise error, false equivalence, wrong directions,
power and trials used against the true differences (`measure`; mode "best": `measure_best`), the 95% Monte
Carlo half-width of a proportion (`mc`), and how a figure prints in the report (`fmt`, `pct`)."""

from __future__ import annotations

import math

import numpy as np
from race_simulate import EFFECTS  # benchmarks/, the script's own folder
from race_vectorised import BETTER_, EQUIV_, UNDECIDED_, WORSE_


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
# Mode "best"


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
