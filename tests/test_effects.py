"""The effects model of a two-level factorial (ablation.stats.effects), its sentences and its half-normal
plot: every number is statsmodels' OLS on the same data, a classic effect is a difference of level means,
aliases are read from the runs, and one seed falls back to Lenth's PSE on textbook examples."""

import itertools
import math

import numpy as np
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests

from ablation.report.effects_plot import half_normal
from ablation.report.effects_words import sentences
from ablation.stats.effects import LENTH, OLS, Observation, fit, lenth_pse

FULL_3 = [dict(zip("ABC", run)) for run in itertools.product((-1, 1), repeat=3)]
HALF_4 = [dict(zip("ABCD", (a, b, c, a * b * c))) for a, b, c in itertools.product((-1, 1), repeat=3)]  # I = ABCD
HALF_4_NEGATIVE = [dict(zip("ABCD", (a, b, c, -a * b * c))) for a, b, c in itertools.product((-1, 1), repeat=3)]


def observe(runs, seeds, truth, rng, noise=0.01):
    """Trials of `runs` on `seeds`: truth(coding) plus a seed block and per-trial noise."""
    shift = {s: rng.normal(0, 0.02) for s in seeds}
    return [Observation(run, s, truth(run) + shift[s] + rng.normal(0, noise)) for s in seeds for run in runs]


def independent_ols(observations, columns):
    """statsmodels' OLS on a design matrix built here: intercept, seed dummies, then each effect's product."""
    seeds = sorted({o.seed for o in observations})
    X = np.array([[1.0] + [float(o.seed == s) for s in seeds[1:]] + [math.prod(o.coding[f] for f in c) for c in columns]
                  for o in observations])
    result = sm.OLS(np.array([o.value for o in observations]), X).fit()
    skip = len(seeds)
    return (result.params[skip:], result.bse[skip:], result.conf_int(0.05)[skip:], result.pvalues[skip:])


CASES = {
    "half fraction I = ABCD": (HALF_4, ["A", "B", "C", "D", "AB", "AC", "AD"]),
    "full 2^3": (FULL_3, ["A", "B", "C", "AB", "AC", "BC"]),
}


@pytest.mark.parametrize("failed", [False, True], ids=["all trials", "one trial failed"])
@pytest.mark.parametrize("case", CASES)
def test_estimates_intervals_and_p_values_are_statsmodels_ols_on_the_same_data(case, failed):
    runs, columns = CASES[case]
    rng = np.random.default_rng(3)
    trials = observe(runs, [0, 1, 2], lambda r: 0.6 + 0.04 * r["A"] - 0.01 * r["A"] * r["B"], rng)
    if failed:
        del trials[5]
    model = fit(trials)
    params, bse, bounds, p = independent_ols(trials, columns)
    assert model.method == OLS and [e.name for e in model.effects] == [":".join(c) for c in columns]
    assert [e.estimate for e in model.effects] == pytest.approx(2 * params, rel=1e-9, abs=1e-12)
    assert [e.se for e in model.effects] == pytest.approx(2 * bse, rel=1e-9)
    assert [e.low for e in model.effects] == pytest.approx(2 * bounds[:, 0], rel=1e-9, abs=1e-12)
    assert [e.high for e in model.effects] == pytest.approx(2 * bounds[:, 1], rel=1e-9, abs=1e-12)
    assert [e.p for e in model.effects] == pytest.approx(p, rel=1e-9, abs=1e-15)
    assert [e.p_holm for e in model.effects] == pytest.approx(multipletests(p, method="holm")[1], rel=1e-9, abs=1e-15)
    assert model.df == len(trials) - 3 - len(columns)


def test_a_classic_effect_is_the_difference_between_the_high_and_low_level_means():
    rng = np.random.default_rng(4)
    trials = observe(FULL_3, [0, 1], lambda r: 0.5 + 0.03 * r["A"] + 0.02 * r["B"] * r["C"], rng)
    model = fit(trials)
    y = np.array([t.value for t in trials])
    for effect in model.effects:
        sign = np.array([math.prod(t.coding[f] for f in effect.factors) for t in trials])
        assert effect.estimate == pytest.approx(y[sign > 0].mean() - y[sign < 0].mean(), rel=1e-9)


