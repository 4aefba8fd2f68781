"""One answer per arm: the report of a race leads with the race's decision on the metric it decided on,
the test split follows as a confirmation that says in words where it could be read as disagreeing, the
margin is given in seed SDs (with a warning when it is wide), and a stuck arm says why it stopped."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ablation.stats import racing
from ablation.stats.analysis import Comparison, Interval
from ablation.report.race import confirmation, race_table, read_race
from ablation.core import Study, StudySpec

PLACEMENTS = ["none", "layer1", "layer2", "layer3"]


def spec(margin: float = 0.15, max_seeds: int = 8) -> Study:
    return Study.from_spec(StudySpec.model_validate({
        "name": "r", "model": {"attention": "identity_cbam", "placement": "all", "count": 1},
        "search": {"space": {"model.placement": PLACEMENTS}, "seeds": {"start": 3, "max": max_seeds},
                   "race": {"margin": margin}}}))


def values(rng, shifts: dict[str, float], seeds: int = 8, noise: int = 6) -> dict[str, dict[int, float]]:
    """Macro-F1-like scores on 200 images per arm; arm = baseline + shift + a few images of noise."""
    base = rng.binomial(200, 0.6, seeds) / 200
    out = {"placement=none": dict(enumerate(base))}
    for arm, shift in shifts.items():
        out[arm] = dict(enumerate(base + shift + rng.integers(-noise, noise + 1, seeds) / 200))
    return out


def test_a_wide_margin_is_said_in_seed_sds_and_warned_about():
    rng = np.random.default_rng(1)
    race = read_race(spec(), values(rng, {f"placement={p}": 0.0 for p in PLACEMENTS[1:]}), {})
    assert race.seed_sd == pytest.approx(0.02, rel=0.5)
    assert f"±0.15 ({0.15 / race.seed_sd:.1f} paired seed SDs" in race.margin_words()
    warning = race.margin_warning("validation macro-F1")
    assert warning and "paired seed SDs (more than 2)" in warning
    table = race_table(race, "validation macro-F1")
    assert "paired seed SDs" in table.footnote


def test_a_margin_of_one_seed_sd_is_not_warned_about():
    rng = np.random.default_rng(1)
    data = values(rng, {"placement=layer1": 0.0, "placement=layer2": 0.05, "placement=layer3": -0.05})
    race = read_race(spec(margin=0.02), data, {})
    assert 0.02 <= 2 * race.seed_sd and race.spread > 0.02
    assert race.margin_warning("validation macro-F1") is None


def test_equivalent_by_the_race_and_a_test_interval_that_excludes_zero_is_explained():
    """The case a new user met: equivalent within ±0.15 on validation, a test CI of [-0.102, -0.008]."""
    decision = racing.Decision("placement=layer3", racing.EQUIVALENT, 8, 8, -0.13, 0.02, -0.05, 0.4, 0.9, "base")
    test = Comparison("placement=layer3", Interval(-0.055, -0.102, -0.008, 8), 0.03, 0.05, 0.138, 16)
    cell, sentence = confirmation(decision, test, 0.15, lower_is_better=False)
    assert cell == "confirms"
    assert "excludes 0 but lies inside the margin" in sentence and "margin is wider than this difference" in sentence


@pytest.mark.parametrize(("state", "test", "significant", "expected"), [
    (racing.BETTER, (0.04, 0.01, 0.07), True, "confirms"),
    (racing.BETTER, (-0.04, -0.07, -0.01), True, "contradicts"),
    (racing.BETTER, (0.02, -0.01, 0.05), False, "same direction"),
    (racing.WORSE, (0.02, -0.01, 0.05), False, "cannot confirm"),
    (racing.EQUIVALENT, (0.01, -0.3, 0.32), False, "cannot confirm"),
    (racing.UNDECIDED, (0.01, -0.3, 0.32), False, "no race answer"),
])
def test_each_race_answer_meets_the_test_split_in_words(state, test, significant, expected):
    decision = racing.Decision("a", state, 8, 8, -0.1, 0.1, 0.0, 0.01, 0.95, "base")
    comparison = Comparison("a", Interval(*test, 8), 0.01, None, 0.01 if significant else 0.5)
    cell, sentence = confirmation(decision, comparison, 0.15, lower_is_better=False)
    assert cell == expected
    assert (sentence is None) == (expected in ("confirms", "no race answer"))


def test_a_stuck_arm_shows_as_stopped_with_its_reason_and_a_failed_baseline_in_one_line():
    rng = np.random.default_rng(2)
    data = values(rng, {f"placement={p}": 0.02 for p in PLACEMENTS[1:]}, seeds=4, noise=20)
    data["placement=layer1"] = {s: v for s, v in data["placement=layer1"].items() if s < 3}
    race = read_race(spec(margin=0.001), data, {"placement=layer1": [3]})
    layer1 = race.decisions["placement=layer1"]
    assert layer1.state == racing.STOPPED and "seed 3 failed" in layer1.note
    table = race_table(race, "validation macro-F1")
    row = next(r for r in table.rows if r[0] == "placement=layer1")
    assert row[1:3] == ["stopped at 3", "3"] and row[5] == "seed failed"
    assert "placement=layer1: seed 3 failed for good" in table.footnote
    # Only answers save seeds: the stopped arm's 5 unrun seeds and the open arms' are not counted.
    assert "still in progress" in table.footnote and "0 trials saved by answers so far" in table.footnote

    data["placement=none"] = {s: v for s, v in data["placement=none"].items() if s < 3}
    everyone = read_race(spec(margin=0.001), data, {"placement=none": [3]})
    assert {d.state for d in everyone.decisions.values()} == {racing.STOPPED}
    footnote = race_table(everyone, "validation macro-F1").footnote
    assert footnote.count("The baseline's seed 3 failed for good") == 1
    assert "0 trials saved by answers (3 arm(s) stopped without one)" in footnote


def test_an_arm_without_spread_says_the_metric_cannot_resolve_it():
    base = [0.55, 0.60, 0.58, 0.61, 0.57, 0.59, 0.60, 0.56]
    data = {"placement=none": dict(enumerate(base)),
            "placement=layer1": {s: v + 0.005 for s, v in enumerate(base)},
            "placement=layer2": {s: v + d for s, (v, d) in enumerate(zip(base, [0.01, -0.02, 0.0, 0.03] * 2))}}
    race = read_race(spec(margin=0.001), data, {})
    table = race_table(race, "validation macro-F1")
    row = next(r for r in table.rows if r[0] == "placement=layer1")
    assert row[1] == "undecided at max (8)" and row[4] == "-" and row[5] == "no spread"
    assert "the metric cannot resolve this difference" in table.footnote


def test_a_decision_on_an_outlier_seed_is_flagged_with_a_permutation_second_opinion():
    base = [0.55, 0.60, 0.58, 0.61, 0.57, 0.59, 0.60, 0.56]
    diffs = [0.010, 0.012, 0.30, 0.011, 0.009, 0.010, 0.012, 0.008]  # seed 2 far out
    data = {"placement=none": dict(enumerate(base)),
            "placement=layer1": {s: v + d for s, (v, d) in enumerate(zip(base, diffs))}}
    race = read_race(spec(margin=0.001), data, {})
    assert race.checks["placement=layer1"].flagged
    table = race_table(race, "validation macro-F1")
    assert next(r for r in table.rows if r[0] == "placement=layer1")[5] == "not Gaussian"
    assert "sign-flip permutation test" in table.footnote and not math.isnan(race.checks["placement=layer1"].permutation_p)


def test_an_infinite_margin_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="margin"):
        spec(margin=math.inf)


def test_report_csv_holds_each_arms_race_decision():
    from ablation.report.files import tidy
    from ablation.report.model import Arm, StudyReport

    rng = np.random.default_rng(1)
    race = read_race(spec(), values(rng, {f"placement={p}": 0.0 for p in PLACEMENTS[1:]}), {})
    report = StudyReport("r", "val_macro_f1", {f"placement={p}": Arm(f"placement={p}", {}) for p in PLACEMENTS},
                         "placement=none", 8, {}, {}, {}, race=race)
    header, rows = tidy(report)
    decided = {r[header.index("configuration")]: dict(zip(header, r)) for r in rows if r[header.index("kind")] == "race"}
    assert set(decided) == set(race.decisions)
    for arm, d in race.decisions.items():
        row = decided[arm]
        assert (row["answer"], row["decided_at"], row["against"], row["metric"]) == (
            d.state, d.decided_at, "placement=none", "best_val_macro_f1")
        assert float(row["mean"]) == pytest.approx(d.mean) and float(row["p_holm"]) == pytest.approx(d.p_value)
        assert float(row["low"]) == pytest.approx(d.low) and row["n"] == race.seeds_run[arm]
