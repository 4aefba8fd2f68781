"""A report's tables in the form of the paper (Oh et al., ../shared/paper.md): its published Tables 1
and 2 beside the measured means, and `report.tex`, booktabs tables of the study's own results laid
out as the paper's (per-class F1; accuracy and macro-F1) that drop into a LaTeX paper, led by a factorial
study's effects (their sentences, then their table)."""

from __future__ import annotations

import math
import re

from ablation.core.names import MACS, PARAMS_TOTAL, TEST_ACCURACY, TEST_MACRO_F1, test_f1
from ablation.report.effects import StudyEffects
from ablation.report.model import Arm, StudyReport, class_names, mac_unit
from ablation.report.table import Table
from ablation.stats.analysis import Interval

# The paper's published figures: single runs on AI-HUB at 256 px.
PAPER_COLUMNS = {  # column -> (model.arch, model.attention)
    "ResNet50": ("resnet50", "none"), "ResNet101": ("resnet101", "none"),
    "ResNet50 + Identity-CBAM": ("resnet50", "identity_cbam"),
    "ResNet101 + Identity-CBAM": ("resnet101", "identity_cbam"),
}
PAPER_F1 = {  # Table 1, F1 per class, in PAPER_COLUMNS order
    "happy": (0.97, 0.98, 0.98, 0.98), "anger": (0.85, 0.85, 0.87, 0.87), "unrest": (0.69, 0.71, 0.73, 0.72),
    "wound": (0.61, 0.64, 0.69, 0.66), "sad": (0.79, 0.80, 0.81, 0.78), "neutral": (0.93, 0.92, 0.92, 0.91),
    "average": (0.806, 0.816, 0.833, 0.82),
}
PAPER_ACCURACY = (81.2, 81.99, 83.23, 82.17)  # Table 2, %


def published(report: StudyReport) -> list[Table]:
    """Tables 1 and 2 as published, beside the measured means of the same four models."""
    measured: dict[str, Arm | None] = {}
    for column, (arch, attention) in PAPER_COLUMNS.items():
        measured[column] = next((a for a in report.arms.values()
                                 if (a.setting("model.arch"), a.setting("model.attention")) == (arch, attention)), None)

    def ours(arm: Arm | None, key: str, scale: float = 1.0) -> str:
        interval = arm.interval(key) if arm else None
        return "-" if interval is None else f"{interval.mean * scale:.3f}"

    f1 = Table("Table 1, F1 per class: published / measured here (mean over seeds)",
               ["class", *PAPER_COLUMNS],
               [[c, *[f"{p:.3g} / {ours(measured[col], TEST_MACRO_F1 if c == 'average' else test_f1(c))}"
                      for col, p in zip(PAPER_COLUMNS, published)]] for c, published in PAPER_F1.items()])
    accuracy = Table("Table 2, accuracy (%): published / measured here", list(PAPER_COLUMNS),
                     [[f"{p:.2f} / {ours(measured[col], TEST_ACCURACY, 100)}"
                       for col, p in zip(PAPER_COLUMNS, PAPER_ACCURACY)]])
    return [f1, accuracy]


# --- report.tex ------------------------------------------------------------------------------------

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            # The report's sentences say "Holm p < 0.001" and "±1 coding": an OT1 font prints < as ¡, and
            # pdflatex stops at a ≥ it has no glyph for.
            "<": r"\textless{}", ">": r"\textgreater{}", "≥": r"$\geq$", "≤": r"$\leq$", "±": r"$\pm$"}


def escape(text: str) -> str:
    """`text` safe in LaTeX's text mode. `+`, `=`, `.` and `,` (placements such as `layer3.2+layer4`)
    print as themselves there and are left alone."""
    return "".join(_SPECIAL.get(c, c) for c in text)


def cell(interval: Interval | None, scale: float = 1.0, digits: int = 3) -> str:
    """mean $\\pm$ half-width; a clipped interval as its bounds, daggered; one seed as its mean alone."""
    if interval is None:
        return "--"
    mean = f"{interval.mean * scale:.{digits}f}"
    if math.isnan(interval.low):
        return mean
    if interval.clipped:
        return (f"{mean}\\,[{interval.low * scale:.{digits}f}, {interval.high * scale:.{digits}f}]"
                "$^{\\dagger}$")
    return f"{mean} $\\pm$ {interval.half_width * scale:.{digits}f}"


# Data columns a one-column table holds at \small; a wider one spans both columns of a two-column paper.
_ONE_COLUMN = 4


def _table(caption: str, label: str, header: list[str], rows: list[list[str]], clipped: bool,
           align: str | None = None) -> str:
    """A booktabs table. Six classes' intervals are too wide for one column of a two-column paper, where
    scaling them to it left 5 pt type: a table of more than `_ONE_COLUMN` figures spans the page
    (table*) in \\footnotesize with narrower gaps, and is scaled down only if still wider than that."""
    wide = len(header) - 2 > _ONE_COLUMN
    env = "table*" if wide else "table"
    lines = [f"\\begin{{{env}}}[t]", "\\centering", f"\\caption{{{caption}}}", f"\\label{{{label}}}",
             "\\footnotesize\\setlength{\\tabcolsep}{4pt}" if wide else "\\small",
             "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%",
             f"\\begin{{tabular}}{{{align or 'l' + 'r' * (len(header) - 1)}}}", "\\toprule",
             " & ".join(header) + " \\\\",
             "\\midrule", *[" & ".join(row) + " \\\\" for row in rows], "\\bottomrule", "\\end{tabular}}"]
    if clipped:
        lines += ["\\par\\smallskip{\\footnotesize $^{\\dagger}$\\,interval clipped to the metric's range.}"]
    return "\n".join(lines + [f"\\end{{{env}}}"])


