"""A race's part of `ablate report`: one answer per arm.

The race's decision, on the metric it decided on (the best-epoch validation score: a race never looks
at the test split), is the study's answer, and the report leads with it. Beside it, how far to trust
it: the margin in the metric's units and in paired seed SDs (a margin of many SDs makes "equivalent"
say little), and the shape of the paired differences the decision used (the guarantee assumes
Gaussian ones: a skewed sample or an outlier seed is flagged, with a sign-flip permutation p-value as a
second opinion). The test-split comparison follows as a confirmation, and where it seems to disagree
with the race the report says why, in words."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ablation.stats import racing
from ablation.stats.analysis import Comparison
from ablation.stats.paired_checks import PairedCheck, check
from ablation.stats.paths import paired_differences
from ablation.report.table import Table, p_value

MARGIN_SDS = 2.0  # a margin wider than this many paired seed SDs lets large differences pass as equivalent


@dataclass(frozen=True)
class Race:
    """A race as its finished runs decide it (the same rule the driver used, recomputed here)."""

    baseline: str
    margin: float
    alpha: float
    max_seeds: int
    decisions: dict[str, racing.Decision]
    seeds_run: dict[str, int]  # arm -> finished seeds
    paths: dict[str, dict[int, tuple[float, float]]]  # arm -> seeds -> its interval then
    checks: dict[str, PairedCheck]  # arm -> the shape of the paired differences its decision used
    seed_sd: float  # SD of the paired differences (arm - baseline) pooled over the arms; nan without two pairs
    spread: float  # the range of the arms' mean differences from the baseline, the baseline's 0 included

    def margin_words(self) -> str:
        """The margin in the metric's units and in paired seed SDs, as every place that shows it says it."""
        if not math.isfinite(self.seed_sd) or self.seed_sd <= 0:
            return f"±{self.margin:g}"
        return f"±{self.margin:g} ({self.margin / self.seed_sd:.1f} paired seed SDs of {self.seed_sd:.2g})"

    def margin_warning(self, metric: str) -> str | None:
        """Why the margin makes "equivalent" say little, or None when it does not."""
        if not math.isfinite(self.seed_sd) or self.seed_sd <= 0 or self.margin <= 0:
            return None
        sds = self.margin / self.seed_sd
        wide = sds > MARGIN_SDS
        spread = len(self.decisions) >= 2 and 0 < self.spread < self.margin
        if not (wide or spread):
            return None
        reasons = [f"{sds:.1f} paired seed SDs (more than {MARGIN_SDS:g})"] * wide + [
            f"wider than the whole spread of the arms' differences from the baseline ({self.spread:.2g})"] * spread
        advice = (f"Size the margin to the smallest difference that matters, about 1-2 seed SDs "
                  f"({self.seed_sd:.2g}-{2 * self.seed_sd:.2g} here)" if wide else
                  "Telling these arms apart needs a margin narrower than their differences")
        return (f"The race's margin ±{self.margin:g} of {metric} is {' and '.join(reasons)}: 'equivalent' then says "
                f"only that no difference as large as ±{self.margin:g} was found. {advice}, and more seeds: a new "
                "race, under a new study name (a finished race's settings are fixed).")


def read_race(study, values: Mapping[str, Mapping[int, float]], failed: Mapping[str, list[int]]) -> Race:
    """The race of `study` (a `core.Study`) from its arms' best-epoch metric, arm -> seed -> value, and the
    seeds that failed for good, arm -> seeds."""
    spec = study.spec
    r, order = spec.search.race, spec.search.seeds
    baseline = study.baseline
    family = [a for a in values if a != baseline] if r.mode == "baseline" else list(values)

    def decide(upto: int) -> dict[str, racing.Decision]:
        seen = {arm: {s: v for s, v in by_seed.items() if s in order[:upto]} for arm, by_seed in values.items()}
        return racing.decide(seen, baseline, order, margin=r.margin, alpha=r.alpha, max_seeds=len(order),
                             start=r.start, mode=r.mode, higher_is_better=spec.mode == "max", arms=family,
                             failed=failed)

    paths: dict[str, dict[int, tuple[float, float]]] = {arm: {} for arm in family}
    for n in range(r.start, len(order) + 1):
        for arm, d in decide(n).items():
            if d.seeds == n or n == r.start:
                paths.setdefault(arm, {})[d.seeds] = (d.low, d.high)
    decisions = decide(len(order))
    checks = {}
    for arm, d in decisions.items():
        used = d.decided_at or d.seeds
        diffs = paired_differences(values, arm, d.against or baseline, order)[:used]
        if len(diffs) >= 2:
            checks[arm] = check(diffs)
    against = {arm: paired_differences(values, arm, baseline, order) for arm in values if arm != baseline}
    samples = [x for x in against.values() if len(x) >= 2]
    dof = sum(len(x) - 1 for x in samples)
    sd = math.sqrt(sum(_ss(x) for x in samples) / dof) if dof else math.nan
    means = [0.0, *(sum(x) / len(x) for x in against.values() if x)]
    return Race(baseline, r.margin, r.alpha, len(order), decisions, {arm: len(v) for arm, v in values.items()},
                paths, checks, sd, max(means) - min(means))


