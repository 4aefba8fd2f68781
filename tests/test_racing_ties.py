"""Races on the metrics users have: accuracy and macro-F1 on a few hundred images are multiples of 1/n,
so paired differences tie, and the first seeds' differences can be exactly equal or exactly 0. The race
must decide on the data, never on round-off; a decision and its p-value must agree; an arm that can no
longer get seeds says so."""

from __future__ import annotations

import numpy as np
import pytest

from ablation.stats import paths, racing
from ablation.stats.racing import BETTER, EQUIVALENT, RACING, STOPPED, UNDECIDED, WORSE

IMAGES = 200  # a validation split: every score is a multiple of 1/200


def scores(rng: np.random.Generator, seeds: int, p: float = 0.62) -> np.ndarray:
    """Accuracy of one arm over `seeds` seeds on IMAGES images: a multiple of 1/IMAGES."""
    return rng.binomial(IMAGES, p, seeds) / IMAGES


def race(values, **kw):
    args = {"margin": 0.02, "max_seeds": 8, "start": 3} | kw
    return racing.decide(values, "base", range(args["max_seeds"]), **args)


def test_one_image_better_on_the_first_seeds_is_no_evidence():
    """The arm is one image better on seeds 0-2 and no different after: at look 3 the three differences
    are equal, so there is no spread to test against. Before the fix round-off left an SD of ~1e-10 and
    298 of 300 such arms were called better at look 3 with p = 1e-7."""
    rng = np.random.default_rng(7)
    for _ in range(100):
        base = scores(rng, 8)
        arm = base + rng.integers(-3, 4, 8) / IMAGES  # a true difference of 0 from seed 3 on
        arm[:3] = base[:3] + 1 / IMAGES
        got = race({"base": dict(enumerate(base)), "a": dict(enumerate(arm))})["a"]
        assert got.decided_at != 3 and got.p_value > 1e-4, got


def test_null_races_on_tied_scores_keep_alpha():
    """Paired differences of -1, 0 or +1 image (a quarter, a half, a quarter): a sixth of the arms start
    with three equal differences. Three arms against a baseline, margin 0 (no equivalence stop): the
    family-wise error stays within alpha (0.05) up to simulation error (400 races: SE 0.011)."""
    rng = np.random.default_rng(11)
    wrong = 0
    for _ in range(400):
        base = scores(rng, 8)
        values = {"base": dict(enumerate(base))}
        for k in range(3):
            values[f"a{k}"] = dict(enumerate(base + rng.choice([-1, 0, 0, 1], 8) / IMAGES))
        wrong += any(d.state in (BETTER, WORSE) for d in race(values, margin=0.0).values())
    assert wrong / 400 <= 0.05 + 2.5 * 0.011


def test_three_exact_zeros_do_not_make_a_large_difference_equivalent():
    """The first three differences are exactly 0 and the true difference is 5 margins: before the fix
    278 of 300 such arms were called equivalent at look 3 (an interval of round-off width)."""
    rng = np.random.default_rng(8)
    for _ in range(50):
        base = scores(rng, 8)
        arm = base + 0.10 + rng.integers(-4, 5, 8) / IMAGES
        arm[:3] = base[:3]
        got = race({"base": dict(enumerate(base)), "a": dict(enumerate(arm))})["a"]
        assert got.state != EQUIVALENT, got


def test_prefix_variance_is_each_prefixs_own():
    """The look at n seeds uses the sample variance of those n seeds about their own mean."""
    rng = np.random.default_rng(3)
    x = rng.binomial(IMAGES, 0.6, 10) / IMAGES - 0.6
    path = paths.prefix_path(x, 3, 10)
    for i, n in enumerate(range(3, 11)):
        assert path.mean[i] == pytest.approx(x[:n].mean(), abs=1e-15)
        assert path.se[i] == pytest.approx(x[:n].std(ddof=1) / np.sqrt(n), rel=1e-12)


@pytest.mark.parametrize("shift", [0.0, 1e-9, -1e-9])
def test_no_spread_decides_nothing_and_says_why(shift):
    """An arm that is +0.05 on every seed has no seed-to-seed spread and so no t statistic: it races to
    max and ends undecided with a note saying the metric cannot resolve the difference. Differences
    below the metric's float resolution (a millionth of its size) are the same difference, so a 1e-9
    perturbation changes nothing (before, it made the arm "better")."""
    base = [0.55, 0.60, 0.58, 0.61, 0.57, 0.59, 0.60, 0.56]
    arm = [b + 0.05 for b in base]
    arm[4] += shift
    values = {"base": dict(enumerate(base)), "flat": dict(enumerate(arm))}
    got = race(values)["flat"]
    assert (got.state, got.decided_at) == (UNDECIDED, 8)
    assert got.p_value == 1.0 and got.mean == pytest.approx(0.05)
    assert "no seed-to-seed spread" in got.note
    racing_so_far = race({arm: {s: v for s, v in by.items() if s < 5} for arm, by in values.items()})["flat"]
    assert racing_so_far.state == RACING and "no seed-to-seed spread" in racing_so_far.note


