"""The effects model of a two-level factorial study, full or fractional: what each factor, and each pair
of factors, does to a metric, with intervals, from the runs of the design.

The model (Box, Hunter & Hunter, *Statistics for Experimenters*, 2nd ed., ch. 5-6; Montgomery, *Design
and Analysis of Experiments*, ch. 6-8): every finished trial's metric regressed by ordinary least
squares (statsmodels) on its factors' ±1 coding and their two-factor products, with the seed as a block
(a categorical term) when there are several seeds, since what a seed does to every arm alike is no
factor's doing:

    y = mean + seed + sum_j b_j x_j + sum_{j<k} b_jk x_j x_k + error.

An *effect* here is the classic factorial effect, not the regression coefficient: a main effect is the
mean at the factor's high level minus the mean at its low one, 2 b_j; an interaction AB is half the
difference between A's effect with B high and with B low, 2 b_AB, so that A and B both high are worth
2 AB more than the sum of each high alone (both low the reference). Standard errors and intervals double
with the coefficient; p-values are the coefficient's t-test's.

What can be estimated is read from the runs, not assumed: a column equal (or opposite) over the runs to
an earlier one, main effects first and then AB, AC, ..., BC, ..., is aliased with it and dropped, and
named as its alias. In the half fraction I = ABCD, "A:B" is estimated with alias "C:D": its estimate is
AB + CD; under I = -ABCD its alias is "-C:D" and its estimate AB - CD. A column that is no copy of
another but adds nothing (failed runs can confound a column with several others, or with the seeds) is
listed as not estimable. An alias table from the design, if given, is checked against the runs.

One seed (unreplicated) leaves no replicate to measure the noise. Then every contrast of the saturated
model (interactions of every order, as many as runs less one) is estimated, and the standard error of
every effect is Lenth's pseudo standard error (Lenth 1989, "Quick and easy analysis of unreplicated
factorials", Technometrics 31(4), 469-473): s0 = 1.5 median |c|, PSE = 1.5 median of the |c| < 2.5 s0,
with t on d = m / 3 degrees of freedom for m contrasts. It assumes effect sparsity (most contrasts are
noise) and is flagged (`method`, `note`) so that a report says so. statsmodels has no PSE: `lenth_pse`
writes it out.

Holm's adjustment (statsmodels' `multipletests`) runs over the reported effects: every main effect and
every estimable two-factor interaction.

Checked by simulation (benchmarks/effects.py, figures in benchmarks/results/effects.md: the 2^(4-1)
resolution IV fraction and the full 2^4, seed noise of a real study, Gaussian, in steps of 1/200 and
skewed, 10,000 studies each). Three seeds: every effect's 95% interval covers at least 0.943 (0.948-0.956
averaged over the effects), the Holm family-wise error with nothing planted is 0.030-0.053 (alpha 0.05,
+-0.004). One seed: Lenth's intervals over-cover (0.964-0.994) and its tests are conservative (FWER
0.004-0.027), at a cost: over the fraction's 7 contrasts it finds a 2-sigma effect in under 2% of
studies, where three seeds find it in 80-100%.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests

from ablation.stats.paths import RESOLUTION  # a spread below a millionth of the metric's size is none

CONFIDENCE = 0.95
OLS, LENTH = "ols", "lenth"
LEAST_CONTRASTS = 3  # Lenth's t on m / 3 degrees of freedom needs at least one


@dataclass(frozen=True)
class Observation:
    """One finished trial: its arm's factors coded -1 (low) and +1 (high), its seed, its metric."""

    coding: Mapping[str, int]
    seed: int
    value: float


@dataclass(frozen=True)
class Effect:
    """A main effect (one factor) or a two-factor interaction, on the metric's scale."""

    factors: tuple[str, ...]
    estimate: float  # classic effect: 2 x the regression coefficient (module docstring)
    se: float
    low: float  # the confidence interval; nan when the noise has no spread
    high: float
    p: float  # two-sided t-test of "no effect"; nan when the noise has no spread
    p_holm: float  # Holm-adjusted over the reported effects
    aliases: tuple[str, ...] = ()  # effects up to two factors confounded with it; "-C:D": with its negative

    @property
    def name(self) -> str:
        return effect_name(self.factors)


