"""What `ablate report` writes: report.md, a tidy report.csv, report.tex (via paper_tables), one
self-contained report.html, and the PNGs with captions in words; all from a `StudyReport`, so from
MLflow alone."""

from __future__ import annotations

import base64
import csv
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from ablation.stats.analysis import pareto_front
from ablation.report.model import (COST_SCALE, CURVE_SEEDS, SCORES, Arm, StudyReport, class_names, label,
                                   mac_unit)
from ablation.report.paper import latex
from ablation.report.tables import UNDER_LOAD, setup_table, tables
from ablation.report.table import markdown_text
from ablation.core.sites import STAGES, Site, parse_placement

from ablation.tracking import COSTS, LATENCY_BUSY, LATENCY_MS, MACS, PARAMS_TOTAL, best, test_f1


@dataclass(frozen=True)
class Picture:
    path: Path
    caption: str  # in words, for the Markdown and HTML beside it


def draw(report: StudyReport, out: Path) -> list[Picture]:
    """The report's PNGs in `out`, with their captions."""
    from ablation.report import figures

    arms = [a for a in report.ranked() if a.scores.get(report.rank_by)]
    if not arms:
        return _half_normal(report, out)
    means = {a.name: a.interval(report.rank_by).mean for a in arms}
    drawn = [_overview(report, arms, means, out), *_cost_scatter(report, arms, out), *_class_bars(report, arms, out)]
    curves = {a.name: report.curves[a.name] for a in report.ranked() if report.curves.get(a.name)}
    if curves:
        path = figures.learning_curves(curves, metric=label(report.metric), path=out / "learning_curves.png")
        drawn.append(Picture(path, f"{_upper(label(report.metric))} per epoch, mean over seeds (at most the first "
                                   f"{CURVE_SEEDS} of each), one line per configuration."))
    if report.race is not None:
        path = figures.race_intervals(report.race.paths, margin=report.race.margin, baseline=report.race.baseline,
                                      metric=label(report.metric), path=out / "race.png")
        drawn.append(Picture(path, f"The race: each arm's sequentially valid interval for its difference from "
                                   f"{report.race.baseline} as its seeds arrived; grey, the band of practical "
                                   f"equivalence (±{report.race.margin:g})."))
    return drawn + _half_normal(report, out)


def _half_normal(report: StudyReport, out: Path) -> list[Picture]:
    """A factorial study's effects against where noise alone would put them (Daniel's plot)."""
    from ablation.report.effects import TIMES
    from ablation.report.effects_plot import half_normal

    effects = report.effects
    if effects is None or effects.fit is None:
        return []
    path = half_normal(effects.fit, metric=effects.label, path=out / "effects_half_normal.png", join=TIMES)
    return [Picture(path, f"The effects on {effects.label} by size (half-normal plot): each effect's absolute "
                          "estimate against where it would lie if every effect were noise; those that stand off the "
                          f"dashed line are real, and the ones with Holm p < {effects.fit.alpha:g} are named.")]


def _cost_scatter(report: StudyReport, arms: list[Arm], out: Path) -> list[Picture]:
    from ablation.report import figures

    # A latency timed while other processes kept the machine busy is not to be quoted, so no front is
    # drawn from it: the latencies are left out when any arm's was timed so.
    loaded = any(a.costs.get(LATENCY_BUSY, 0.0) > UNDER_LOAD for a in arms)
    costs = [c for c in (MACS, PARAMS_TOTAL, LATENCY_MS) if all(c in a.costs for a in arms)
             and not (c == LATENCY_MS and loaded)]
    if not costs:
        return []
    what = label(report.rank_by)
    scores = {a.name: (i.mean, i.low, i.high) for a in arms if (i := a.interval(report.rank_by))}
    # Each cost's axis and its scale; MACs in MMACs where every arm is under a GMAC, as report.tex gives them.
    axes = {c: mac_unit(arms) if c == MACS else (label(c), COST_SCALE[c]) for c in costs}
    spent = {name: {a.name: a.costs[c] * scale for a in arms} for c, (name, scale) in axes.items()}
    fronts = {axis: pareto_front({n: (by_arm[n], scores[n][0]) for n in scores},
                                 higher_is_better=report.mode == "max") for axis, by_arm in spent.items()}
    path = figures.cost_scatter(scores, spent, score_label=what, fronts=fronts, path=out / "score_vs_cost.png")
    joined = any(len(front) > 1 for front in fronts.values())
    return [Picture(path, f"{_upper(what)} against {', '.join(spent)}: each point is a configuration's mean over "
                          "seeds, its bar the 95% interval."
                          + (" Red: the Pareto front, configurations no other one beats on both cost and score."
                             if joined else "")
                          + (" Only the front's configurations are named." if len(scores) > figures.NAMED else "")
                          + (" Latency is left out: it was timed while other processes kept the machine busy."
                             if loaded and all(LATENCY_MS in a.costs for a in arms) else ""))]