def test_the_anova_table_is_statsmodels_anova_lm_of_the_same_model():
    rng = np.random.default_rng(5)
    trials = observe(HALF_4, [0, 1, 2], lambda r: 0.5 + 0.03 * r["D"], rng)
    frame = {"y": [t.value for t in trials], "seed": [t.seed for t in trials],
             **{f.lower(): [t.coding[f] for t in trials] for f in "ABCD"}}  # a column C would hide C()
    theirs = anova_lm(smf.ols("y ~ C(seed) + a + b + c + d + a:b + a:c + a:d", frame).fit(), typ=2)
    ours = fit(trials).anova
    assert list(ours.index) == ["seed", "A", "B", "C", "D", "A:B", "A:C", "A:D", "Residual"]
    np.testing.assert_allclose(ours.to_numpy(dtype=float), theirs.to_numpy(dtype=float), rtol=1e-9)


@pytest.mark.parametrize("runs, alias, sign", [(HALF_4, "C:D", 1), (HALF_4_NEGATIVE, "-C:D", -1)],
                         ids=["I = ABCD", "I = -ABCD"])
def test_an_interaction_the_fraction_confounds_moves_its_alias_as_the_defining_relation_says(runs, alias, sign):
    planted = 0.04  # a C x D interaction (classic effect), nothing else, no noise
    trials = [Observation(r, 0, 0.5 + planted / 2 * r["C"] * r["D"]) for r in runs]
    trials += [Observation(r, 1, 0.5 + planted / 2 * r["C"] * r["D"]) for r in runs]
    model = fit(trials)
    assert model.effect("A:B").aliases == (alias,)
    assert model.effect("A:B").estimate == pytest.approx(sign * planted)
    assert "C:D" not in [e.name for e in model.effects]
    # The full factorial tells them apart.
    full = [Observation(dict(zip("ABCD", r)), 0, 0.5 + planted / 2 * r[2] * r[3])
            for r in itertools.product((-1, 1), repeat=4)]
    both = fit(full + [Observation(t.coding, 1, t.value) for t in full])
    assert both.effect("A:B").estimate == pytest.approx(0, abs=1e-12)
    assert both.effect("C:D").estimate == pytest.approx(planted)


def test_the_design_s_alias_table_is_checked_against_the_runs():
    rng = np.random.default_rng(6)
    fraction = observe(HALF_4, [0, 1], lambda r: 0.5, rng)
    table = {"A:B": ["C:D"], "A:C": ["B:D"], "A:D": ["B:C"], "A": ["B:C:D"]}  # as the design side lists it
    assert fit(fraction, aliases=table).effect("A:B").aliases == ("C:D",)
    with pytest.raises(ValueError, match="confounds A:B with -C:D"):
        fit(fraction, aliases={"A:B": ["-C:D"]})
    full = observe([dict(zip("ABCD", r)) for r in itertools.product((-1, 1), repeat=4)], [0, 1], lambda r: 0.5, rng)
    with pytest.raises(ValueError, match="confounds A:B with C:D"):
        fit(full, aliases={"A:B": ["C:D"]})
    with pytest.raises(ValueError, match="'E', no factor"):
        fit(full, aliases={"A:E": ["C:D"]})


def test_lenth_pse_matches_lenth_s_own_figure():
    # Box, Hunter & Hunter (2005), p. 267, the shrinkage effects as Lenth's R package unrepx ships them
    # (`shnkEff`); its documentation gives PSE(shnkEff, method = "Lenth") = 8.9625.
    shrinkage = [6.3375, 6.2125, 2.5875, -5.7375, 0.0375, 7.5125, 0.5375, 6.8875,
                 4.1625, 24.3875, 2.9125, 9.0875, 6.7125, -14.1625, 0.7125]
    assert lenth_pse(shrinkage) == pytest.approx(8.9625)


