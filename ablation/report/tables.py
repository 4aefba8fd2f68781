"""A study report as tables: the race's answer (or a factorial study's effects) first, then the
configurations ranked, the paired comparisons (the race's confirmation on the test split), explanation
scores, marginal effects, the paper's tables, and the setup. Each renderer (terminal, Markdown, HTML,
LaTeX) draws these."""

from __future__ import annotations

import math

from ablation.accounting import BUSY
from ablation.core.names import LATENCY_BUSY, LATENCY_IQR_MS, LATENCY_MS, MACS, PARAMS_ADDED, PARAMS_TOTAL, explanation, test_f1
from ablation.report.race import confirmation_columns, digits, race_table
from ablation.report.model import SCORES, Arm, StudyReport, class_names, label
from ablation.report.paper import published
from ablation.report.table import Table, p_value
from ablation.stats.analysis import Comparison, Interval, order

CLIPPED = "†"
CLIPPED_NOTE = (f"{CLIPPED} interval clipped to the metric's range ([0, 1] for accuracy and F1): the 95% t "
                "interval of so few seeds runs past what the metric can take.")


def _ci(interval: Interval | None, scale: float = 1.0) -> str:
    """A mean and its interval, to the decimals that give the interval's half-width two significant
    figures (three at least): `0.825 ± 0.041` beside `0.3557 ± 0.0040`, never `0.825` beside `0.3557 ± 0.04`."""
    if interval is None:
        return "-"
    if math.isnan(interval.low):
        return f"{interval.mean * scale:.{digits()}f} (one seed)"
    dp = digits((interval.high - interval.low) * scale / 2)
    if interval.clipped:  # no longer symmetric about the mean, so its bounds rather than a half-width
        low, high = interval.low * scale, interval.high * scale
        return f"{interval.mean * scale:.{dp}f} [{low:.{dp}f}, {high:.{dp}f}]{CLIPPED}"
    return f"{interval.mean * scale:.{dp}f} ± {interval.half_width * scale:.{dp}f}"


_p = p_value


def tables(report: StudyReport, compact: bool = False) -> list[Table]:
    """The report's tables; `compact` (for a terminal) leaves out per-class F1 and latency, and
    compares on the ranking metric only."""
    classes = [] if compact else class_names(report.arms)
    planned = f" of {report.planned_seeds}" if report.planned_seeds else ""
    extra = [] if report.rank_by in SCORES else [report.rank_by]
    ranked = report.ranked()
    intervals = {a.name: [a.interval(k) for k in (*SCORES, *extra, *map(test_f1, classes))] for a in ranked}
    direction = "lower" if report.mode == "min" else "higher"
    # A terminal's 80 columns hold the scores and sizes; what was lost goes beside the seeds there.
    sizes = (PARAMS_TOTAL, MACS) if compact else (PARAMS_TOTAL, PARAMS_ADDED, MACS)
    configs = Table(
        f"Configurations, best first by {label(report.rank_by)} ({direction} is better): mean ± 95% CI "
        "half-width over seeds, test split at the best validation epoch",
        ["configuration", "seeds", "test accuracy", "test macro-F1", *map(label, extra),
         *[f"F1 {c}" for c in classes], *(["params", "MACs"] if compact else ["params", "added", "MACs",
                                                                              "latency ms (median)", "lost"])],
        [[a.name, f"{a.seeds}{planned}" + (f" ({_lost(a)})" if compact and _lost(a) != "-" else ""),
          *map(_ci, intervals[a.name]), *[_count(a.costs.get(k)) for k in sizes],
          *([] if compact else [_latency(a.costs), _lost(a)])]
         for a in ranked],
        footnote=" ".join(
            [CLIPPED_NOTE] * any(i and i.clipped for row in intervals.values() for i in row)
            + [LOADED_NOTE] * (not compact and any(_latency(a.costs).endswith(LOADED) for a in ranked))))
    out = [configs]
    if report.race is not None:  # the study's answer comes first; the test split confirms it after
        out.insert(0, race_table(report.race, label(report.metric), compact=compact))
    if report.effects is not None:  # a factorial study's answer, as a race's is (a factorial never races)
        out.insert(0, report.effects.table(compact=compact))
    compared = [(score, found) for score, found in report.comparisons.items()
                if not compact or score == report.rank_by]
    def places(c: Comparison) -> int:
        """A difference's decimals: its interval's, as for a mean; a race's, so both tables speak alike."""
        if report.race is not None:
            return digits(report.race.margin, report.race.seed_sd)
        return digits((c.difference.high - c.difference.low) / 2)

    for i, (score, found) in enumerate(compared, 1):
        found = sorted(found, key=lambda c: (math.isnan(c.p_holm), c.p_holm))
        # The method is the same for every score, so it is said once, under the last of them.
        full = [[c.arm, str(c.difference.n),
                 f"{c.difference.mean:+.{(dp := places(c))}f} "
                 f"[{c.difference.low:+.{dp}f}, {c.difference.high:+.{dp}f}]",
                 _p(c.p_t), _p(c.p_wilcoxon), _p(c.p_holm), _verdict(c, report.lower_is_better(score)),
                 _needed(c)] for c in found]
        header = ["configuration", "pairs", "difference (95% CI)", "p (paired t)", "p (Wilcoxon)", "p (Holm)",
                  "verdict", "seeds for a decision"]
        title = f"{label(score)} against the baseline ({report.baseline}), paired by seed"
        notes = [METHOD] if i == len(compared) else []
        sentences: list[str] = []
        if report.race is not None:
            # A race's arms get their seeds from the race, so its answer, not a power calculation,
            # says whether more seeds could decide them: the last column is the race's instead.
            cells, sentences = confirmation_columns(report.race, found, report.lower_is_better(score))
            for row, cell in zip(full, cells):
                row[-1] = cell
            header[-1] = "race" if compact else "confirms the race?"
            title = f"Confirmation on the test split: {title}"
            notes = [RACE_METHOD] * (i == len(compared))
        # A terminal's 80 columns: the race's answer takes the place of the pair count there.
        shown = [0, 2, 5, 6, 7] if compact and report.race else [0, 1, 2, 5, 6] if compact else range(len(header))
        out.append(Table(title, [header[j] for j in shown], [[row[j] for j in shown] for row in full],
                            note=" ".join(notes), footnote=" ".join(sentences) if report.race else ""))
    cue_scores = [f"{m}_{g}" for g in ("all", "occluded", "unoccluded") for m in ("cue_energy", "pointing_game")]
    keys = [explanation(score) for score in cue_scores]
    if not compact and any(k in keys for a in report.arms.values() for k in a.scores):
        out.append(Table(
            "Grad-CAM on the class cues (ablate explain --score"
            + (f", at {report.explained_at}" if report.explained_at else "") + "; mean over the seeds scored)",
            ["configuration", *[score.replace("_", " ") for score in cue_scores]],
            [[a.name, *[f"{a.interval(k).mean:.3f}" if a.scores.get(k) else "-" for k in keys]]
             for a in ranked if any(a.scores.get(k) for k in keys)],
            note="Cue energy: the share of the true class's Grad-CAM inside the generated face's cue mask "
                 "(brows, eyes, mouth). Pointing game: how often its peak falls on a cue. Occluded faces "
                 "wear glasses, a hand or hair over a cue."))
    for axis, means in report.marginals.items():
        out.append(Table(f"Marginal effect of {axis} on {label(report.rank_by)} (mean over the other axes)",
                            ["rank", axis, f"mean {label(report.rank_by)}"],
                            [[str(i), value, f"{means[value]:.4f}"] for i, value in
                             enumerate(order(means, report.mode), 1)]))
    if report.reference == "paper" and not compact:
        out += published(report)
    return out