def _ss(x: list[float]) -> float:
    mean = sum(x) / len(x)
    return sum((v - mean) ** 2 for v in x)


def _answer(d: racing.Decision) -> str:
    if d.state == racing.UNDECIDED:
        return f"undecided at max ({d.decided_at})"
    if d.state in (racing.RACING,):
        return "racing"
    return f"{d.state} at {d.decided_at}"


def _flag(race: Race, arm: str) -> str:
    d, found = race.decisions[arm], race.checks.get(arm)
    if d.state == racing.STOPPED:
        return "seed failed"
    if d.note == racing.NO_SPREAD:
        return "no spread"
    if found is not None and found.flagged:
        return "not Gaussian"
    return "-"


def digits(*scales: float) -> int:
    """Decimals that show the smallest of `scales` to two significant figures (at least 3)."""
    positive = [abs(s) for s in scales if math.isfinite(s) and s != 0]
    return max(3, 1 - math.floor(math.log10(min(positive)))) if positive else 3


def race_table(race: Race, metric: str, *, compact: bool = False) -> Table:
    """The study's answer per arm: the race's decision, its difference and interval, and what to check."""
    dp = digits(race.margin, race.seed_sd)
    rows = []
    for arm, d in race.decisions.items():
        # No interval yet (before `start`), or none at all (no spread on any look): a dash, not [-inf, +inf].
        interval = f"[{d.low:+.{dp}f}, {d.high:+.{dp}f}]" if math.isfinite(d.low) and math.isfinite(d.high) else "-"
        difference = "-" if math.isnan(d.mean) else f"{d.mean:+.{dp}f}"
        found, flag = race.checks.get(arm), _flag(race, arm)
        if compact:  # 80 columns: the interval beside its difference, and the check as a mark the notes explain
            rows.append([arm, _answer(d) + (f" {CHECK}" if flag != "-" else ""), str(race.seeds_run.get(arm, 0)),
                         difference if interval == "-" else f"{difference} {interval}"])
            continue
        rows.append([arm, _answer(d), str(race.seeds_run.get(arm, 0)), difference, interval, flag,
                     p_value(d.p_value), "-" if found is None else p_value(found.permutation_p),
                     str(race.max_seeds - race.seeds_run.get(arm, 0)) if d.state in DECIDED else "-"])
    header = ["arm", "answer", "seeds", "difference [interval]"] if compact else [
        "arm", "answer", "seeds", "difference", "interval", "check", "p (sequential, Holm)", "p (sign-flip)",
        "seeds saved"]
    against = "against " + race.baseline if race.decisions and any(
        d.against == race.baseline for d in race.decisions.values()) else "for the best arm"
    note = (f"The study's answer for each arm is the race's, on best-epoch {metric} (a validation score: the race "
            f"never looks at the test split), with family-wise error at most {race.alpha:g} over every look it took; "
            "the p-values are the race's sequential ones, Holm-adjusted, beside a sign-flip permutation test of the "
            "same differences (no allowance for the looks).")
    footnote = f"Equivalent: the sequentially valid interval lies inside {race.margin_words()}. {cost(race)}"
    if compact and any(_flag(race, arm) != "-" for arm in race.decisions):
        footnote += f" {CHECK} to check: see below."
    return Table(f"The study's answer: the race {against} on best-epoch {metric}", header, rows,
                 note=note, footnote=" ".join([footnote, *race_notes(race)]))


CHECK = "‡"  # in a terminal's race table: an arm whose answer the notes under it qualify
DECIDED = (racing.BETTER, racing.WORSE, racing.EQUIVALENT)  # answered by a rule: the seeds it did not need are saved