def _class_bars(report: StudyReport, arms: list[Arm], out: Path) -> list[Picture]:
    from ablation.report import figures

    classes = class_names(report.arms)
    if not classes:
        return []
    shown = [a for a in arms[:3] if a.name != report.baseline]
    if report.baseline in report.arms and report.arms[report.baseline].scores:
        shown.append(report.arms[report.baseline])
    per_class = {a.name + (" (baseline)" if a.name == report.baseline else ""):
                 {c: (i.mean, i.low, i.high) for c in classes if (i := a.interval(test_f1(c)))} for a in shown}
    what = label(report.rank_by)
    path = figures.class_bars(per_class, classes, title=f"test F1 per class, the best by {what}",
                              path=out / "per_class_f1.png")
    return [Picture(path, f"Test F1 per class of the best configurations by {what}"
                          + (f" and of the baseline ({report.baseline})" if report.baseline else "")
                          + ": mean over seeds, the bars' whiskers the 95% intervals.")]


def _overview(report: StudyReport, arms: list[Arm], means: dict[str, float], out: Path) -> Picture:
    """The study at a glance: the sites good placements share, a one-axis study's intervals, or two axes' grid."""
    from ablation.report import figures

    axes = [a for a in (arms[0].levels if arms else {}) if a != "arm"]
    placements = {a.name: a.levels.get("model.placement") or a.setting("model.placement") or "" for a in arms}
    what = label(report.rank_by)
    title, path, better = f"{_upper(what)}, mean over seeds", out / "heatmap.png", report.mode == "max"
    if (axes == ["model.placement"] or (not axes and any(placements.values()))) and _combined(arms, placements):
        values, columns = placement_grid(placements, means, _all_stages(arms, placements))
        values = {(arm, NO_MODULE if site == "none" else site): v for (arm, site), v in values.items()}
        figures.heatmap(values, [a.name for a in arms], [c if c != "none" else NO_MODULE for c in columns],
                        row_label="placement", column_label="site holding a module", title=title, path=path,
                        higher_is_better=better)
        return Picture(path, f"{_upper(what)} of each placement (mean over seeds), under each site that holds "
                             f"a module: a whole stage (layer3) or one block of it (layer3.2); {NO_MODULE}, the "
                             "placement without one.")
    if len(axes) <= 1:  # one axis: a row per configuration, its interval, beside the baseline
        path = out / "intervals.png"
        scores = {a.name: (i.mean, i.low, i.high) for a in arms if (i := a.interval(report.rank_by))}
        figures.intervals(scores, baseline=report.baseline, score_label=what, title=title, path=path)
        return Picture(path, f"{_upper(what)} of each configuration: mean and 95% interval over seeds, best "
                             "first; dashed, the baseline's mean.")
    # Two axes or more: the first two as a grid, the others averaged over.
    rows = sorted({a.levels[axes[0]] for a in arms})
    columns = sorted({a.levels[axes[1]] for a in arms})
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for arm in arms:
        cells[(arm.levels[axes[0]], arm.levels[axes[1]])].append(means[arm.name])
    values = {cell: statistics.fmean(v) for cell, v in cells.items()}
    others = " and the other axes" if len(axes) > 2 else ""
    figures.heatmap(values, rows, columns, row_label=axes[0], column_label=axes[1], title=title + others,
                    path=path, higher_is_better=better)
    return Picture(path, f"{_upper(what)} by {axes[0]} and {axes[1]}, mean over seeds{others}.")


NO_MODULE = "(no module)"  # the placement `none`'s column: it holds no site


