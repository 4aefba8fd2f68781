"""A two-level factorial study's part of `ablate report`: the effects model (`stats.effects`) of the
study's metric, and the table, sentences and design line that every renderer shows of it.

Each finished run is coded through its trial in the study's design, matched by trial id: the params it
logged are strings ("True", "on"), while a trial's overrides hold the spec's own values, which the
design's coding reads. The metric is each trial's best-epoch value of the study's metric, the value the
ranking and a race use. Trials that failed, diverged or never finished are left out of the fit and
counted; when the rest cannot support the model, the section says why in one line instead of a table.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ablation.core.factorial import ROMAN, Factorial
from ablation.core.names import Outcome, best
from ablation.report.effects_words import sentences
from ablation.report.race import digits
from ablation.report.table import Table, p_value
from ablation.stats.effects import EffectsFit, Observation, effect_name, fit

if TYPE_CHECKING:
    from ablation.core import Study
    from ablation.tracking import TrialRecord

TIMES = " x "  # an interaction in the spec's words, as `ablate plan`'s alias table writes it
LEFT_OUT = {Outcome.FAILED: "failed", Outcome.DIVERGED: "diverged", Outcome.UNFINISHED: "unfinished",
            Outcome.STOPPED_EARLY: "stopped early"}


@dataclass(frozen=True)
class StudyEffects:
    """What the report says of a factorial study's effects: the fit, or why there is none."""

    metric: str  # the key fitted: the study metric's best-epoch value
    label: str  # the same, for people
    design: str  # the design in a sentence
    levels: dict[str, tuple[str, str]]  # each factor's name (its key, `model.` dropped) -> (low, high), spec-spelled
    observations: tuple[Observation, ...]
    fit: EffectsFit | None  # None when the trials cannot support a model: `why_not` says why
    why_not: str = ""
    left_out: str = ""  # the planned trials the fit leaves out, counted by why

    @property
    def digits(self) -> int:
        """Decimals that show a typical standard error to two significant figures (at least 3)."""
        errors = sorted(e.se for e in self.fit.effects if math.isfinite(e.se)) if self.fit else []
        return digits(errors[len(errors) // 2]) if errors else 3

    def lead(self) -> list[str]:
        """The section's answer in words: a sentence per significant effect, or why there is no model."""
        if self.fit is None:
            return [self.why_not]
        return sentences(self.fit, self.label, levels=self.levels, digits=self.digits, join=TIMES)

    def notes(self) -> list[str]:
        """The design, how the errors were measured, and what the fit could not use."""
        said = [self.design]
        if self.fit is not None:
            said.append(self.fit.note)
            if self.fit.not_estimable:
                said.append("Not estimable from the finished trials: "
                            f"{', '.join(TIMES.join(e.split(':')) for e in self.fit.not_estimable)}.")
        return said + [self.left_out] * bool(self.left_out)

    def table(self, compact: bool = False) -> Table:
        """The effects with their intervals and aliases; a table of words only when there is no fit. A
        terminal's 80 columns hold neither an alias column nor the unadjusted p: there an effect's aliases
        follow it on a row of their own (`= placement.layer3 x placement.layer4`), and Holm's p is shown."""
        title = f"Effects of the factors on {self.label}: main effects and two-factor interactions"
        if self.fit is None:
            return Table(title, [], [], footnote=" ".join(self.notes()), lead=self.lead())
        dp, rows = self.digits, []
        for e in self.fit.effects:
            aliases = " = ".join(alias_words(a) for a in e.aliases)
            figures = [f"{e.estimate:+.{dp}f}", interval(e.low, e.high, dp), p_value(e.p), p_value(e.p_holm)]
            if compact:
                rows.append([TIMES.join(e.factors), *figures[:2], figures[3]])
                rows += [[f"= {aliases}", "", "", ""]] * bool(aliases)
            else:
                rows.append([TIMES.join(e.factors), *figures, aliases or "-"])
        header = ["effect", "estimate", "95% CI", "Holm p"] if compact else [
            "effect", "estimate", "95% CI", "p", "Holm p", "aliased with"]
        note = (f"An effect is the mean of {self.label} at the factor's high level less its mean at the low one; an "
                "interaction A x B is half the difference between A's effect with B high and with B low. Holm's "
                f"correction runs over the {len(self.fit.effects)} effects of the table. An effect aliased with another is "
                "their sum (their difference for a -alias): this design cannot tell them apart.")
        return Table(title, header, rows, note=note, footnote=" ".join(self.notes()), lead=self.lead())


def alias_words(alias: str) -> str:
    """`-placement.layer3:placement.layer4` -> `-placement.layer3 x placement.layer4`."""
    return ("-" if alias.startswith("-") else "") + TIMES.join(alias.lstrip("-").split(":"))


def interval(low: float, high: float, dp: int) -> str:
    return "-" if math.isnan(low) else f"[{low:+.{dp}f}, {high:+.{dp}f}]"


def design_line(design: Factorial, names: list[str]) -> str:
    """`Factorial` in a sentence: its kind, resolution and generators, its factors' letters, its arms."""
    k, full = design.k, design.full_runs
    letters = ", ".join(f"{design.letter(key)} {n}" for key, n in zip(design.factors, names))
    if not design.generators:
        return f"Design: the full 2^{k} factorial, all {full} arms (factors {letters})."
    resolution = ROMAN.get(design.resolution, str(design.resolution))
    return (f"Design: a 2^({k}-{len(design.generators)}) fractional factorial, resolution {resolution}, generated by "
            f"{', '.join(map(str, design.generators))}: {len(design.runs)} of the {full} arms (factors {letters}).")


def factor_names(design: Factorial) -> list[str]:
    """Each factor's key as an arm's label writes it, `model.` dropped; whole where two would read alike."""
    short = [key.split(".", 1)[-1] for key in design.factors]
    return short if len(set(short)) == len(short) else list(design.factors)


def spelled(value: Any) -> str:
    """A level as a spec writes it: a stage switch's booleans as off and on."""
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def study_effects(study: Study | None, records: list[TrialRecord], metric: str, label: str) -> StudyEffects:
    """The effects section of a factorial `study` (None: its spec could not be read) from its runs."""
    key = best(metric)
    if study is None or study.factorial is None:
        return StudyEffects(key, label, "", {}, (), None, why_not="No effects model: it needs the study's design, "
                            "and the study's spec.yaml cannot be read here.")
    design = study.factorial
    names = factor_names(design)
    observations, left_out = _observations(study, records, key, dict(zip(design.factors, names)))
    levels = {n: (spelled(low), spelled(high)) for n, (low, high) in zip(names, design.levels)}
    line = design_line(design, names)
    # The design's aliases are checked against the runs (a coding read from another design would fail),
    # but only when every arm finished: a lost arm leaves columns the design keeps apart inseparable.
    complete = {tuple(o.coding[n] for n in names) for o in observations} == set(design.runs)
    try:
        fitted = fit(observations, factors=names, aliases=_aliases(design, names) if complete else None)
    except ValueError as err:
        return StudyEffects(key, label, line, levels, tuple(observations), None, left_out=left_out,
                            why_not=f"No effects model from {len(observations)} finished trial(s): {err}.")
    return StudyEffects(key, label, line, levels, tuple(observations), fitted, left_out=left_out)


def _observations(study: Study, records: list[TrialRecord], key: str,
                  names: dict[str, str]) -> tuple[list[Observation], str]:
    """Each planned trial with a finished run and its best-epoch metric, coded; and the others, counted."""
    planned = {t.id: t for t in study.every_trial}
    runs: dict[str, TrialRecord] = {}  # a retry continues its trial's run, so one each; a finished one if any
    for r in records:
        if r.trial_id in planned and (r.trial_id not in runs or r.outcome == Outcome.FINISHED):
            runs[r.trial_id] = r
    found, lost = [], Counter()
    for trial_id, trial in planned.items():
        r = runs.get(trial_id)
        if r is None:
            lost["never started"] += 1
        elif r.outcome != Outcome.FINISHED:
            lost[LEFT_OUT[r.outcome]] += 1
        elif not math.isfinite(r.metrics.get(key, math.nan)):
            lost[f"without {key}"] += 1
        else:
            coding = study.factorial.code(trial.overrides)
            found.append(Observation({names[k]: x for k, x in coding.items()}, trial.seed, r.metrics[key]))
    stray = sum(r.trial_id not in planned for r in records)
    said = ", ".join(f"{n} {why}" for why, n in lost.items())
    note = f"Left out of the effects model: {sum(lost.values())} of the {len(planned)} planned trials ({said})." \
        if lost else ""
    if stray:
        note += f" {stray} run(s) of trials outside the study's design are not used."
    return found, note.strip()


def _aliases(design: Factorial, names: list[str]) -> dict[str, list[str]]:
    """The design's alias table as `stats.effects.fit` takes it: effect -> its aliases, "-" for a negative one."""
    def named(effect) -> str:
        return effect_name([names[i] for i in sorted(effect)])

    return {named(effect): [("-" if sign < 0 else "") + named(other) for other, sign in others]
            for effect, others in design.alias_table(order=2) if others}