def test_a_contrast_exactly_on_lenth_s_cut_is_trimmed_whatever_the_rounding():
    # Accuracies on 200 images: effects on a lattice, median 0.01, so the cut 2.5 s0 = 0.0375 is hit exactly;
    # a least-squares fit returns it a few ulps either side.
    on_the_lattice = [0.03, -0.0025, -0.0025, 0.01, 0.0375, 0.0025, -0.015]
    for nudge in (-1e-16, 0.0, 1e-16):
        assert lenth_pse([*on_the_lattice[:4], 0.0375 + nudge, *on_the_lattice[5:]]) == pytest.approx(0.009375)


# Montgomery, Design and Analysis of Experiments, Example 6.2: the filtration rate of a chemical (gal/h)
# in an unreplicated 2^4 on temperature (A), pressure (B), formaldehyde concentration (C) and stirring rate
# (D), in standard order (A varies fastest), with its published effect estimates.
FILTRATION = [45, 71, 48, 65, 68, 60, 80, 65, 43, 100, 45, 104, 75, 86, 70, 96]
PUBLISHED = {"A": 21.625, "B": 3.125, "C": 9.875, "D": 14.625, "A:B": 0.125, "A:C": -18.125, "A:D": 16.625,
             "B:C": 2.375, "B:D": -0.375, "C:D": -1.125}
# The other five, ABC 1.875, ABD 4.125, ACD -1.625, BCD -2.625 and ABCD 1.375, enter Lenth's PSE: the median
# of all 15 |effects| is 2.625, so s0 = 3.9375; the ten below 2.5 s0 have median 1.75, PSE = 2.625.
FILTRATION_PSE = 2.625


def test_one_seed_uses_lenth_s_pse_on_montgomery_s_filtration_example():
    runs = [{f: 1 if (i >> j) & 1 else -1 for j, f in enumerate("ABCD")} for i in range(16)]
    model = fit([Observation(r, 0, float(y)) for r, y in zip(runs, FILTRATION)])
    assert model.method == LENTH and "Lenth" in model.note
    assert {e.name: e.estimate for e in model.effects} == pytest.approx(PUBLISHED)
    assert model.pse == pytest.approx(FILTRATION_PSE) and model.contrasts == 15 and model.df == 5
    margin = stats.t.ppf(0.975, 5) * FILTRATION_PSE  # Lenth's margin of error, 6.75
    for e in model.effects:
        assert e.se == pytest.approx(FILTRATION_PSE)
        assert (e.low, e.high) == pytest.approx((e.estimate - margin, e.estimate + margin))
        assert e.p == pytest.approx(2 * stats.t.sf(abs(e.estimate) / FILTRATION_PSE, 5))
    holm = multipletests([e.p for e in model.effects], method="holm")[1]
    assert [e.p_holm for e in model.effects] == pytest.approx(holm)
    assert {e.name for e in model.significant()} == {"A", "D", "A:C", "A:D"}
    assert list(model.anova.index)[:4] == ["A", "B", "C", "D"] and "Residual" not in model.anova.index


STAGES = ("layer1", "layer2", "layer3", "layer4")


def test_the_sentences_name_the_significant_effects_and_no_other():
    rng = np.random.default_rng(7)
    runs = [dict(zip(STAGES, r)) for r in itertools.product((-1, 1), repeat=4)]
    # layer3 adds 0.02; layer3 and layer4 together lose 0.03 against each alone (interaction -0.015)
    trials = observe(runs, [0, 1, 2], lambda r: 0.6 + 0.01 * r["layer3"] - 0.0075 * r["layer3"] * r["layer4"], rng,
                     noise=0.002)
    model = fit(trials)
    assert {e.name for e in model.significant()} == {"layer3", "layer3:layer4"}
    levels = {s: ("off", "on") for s in STAGES}
    main, interaction = sentences(model, "val_macro_f1", levels=levels)
    assert main.startswith("layer3 = on rather than off raises val_macro_f1 by 0.02")
    assert "95% CI" in main and "Holm p" in main
    assert interaction.startswith("layer3 = on and layer4 = on together are worth 0.03")
    assert "less than the sum of each alone" in interaction and "interaction effect -0.01" in interaction
    assert not any(name in " ".join([main, interaction]) for name in ("layer1", "layer2"))