def _combined(arms: list[Arm], placements: dict[str, str]) -> bool:
    """Whether the placements combine sites (subsets of stages, say), so that a grid of the sites each
    holds says which sites the good ones share; one site each (and `all`) would draw a diagonal."""
    held = []
    for arm in arms:
        try:
            held.append(len(parse_placement(placements[arm.name], everywhere=_all_stages(arms, placements)
                                            .get(arm.name, STAGES))) if placements[arm.name] else 0)
        except ValueError:
            held.append(0)
    return sum(n >= 2 for n in held) > max(1, len(held) // 4)


def _all_stages(arms: list[Arm], placements: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """The stages `all` stands for in each arm at `all`: its attention type's own (BAM's: layer1-3)."""
    kinds = {a.name: a.levels.get("model.attention") or a.setting("model.attention") for a in arms
             if placements.get(a.name) == "all"}
    if not any(kinds.values()):
        return {}
    from ablation.models import ATTENTIONS  # torch comes with it, as with the plan: only an arm at `all` needs it

    return {arm: ATTENTIONS.get(kind).all_stages for arm, kind in kinds.items() if kind in ATTENTIONS}


def placement_grid(placements: dict[str, str], means: dict[str, float],
                   all_stages: dict[str, tuple[str, ...]] | None = None) -> tuple[dict[tuple[str, str], float],
                                                                                  list[str]]:
    """Which sites the good placements use: (arm, site) -> the arm's mean for each site its placement
    holds, and the columns: every stage, each single block a placement names (layer3.2) in a column of
    its own beside its stage, in network order, then `none` for the placement without modules.
    `all_stages`: what `all` stands for in an arm (its attention type's stages; every stage if absent)."""
    values, sites = {}, {Site(stage) for stage in STAGES}  # every stage, so an unused one shows blank
    for arm, placed in placements.items():
        try:
            held = parse_placement(placed, everywhere=(all_stages or {}).get(arm, STAGES)) if placed else ()
        except ValueError:  # not a placement (a label of the arm's own): it has no row of sites
            held = ()
        sites |= set(held)
        values |= {(arm, str(site)): means[arm] for site in held}
        if placed == "none":
            values[(arm, "none")] = means[arm]
    columns = [str(s) for s in sorted(sites, key=lambda s: (STAGES.index(s.stage), s.block is not None, s.block or 0))]
    return values, columns + (["none"] if any(c == "none" for _, c in values) else [])


def _upper(text: str) -> str:
    """`text` to open a sentence; str.capitalize would lower the rest (macro-f1)."""
    return text[:1].upper() + text[1:]


def tidy(report: StudyReport) -> tuple[list[str], list[list[Any]]]:
    """report.csv, numbers only, one row per thing measured, its `kind` saying which:
    - `score`: a configuration's metric, mean, low and high over n seeds (a configuration with nothing
      finished has one row with n = 0);
    - `cost`: its parameters, MACs or latency, the value as the mean;
    - `difference`: a configuration against the baseline (`against`), paired by seed: the mean
      difference and its 95% interval over n pairs, the paired t-test's p and its Holm-adjusted p;
    - `race`: a race's decision (`answer`, `decided_at`): the difference and its sequentially valid
      interval over n seeds, and the race's Holm-adjusted sequential p;
    - `effect`: a factorial study's effect, its estimate, se, interval, p and Holm p over n trials."""
    axes = list(dict.fromkeys(a for arm in report.arms.values() for a in arm.levels if a != "arm"))
    header = ["rank", "configuration", *axes, "metric", "mean", "low", "high", "n", "clipped", "kind", "against",
              "p", "p_holm", "answer", "decided_at", "effect", "estimate", "se", "aliases", "method"]
    blank = dict.fromkeys(header, "")

    def row(**cells: Any) -> list[Any]:
        return list((blank | cells).values())

    classes = class_names(report.arms)
    first = [*dict.fromkeys((report.rank_by, *SCORES)), *map(test_f1, classes)]
    rows: list[list[Any]] = []
    rank = {arm.name: i for i, arm in enumerate(report.ranked(), 1) if arm.scores.get(report.rank_by)}
    for arm in report.ranked():
        start = {"rank": rank.get(arm.name, ""), "configuration": arm.name, **{a: arm.levels.get(a, "") for a in axes}}
        keys = [k for k in first if k in arm.scores] + sorted(set(arm.scores) - set(first))
        for key in keys:
            iv = arm.interval(key)
            rows.append(row(**start, metric=key, mean=_number(iv.mean), low=_number(iv.low), high=_number(iv.high),
                            n=iv.n, clipped=iv.clipped, kind="score"))
        rows += [row(**start, metric=key, mean=_number(arm.costs[key]), kind="cost") for key in COSTS
                 if key in arm.costs]
        if not keys:
            rows.append(row(**start, metric=report.rank_by, n=0, kind="score"))
    for score, found in report.comparisons.items():
        for c in found:
            d = c.difference
            rows.append(row(rank=rank.get(c.arm, ""), configuration=c.arm, metric=score, mean=_number(d.mean),
                            low=_number(d.low), high=_number(d.high), n=d.n, kind="difference",
                            against=report.baseline, p=_number(c.p_t), p_holm=_number(c.p_holm)))
    if report.race is not None:
        for arm, d in report.race.decisions.items():
            rows.append(row(rank=rank.get(arm, ""), configuration=arm, metric=best(report.metric),
                            mean=_number(d.mean), low=_number(d.low), high=_number(d.high),
                            n=report.race.seeds_run.get(arm, 0), kind="race", against=d.against,
                            p_holm=_number(d.p_value), answer=d.state, decided_at=d.decided_at or ""))
    effects = report.effects
    if effects is not None and effects.fit is not None:
        for e in effects.fit.rows():
            rows.append(row(metric=effects.metric, low=_number(e["low"]), high=_number(e["high"]),
                            n=effects.fit.observations, kind="effect", p=_number(e["p"]),
                            p_holm=_number(e["p_holm"]), effect=e["effect"], estimate=_number(e["estimate"]),
                            se=_number(e["se"]), aliases=e["aliases"], method=e["method"]))
    return header, rows


def _number(value: float) -> str:
    return "" if not math.isfinite(value) else format(value, ".12g")


def _caption(i: int, picture: Picture) -> str:
    return f"Figure {i}. {picture.caption}"


def write(report: StudyReport, out: Path) -> list[Path]:
    """report.md, report.csv, report.tex, report.html (self-contained: the PNGs embedded) and the PNGs,
    in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    pictures = draw(report, out)
    made = tables(report)
    notes = report.notes + [f"Baseline: {report.baseline}." if report.baseline else ""]
    md = [f"# Report: {markdown_text(report.study)}", "", *[f"> **Warning:** {markdown_text(w)}\n" for w in report.warnings],
          *[markdown_text(n) for n in notes if n], ""]
    for table in made:
        md += [table.markdown(), ""]
    for i, p in enumerate(pictures, 1):
        md += [f"![{markdown_text(p.caption)}]({p.path.name})", "", f"*{markdown_text(_caption(i, p))}*", ""]
    md += [setup_table(report).markdown()]
    (out / "report.md").write_text("\n".join(md) + "\n")
    with open(out / "report.csv", "w", newline="") as f:
        header, rows = tidy(report)
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    (out / "report.tex").write_text(latex(report))
    images = "".join(f'<figure><img alt="{escape(p.caption)}" src="data:image/png;base64,'
                     f'{base64.b64encode(p.path.read_bytes()).decode()}"><figcaption>{escape(_caption(i, p))}'
                     "</figcaption></figure>" for i, p in enumerate(pictures, 1))
    body = ("".join(f'<p class="warning"><strong>Warning:</strong> {escape(w)}</p>' for w in report.warnings)
            + "".join(f"<p>{escape(n)}</p>" for n in notes if n) + "".join(t.html() for t in made) + images
            + setup_table(report).html("text"))
    (out / "report.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(report.study)}</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}"
        "td:first-child{text-align:left}img{max-width:100%}figcaption{font-style:italic;margin:.3em 0 1.5em}"
        "table.text td{text-align:left}.warning{background:#fff3cd;border:1px solid #e0a800;padding:.6em 1em}"
        "</style></head>"
        f"<body><h1>Report: {escape(report.study)}</h1>{body}</body></html>")
    return [out / name for name in ("report.md", "report.csv", "report.tex", "report.html")] + [
        p.path for p in pictures]