@dataclass(frozen=True)
class EffectsFit:
    """The effects model of one metric: every reported effect, how its errors were measured, the ANOVA."""

    effects: tuple[Effect, ...]  # main effects, then two-factor interactions, in factor order
    method: str  # OLS (residual error, several seeds) or LENTH (one seed)
    df: float  # the t reference's degrees of freedom: residual, or Lenth's m / 3
    pse: float  # LENTH: the pseudo standard error of an effect (of a complete design); nan for OLS
    contrasts: int  # the contrasts Lenth's PSE is taken over (m); 0 for OLS
    seeds: int
    observations: int
    runs: int  # distinct factor settings among the trials
    not_estimable: tuple[str, ...]  # effects up to two factors that are no copy of another yet add nothing
    confidence: float
    anova: pd.DataFrame = field(compare=False, repr=False)  # statsmodels' anova_lm, rows named as effects

    @property
    def alpha(self) -> float:
        return 1 - self.confidence

    def significant(self) -> list[Effect]:
        return [e for e in self.effects if e.p_holm < self.alpha]

    def effect(self, name: str) -> Effect:
        found = {e.name: e for e in self.effects}
        if name not in found:
            raise ValueError(f"no effect {name!r}; the estimated ones are {', '.join(found)}")
        return found[name]

    @property
    def note(self) -> str:
        """How the errors were measured, in a sentence for the report."""
        if self.method == LENTH:
            return (f"One seed: no replicate measures the noise, so each effect's standard error is Lenth's "
                    f"pseudo standard error ({self.pse:.3g}) over the design's {self.contrasts} contrasts, with t on "
                    f"m/3 = {self.df:.2f} degrees of freedom (Lenth 1989); it assumes most contrasts are noise.")
        return (f"Ordinary least squares on the factors' ±1 coding, {self.seeds} seeds as blocks; t on "
                f"{self.df:g} residual degrees of freedom.")

    def rows(self) -> list[dict]:
        """One tidy row per effect, for a CSV."""
        return [{"effect": e.name, "estimate": e.estimate, "se": e.se, "low": e.low, "high": e.high, "p": e.p,
                 "p_holm": e.p_holm, "aliases": " ".join(e.aliases), "method": self.method} for e in self.effects]


def effect_name(factors: Sequence[str]) -> str:
    """`("layer3", "layer4")` -> `layer3:layer4`, as a formula writes an interaction."""
    return ":".join(factors)


def lenth_pse(contrasts: Sequence[float]) -> float:
    """Lenth's (1989) pseudo standard error of independent contrasts with a common variance: 1.5 times the
    median of the absolute contrasts below 2.5 s0, s0 = 1.5 times the median of them all."""
    c = np.abs(np.asarray(contrasts, dtype=float))
    # A metric in steps (an accuracy on 200 images) can put a contrast exactly at 2.5 s0, where Lenth trims
    # it; within a millionth of the cut counts as at it, so that rounding does not decide.
    inside = c < 2.5 * 1.5 * np.median(c) * (1 - RESOLUTION)
    return float(1.5 * np.median(c[inside])) if inside.any() else 0.0