def test_no_significant_effect_is_said_in_one_sentence_naming_none():
    rng = np.random.default_rng(8)
    model = fit(observe(HALF_4, [0, 1, 2], lambda r: 0.5, rng))
    assert not model.significant()
    (only,) = sentences(model, "val_macro_f1")
    assert only.startswith("No main effect or two-factor interaction on val_macro_f1")


def test_an_aliased_effect_s_sentence_says_what_it_estimates():
    trials = observe(HALF_4, [0, 1, 2], lambda r: 0.5 + 0.01 * r["C"] * r["D"], np.random.default_rng(10), noise=0.001)
    (text,) = [t for t in sentences(fit(trials), "acc") if "together" in t]
    assert text.startswith("A high and B high together") and "the estimate is A:B + C:D" in text


def test_residuals_without_spread_give_no_p_value():
    trials = [Observation(r, s, 0.5 + 0.01 * s + 0.02 * r["A"]) for s in range(3) for r in HALF_4]
    model = fit(trials)
    assert all(math.isnan(e.p) and math.isnan(e.p_holm) and math.isnan(e.low) for e in model.effects)
    assert model.effect("A").estimate == pytest.approx(0.04)


@pytest.mark.parametrize("coding, message", [({"A": 0, "B": 1, "C": 1}, "A is coded 0"),
                                             ({"A": 1, "B": 1}, r"lacks \['C'\]")])
def test_a_bad_coding_is_refused_naming_the_trial(coding, message):
    trials = [Observation(r, 0, 0.5) for r in FULL_3] + [Observation(coding, 4, 0.5)]
    with pytest.raises(ValueError, match=message):
        fit(trials)


def test_one_seed_of_too_few_runs_is_refused():
    with pytest.raises(ValueError, match="Lenth"):
        fit([Observation({"A": a}, 0, 0.5 + a) for a in (-1, 1)])


def test_the_half_normal_plot_is_a_png_even_with_a_dollar_in_a_name(tmp_path):
    rng = np.random.default_rng(9)
    runs = [{"cost $": a, "b": b, "c": c} for a, b, c in itertools.product((-1, 1), repeat=3)]
    model = fit(observe(runs, [0, 1, 2], lambda r: 0.5 + 0.05 * r["cost $"], rng))
    path = half_normal(model, metric="val_$macro$_f1", path=tmp_path / "effects.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    one_seed = fit([Observation(r, 0, float(y)) for r, y in zip(
        [{f: 1 if (i >> j) & 1 else -1 for j, f in enumerate("ABCD")} for i in range(16)], FILTRATION)])
    assert half_normal(one_seed, metric="filtration", path=tmp_path / "lenth.png").stat().st_size > 0


def test_the_half_normal_plot_names_the_significant_effects_and_the_largest_even_when_none_stands_out():
    from ablation.report.effects_plot import named

    rng = np.random.default_rng(3)
    runs = [{"a": a, "b": b, "c": c} for a, b, c in itertools.product((-1, 1), repeat=3)]
    planted = fit(observe(runs, [0, 1, 2], lambda r: 0.5 + 0.2 * r["a"], rng))
    ordered = sorted(planted.effects, key=lambda e: abs(e.estimate))
    names = [e.name for e, shown in zip(ordered, named(ordered, planted.alpha)) if shown]
    assert "a" in names and len(names) == 3  # the planted one is the largest, and two more
    noise = fit(observe(runs, [0, 1, 2], lambda r: 0.5, rng))
    ordered = sorted(noise.effects, key=lambda e: abs(e.estimate))
    assert not any(e.p_holm < noise.alpha for e in ordered)
    assert [shown for shown in named(ordered, noise.alpha)] == [False] * (len(ordered) - 3) + [True] * 3