def setup_table(report: StudyReport) -> Table:
    return Table("Setup and provenance", ["setting", "value"], [list(row) for row in report.setup],
                 note="Read from the study's runs in MLflow (their params and tags) and its spec.yaml; "
                      "'not recorded' where none of them carries the value.")


METHOD = ("Holm's correction runs over every configuration compared in a table. Wilcoxon's test joins from 6 "
          "pairs. 'seeds for a decision': for a difference not yet significant, the pairs a paired t-test needs "
          "for 80% power at the observed mean difference and spread, at 0.05 divided by the configurations "
          "compared (Holm's strictest step).")


LOADED = "*"
UNDER_LOAD = BUSY  # the share of the machine others may use while a latency is timed
LOADED_NOTE = (f"{LOADED} latency timed while other processes kept more than {UNDER_LOAD:.0%} of the machine busy: "
               "not a figure to quote.")


def _latency(costs: dict[str, float]) -> str:
    """The median latency with its interquartile range, marked if timed under load."""
    if LATENCY_MS not in costs:
        return "-"
    spread = costs.get(LATENCY_IQR_MS)
    shown = f"{costs[LATENCY_MS]:.2f}" + (" (no spread logged)" if spread is None else f" (IQR {spread:.2f})")
    return shown + (LOADED if costs.get(LATENCY_BUSY, 0.0) > UNDER_LOAD else "")


def _count(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


def _lost(arm: Arm) -> str:
    parts = [(arm.failed, "failed"), (arm.diverged, "diverged"), (arm.stopped, "stopped early"),
             (arm.unfinished, "unfinished")]
    if not arm.finished and not any(names for names, _ in parts):
        return "not started"  # only a planned arm has no trials at all
    return ", ".join(f"{len(names)} {what}" for names, what in parts if names) or "-"


RACE_METHOD = ("A confirmation, not the study's answer: the paired t-test on the test split at each trial's best "
               "validation epoch, Holm-corrected across the configurations compared, on the seeds the race ran. "
               "Wilcoxon's test joins from 6 pairs.")


def _needed(c: Comparison) -> str:
    if c.significant or math.isnan(c.p_t):
        return "-"
    return str(c.seeds_needed) if c.seeds_needed else "> 1000"


def _verdict(c: Comparison, lower_is_better: bool = False) -> str:
    if math.isnan(c.p_holm):
        return "no spread to test"
    if c.significant:
        return "better" if (c.difference.mean < 0) == lower_is_better else "worse"
    return "within seed noise"