def test_a_real_spread_still_decides():
    base = [0.55, 0.60, 0.58, 0.61, 0.57, 0.59, 0.60, 0.56]
    arm = [b + 0.05 + d for b, d in zip(base, [0.0, 0.005, -0.005, 0.0, 0.005, 0.0, -0.005, 0.005])]
    got = race({"base": dict(enumerate(base)), "a": dict(enumerate(arm))}, margin=0.0)["a"]
    assert got.state == BETTER and got.note == ""


def test_an_equivalent_arm_that_holm_later_rejects_becomes_better():
    """Holm's step-down can reject an arm after it stopped as equivalent (another arm's later results
    loosen its level). Its decision follows its p-value: the report never shows "equivalent" beside an
    adjusted p <= alpha."""
    rng = np.random.default_rng(0)
    found = 0
    for _ in range(400):
        base = rng.normal(0, 1, 12)
        values = {"base": dict(enumerate(base))}
        for k, effect in enumerate([0.9, 0.9, 0.0, 3.0]):
            values[f"a{k}"] = dict(enumerate(base + effect + rng.normal(0, 1, 12)))
        decisions = racing.decide(values, "base", range(12), margin=1.6, max_seeds=12, start=3)
        for d in decisions.values():
            if d.state == EQUIVALENT:
                assert d.p_value > 0.05, d
            if d.state in (BETTER, WORSE):
                assert d.p_value <= 0.05, d
            found += d.state == BETTER and d.decided_at is not None
    assert found


def test_the_inconsistent_case_is_reached():
    """The case above needs an arm equivalent at an early look whose test Holm rejects only once the
    other arms' p-values fall. Built by hand: a0's difference is small and steady (equivalent at look 3
    under margin 0.5), and significant once Holm divides alpha by fewer arms."""
    base = [0.0] * 8
    a0 = [0.20, 0.22, 0.21, 0.20, 0.22, 0.21, 0.20, 0.22]
    big = [1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 1.02, 0.98]
    values = {"base": dict(enumerate(base)), "a0": dict(enumerate(a0)),
              "a1": {s: v for s, v in enumerate(big)}, "a2": {s: -v for s, v in enumerate(big)}}
    got = race(values, margin=0.5)
    for d in got.values():
        assert (d.state in (BETTER, WORSE)) == (d.p_value <= 0.05), d


def test_an_arm_whose_seed_failed_for_good_is_stopped():
    base = [0.55, 0.60, 0.58, 0.61, 0.57]
    values = {"base": dict(enumerate(base)), "a": {0: 0.56, 1: 0.60, 2: 0.59},
              "b": {s: v + d for s, (v, d) in enumerate(zip(base, [0.03, -0.03, 0.02, -0.02, 0.01]))}}
    got = race(values, failed={"a": [3]})
    assert got["a"].state == STOPPED and got["a"].decided and "seed 3 failed" in got["a"].note
    assert got["b"].state == RACING


def test_a_failed_baseline_seed_stops_every_open_arm():
    base = {0: 0.55, 1: 0.60, 2: 0.58}
    values = {"base": base, "a": {0: 0.56, 1: 0.60, 2: 0.59}, "b": {0: 0.57, 1: 0.61, 2: 0.58}}
    got = race(values, failed={"base": [3]})
    assert {d.state for d in got.values()} == {STOPPED}
    assert all("baseline" in d.note and "seed 3" in d.note for d in got.values())


def test_a_later_huge_value_does_not_undo_an_earlier_decision():
    """The zero-spread guard is scaled to each prefix's own metric size: a sixth seed whose loss blew up
    to 1e5 (for both arms) must not flatten the looks before it."""
    base = [0.300, 0.310, 0.295, 0.305, 0.302]
    arm = [b - 0.02 + d for b, d in zip(base, [0.001, -0.002, 0.0015, -0.001, 0.0005])]
    values = {"base": dict(enumerate(base)), "a": dict(enumerate(arm))}
    before = race(values, margin=0.0, higher_is_better=False)["a"]
    values["base"][5], values["a"][5] = 1e5, 1e5 - 0.5
    after = race(values, margin=0.0, higher_is_better=False)["a"]
    assert before.state == BETTER and (after.state, after.decided_at) == (BETTER, before.decided_at)