def fit(observations: Sequence[Observation], *, factors: Sequence[str] | None = None,
        aliases: Mapping[str, Sequence[str]] | None = None, confidence: float = CONFIDENCE) -> EffectsFit:
    """The effects model of `observations` (module docstring). `factors` orders the factors (default: the
    first trial's coding's order). `aliases`, effect name -> the names it is confounded with (up to two
    factors, "-C:D" for a negative alias), as the design's alias table says: checked against the runs,
    ValueError naming the first pair the runs tell apart."""
    names, X, seeds, y = _table(observations, factors)
    several = len(set(seeds)) > 1
    top = 2 if several else len(names)  # one seed: the saturated model, for Lenth's contrasts
    candidates = [c for order in range(1, top + 1) for c in itertools.combinations(range(len(names)), order)]
    kept, alias_of, lost = _estimable(X, seeds, candidates)
    label = {c: effect_name([names[i] for i in c]) for c in candidates}
    if aliases:
        _check_aliases(aliases, names, alias_of)
    term = {c: ":".join(f"x{i}" for i in c) for c in kept}
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(len(names))]).assign(y=y, seed=seeds)
    formula = "y ~ " + " + ".join((["C(seed)"] if several else []) + [term[c] for c in kept])
    with warnings.catch_warnings():  # a saturated fit divides by its zero residual degrees of freedom
        warnings.simplefilter("ignore", RuntimeWarning)
        result = smf.ols(formula, frame).fit()
        reported = [c for c in kept if len(c) <= 2]
        if several:
            if result.df_resid < 1:
                raise ValueError(f"{len(y)} trials over {len(set(seeds))} seeds leave no residual degrees of freedom "
                                 f"for {len(result.params)} parameters; run more seeds or fewer factors")
            columns = _ols(result, [term[c] for c in reported], confidence, np.abs(y).max())
            df, pse, m = float(result.df_resid), math.nan, 0
            anova = anova_lm(result, typ=2)
        else:
            if len(kept) < LEAST_CONTRASTS:
                raise ValueError(f"one seed of {len(kept) + 1} runs leaves {len(kept)} contrasts; Lenth's pseudo "
                                 f"standard error needs {LEAST_CONTRASTS}: run more seeds")
            columns, pse = _lenth(result, [term[c] for c in kept], [term[c] for c in reported], confidence, len(y))
            df, m = len(kept) / 3, len(kept)
            anova = anova_lm(result, typ=1).drop(index="Residual")  # sums of squares; no residual to test them
            anova[["F", "PR(>F)"]] = math.nan
    estimate, se, low, high, p = columns
    holm = _holm(p)
    anova = anova.rename(index={"C(seed)": "seed", **{term[c]: label[c] for c in kept}})
    effects = tuple(Effect(tuple(names[i] for i in c), *map(float, values), aliases=tuple(
        ("-" if sign < 0 else "") + label[a] for a, sign in alias_of.get(c, ())))
        for c, values in zip(reported, zip(estimate, se, low, high, p, holm)))
    return EffectsFit(effects, OLS if several else LENTH, df, pse, m, len(set(seeds)), len(y),
                      len({tuple(row) for row in X}), tuple(label[c] for c in lost if len(c) <= 2), confidence,
                      anova)


def _table(observations: Sequence[Observation], factors: Sequence[str] | None):
    """The trials as (factor names, ±1 matrix, seeds, values); ValueError naming a bad trial."""
    if not observations:
        raise ValueError("no finished trials: an effects model needs the design's runs")
    names = list(factors) if factors is not None else list(observations[0].coding)
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"factors {names!r}: give each factor once, at least one")
    for i, o in enumerate(observations):
        if set(o.coding) != set(names):
            missing, extra = sorted(set(names) - set(o.coding)), sorted(set(o.coding) - set(names))
            raise ValueError(f"trial {i} (seed {o.seed}): its coding lacks {missing} and has {extra} beyond the "
                             f"factors {names}")
        bad = [(k, v) for k, v in o.coding.items() if v not in (-1, 1)]
        if bad:
            raise ValueError(f"trial {i} (seed {o.seed}): {bad[0][0]} is coded {bad[0][1]!r}; a factor is -1 (low) "
                             "or +1 (high)")
        if not math.isfinite(o.value):
            raise ValueError(f"trial {i} (seed {o.seed}): its value {o.value!r} is not a finite number")
    X = np.array([[o.coding[n] for n in names] for o in observations], dtype=float)
    return names, X, [o.seed for o in observations], np.array([o.value for o in observations], dtype=float)


def _estimable(X: np.ndarray, seeds: list[int], candidates: list[tuple[int, ...]]):
    """Which candidate effects the trials can estimate, in order. Returns (kept, aliases: kept -> [(effect,
    sign)] up to two factors, lost: neither kept nor a copy of a kept one)."""
    runs = np.unique(X, axis=0)
    levels = sorted(set(seeds))
    blocks = np.array([[s == level for level in levels[1:]] for s in seeds], dtype=float).reshape(len(seeds), -1)
    # An orthonormal basis of what is estimated so far (the mean, the seeds, the kept effects): a column
    # adds something when a part of it is left outside that span (one projection, not a rank per column).
    basis = np.linalg.qr(np.column_stack([np.ones(len(X)), blocks]))[0]
    kept, aliases, lost, seen = [], {}, [], {}
    for c in candidates:
        if len(c) > 2 and basis.shape[1] == len(runs) + len(levels) - 1:
            break  # saturated: every further contrast is a copy of one already kept
        over_runs = tuple(runs[:, list(c)].prod(axis=1))
        twin = seen.get(over_runs) or seen.get(tuple(-v for v in over_runs))
        if twin is not None:
            if len(c) <= 2:
                aliases[twin].append((c, 1 if seen.get(over_runs) == twin else -1))
            continue
        column = X[:, list(c)].prod(axis=1)
        for _ in range(2):  # Gram-Schmidt twice: one pass leaves rounding errors along the basis
            column = column - basis @ (basis.T @ column)
        if np.linalg.norm(column) > 1e-9 * math.sqrt(len(X)):
            basis = np.column_stack([basis, column / np.linalg.norm(column)])
            kept.append(c)
            aliases[c], seen[over_runs] = [], c
        elif len(c) <= 2:
            lost.append(c)
    return kept, aliases, lost