def latex(report: StudyReport) -> str:
    """report.tex: Table 1, test F1 per class, and Table 2, test accuracy and macro-F1 (with costs), one
    row per configuration in the report's order; mean $\\pm$ 95% interval half-width over seeds."""
    arms = [a for a in report.ranked() if a.seeds]
    classes = class_names(report.arms)
    study = escape(report.study)
    key = "".join(c if c.isalnum() else "-" for c in report.study)
    f1_cells = [[a.interval(test_f1(c)) for c in classes] + [a.interval(TEST_MACRO_F1)] for a in arms]
    table1 = _table(
        f"Test F1 per class of each configuration of {study}: mean $\\pm$ 95\\% confidence interval "
        "half-width over $n$ seeds, at the epoch of best validation score.",
        f"tab:{key}-f1", ["Configuration", "$n$", *[escape(c.capitalize()) for c in classes], "Macro-F1"],
        [[escape(a.name), str(a.seeds), *[cell(i) for i in row]] for a, row in zip(arms, f1_cells)],
        any(i is not None and i.clipped for row in f1_cells for i in row))
    costs = [(PARAMS_TOTAL, "Params (M)", 1e-6), (MACS, *mac_unit(arms))]
    costs = [c for c in costs if any(c[0] in a.costs for a in arms)]
    scores = [[a.interval(TEST_ACCURACY), a.interval(TEST_MACRO_F1)] for a in arms]
    table2 = _table(
        f"Test accuracy (\\%) and macro-F1 of each configuration of {study}: mean $\\pm$ 95\\% confidence "
        "interval half-width over $n$ seeds" + (", with the model's cost" if costs else "") + ".",
        f"tab:{key}-accuracy", ["Configuration", "$n$", "Accuracy (\\%)", "Macro-F1", *[h for _, h, _ in costs]],
        [[escape(a.name), str(a.seeds), cell(accuracy, 100, 2), cell(f1),
          *[f"{a.costs[k] * scale:.2f}" if k in a.costs else "--" for k, _, scale in costs]]
         for a, (accuracy, f1) in zip(arms, scores)],
        any(i is not None and i.clipped for row in scores for i in row))
    head = (f"% Tables of the study {report.study}, written by `ablate report`.\n"
            "% They need \\usepackage{booktabs} and \\usepackage{graphicx} in the preamble.\n")
    effects = [] if report.effects is None else [effects_latex(report.effects, study, key)]
    return head + "\n\n".join([*effects, table1, table2]) + "\n"


def effects_latex(effects: StudyEffects, study: str, key: str) -> str:
    """A factorial study's effects: the sentences as paragraphs for an ablation section's text, then each
    effect's estimate, interval, p-values and aliases in a table; the sentence alone without a fit."""
    words = "\n\n".join(escape(text) for text in effects.lead())
    if effects.fit is None:
        return f"% The effects of the factors: why there are none.\n{words} {escape(' '.join(effects.notes()))}"

    def named(factors) -> str:
        return " $\\times$ ".join(map(escape, factors))

    def p(value: float) -> str:
        return "--" if math.isnan(value) else "$<0.001$" if value < 0.001 else f"{value:.3f}"

    dp = effects.digits
    rows = [[named(e.factors), f"${e.estimate:+.{dp}f}$",
             "--" if math.isnan(e.low) else f"$[{e.low:+.{dp}f}, {e.high:+.{dp}f}]$", p(e.p), p(e.p_holm),
             ", ".join(("$-$" if a.startswith("-") else "") + named(a.lstrip("-").split(":")) for a in e.aliases)
             or "--"] for e in effects.fit.effects]
    # The design's size as a paper writes it: 2^(4-1) as $2^{4-1}$, not as a caret and parentheses.
    notes = re.sub(r"2\\textasciicircum\{\}\(?(\d+)(-\d+)?\)?", r"$2^{\1\2}$", escape(" ".join(effects.notes())))
    caption = (f"Effects on {escape(effects.label)} of the factors of {study}: each main effect and estimable "
               "two-factor interaction (the mean at the factor's high level less the mean at its low one), its 95\\% "
               f"confidence interval, $p$ and Holm-adjusted $p$ over the {len(rows)} effects. {notes}")
    table = _table(caption, f"tab:{key}-effects", ["Effect", "Estimate", "95\\% CI", "$p$", "Holm $p$",
                                                   "Aliased with"], rows, False, align="lrrrrl")
    return f"% The effects of the factors, in words for the text, then as a table.\n{words}\n\n{table}"