def cost(race: Race) -> str:
    """What the race ran against the fixed design. Only an answer saves seeds: an arm still racing, or
    stopped by a failed seed, has not saved the seeds it did not run, and neither has the baseline then."""
    run = sum(race.seeds_run.values())
    fixed = race.max_seeds * len(race.seeds_run)
    open_ = [a for a, d in race.decisions.items() if d.state not in (*DECIDED, racing.UNDECIDED)]
    saved = sum(race.max_seeds - race.seeds_run.get(a, 0) for a, d in race.decisions.items() if d.state in DECIDED)
    if not open_:
        saved = fixed - run
    said = f"The race ran {run} trials where the fixed design runs {fixed}, the baseline's included"
    racing_now = sum(d.state == racing.RACING for d in race.decisions.values())
    if racing_now:
        return f"{said}: the race is still in progress ({racing_now} arm(s) racing); {saved} trials saved by answers so far."
    if open_:
        return f"{said}; {saved} trials saved by answers ({len(open_)} arm(s) stopped without one)."
    return f"{said} ({saved / fixed:.0%} saved)."


def race_notes(race: Race) -> list[str]:
    """What the table's check column means for each arm it marks, in words; a reason shared by every
    arm (the baseline's failed seed) once."""
    by_note: dict[str, list[str]] = {}
    for arm, d in race.decisions.items():
        if d.note:
            by_note.setdefault(d.note, []).append(arm)
    out = []
    for note, arms in by_note.items():
        if note == racing.NO_SPREAD:
            out.append(f"No spread ({', '.join(arms)}): every paired difference is the same, so there is no "
                       "t statistic; the metric cannot resolve this difference (more images per split would).")
        elif note.startswith("the baseline's"):
            out.append(note[0].upper() + note[1:] + ".")
        else:
            out += [f"{arm}: {note}." for arm in arms]
    for arm, found in race.checks.items():
        if found.flagged and race.decisions[arm].decided:
            out.append(f"Not Gaussian ({arm}): {found.reason}. The decision's guarantee assumes Gaussian paired "
                       f"differences; as a second opinion, a sign-flip permutation test of its {found.n} differences "
                       f"gives p {'' if found.permutation_p < 0.001 else '= '}{p_value(found.permutation_p)} (no allowance for the race's looks).")
    return out


def confirmation(d: racing.Decision | None, c: Comparison, margin: float, *,
                 lower_is_better: bool) -> tuple[str, str | None]:
    """How the test split's comparison `c` stands to the race's decision `d`: a few words for a table
    cell, and a sentence when they could be read as disagreeing (None when they cannot)."""
    if d is None or d.state in (racing.RACING, racing.UNDECIDED, racing.STOPPED):
        return "no race answer", None
    diff = c.difference
    shown = f"{diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]"
    excludes_zero = diff.low > 0 or diff.high < 0
    if d.state == racing.EQUIVALENT:
        if -margin < diff.low and diff.high < margin:
            if not excludes_zero:
                return "confirms", None
            return "confirms", (f"{c.arm}: the race called it equivalent (within ±{margin:g}); on the test split its "
                                f"difference {shown} excludes 0 but lies inside the margin: the race's margin is "
                                "wider than this difference.")
        return "cannot confirm", (f"{c.arm}: the race called it equivalent (within ±{margin:g}); the test split's "
                                  f"interval {shown} reaches beyond the margin, so its seeds alone cannot say so.")
    better = d.state == racing.BETTER
    test_better = (diff.mean < 0) == lower_is_better
    if c.significant and test_better == better:
        return "confirms", None
    if c.significant:
        return "contradicts", (f"{c.arm}: the race called it {d.state}; on the test split it is significantly "
                               f"{'better' if test_better else 'worse'} ({shown}). Check the split sizes and the seeds.")
    if test_better == better:
        return "same direction", (f"{c.arm}: the race called it {d.state}; on the test split it points the same way "
                                  f"({shown}) but is within seed noise after Holm's correction.")
    return "cannot confirm", (f"{c.arm}: the race called it {d.state}; on the test split it points the other way "
                              f"({shown}), within seed noise.")


def confirmation_columns(race: Race, found: list[Comparison], lower_is_better: bool) -> tuple[list[str], list[str]]:
    """Per comparison (in the order given), the confirmation cell; and the sentences, in that order."""
    cells, sentences = [], []
    for c in found:
        cell, sentence = confirmation(race.decisions.get(c.arm), c, race.margin, lower_is_better=lower_is_better)
        cells.append(cell)
        if sentence:
            sentences.append(sentence)
    return cells, sentences


def race_values(arms: Mapping[str, Any], key: str) -> tuple[dict[str, dict[int, float]], dict[str, list[int]]]:
    """From a report's arms: arm -> seed -> `key` of its finished trials, and arm -> the seeds that failed or
    diverged and never finished (failed for good, as far as the store knows)."""
    values = {name: {int(t.params["seed"]): t.metrics[key] for t in arm.finished if key in t.metrics}
              for name, arm in arms.items()}
    failed = {name: sorted(s for s in arm.lost_seeds if s not in values[name]) for name, arm in arms.items()}
    return values, {name: seeds for name, seeds in failed.items() if seeds}