def _check_aliases(given: Mapping[str, Sequence[str]], names: list[str],
                   alias_of: Mapping[tuple[int, ...], list]) -> None:
    """Every pair the design says is confounded is confounded over the runs, with that sign."""
    where: dict[frozenset, tuple[tuple[int, ...], int]] = {}  # effect -> (the kept one it copies, sign)
    for kept, copies in alias_of.items():
        where[frozenset(kept)] = (kept, 1)
        where.update({frozenset(c): (kept, sign) for c, sign in copies})

    def parse(text: str) -> tuple[frozenset, int]:
        sign, body = (-1, text[1:]) if text.startswith("-") else (1, text)
        unknown = [f for f in body.split(":") if f not in names]
        if unknown:
            raise ValueError(f"aliases: {text!r} names {unknown[0]!r}, no factor of {names}")
        return frozenset(names.index(f) for f in body.split(":")), sign

    for effect, listed in given.items():
        a, sa = parse(effect)
        for alias in listed:
            b, sb = parse(alias)
            if len(a) > 2 or len(b) > 2:
                continue  # only effects up to two factors are estimated
            (ka, wa), (kb, wb) = where.get(a, (None, 0)), where.get(b, (None, 0))
            if ka is None or ka != kb or wa * wb != sa * sb:
                raise ValueError(f"aliases: the design confounds {effect} with {alias}, but the trials' codings "
                                 "tell them apart; were the codings and the alias table read from the same design?")


def _ols(result, terms: list[str], confidence: float, size: float):
    """Classic effects from a fit with residual error: 2 x coefficient, its SE and interval; its p-value."""
    b, se, p = (result.params[terms].to_numpy(), result.bse[terms].to_numpy(), result.pvalues[terms].to_numpy())
    bounds = result.conf_int(alpha=1 - confidence).loc[terms].to_numpy()
    if math.sqrt(result.scale) <= RESOLUTION * size:  # residuals all equal: no t-test, as analysis.compare
        p, bounds = np.full(len(terms), math.nan), np.full((len(terms), 2), math.nan)
    return 2 * b, 2 * se, 2 * bounds[:, 0], 2 * bounds[:, 1], p


def _lenth(result, contrasts: list[str], terms: list[str], confidence: float, n: int):
    """Classic effects of a saturated fit with Lenth's PSE for their standard error. Each coefficient is
    first divided by its relative standard error, sqrt((X'X)^-1_jj), which is the same for every contrast
    of a complete two-level design (so this is exactly Lenth's method there) and keeps the contrasts
    comparable when a failed run left the design unbalanced (then the PSE is approximate)."""
    relative = pd.Series(np.sqrt(np.diag(result.normalized_cov_params)), index=result.params.index)
    z = result.params[contrasts] / relative[contrasts]
    pse_z = lenth_pse(z)
    df = len(contrasts) / 3
    b = result.params[terms].to_numpy()
    se = pse_z * relative[terms].to_numpy()
    if pse_z <= RESOLUTION * np.abs(z).max():  # most contrasts exactly 0 (a metric in steps): no scale
        nan = np.full(len(terms), math.nan)
        return (2 * b, 2 * se, nan, nan, nan), 2 * pse_z / math.sqrt(n)
    t = b / se
    half = stats.t.ppf(0.5 + confidence / 2, df) * se
    return (2 * b, 2 * se, 2 * (b - half), 2 * (b + half), 2 * stats.t.sf(np.abs(t), df)), 2 * pse_z / math.sqrt(n)


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm over the effects; an undefined (nan) p-value counts in the family as 1 and stays nan."""
    p = np.asarray(p, dtype=float)
    if not len(p):
        return p
    adjusted = multipletests(np.where(np.isnan(p), 1.0, p), method="holm")[1]
    return np.where(np.isnan(p), math.nan, adjusted)
