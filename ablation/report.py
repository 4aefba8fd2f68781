"""Summaries of a study read back from MLflow (never from Ray's files, so a remote server works too):
the ranking `ablate run` prints, and the full report `ablate report` writes (tables with seed
statistics, the paper's tables beside ours, pictures; as Markdown, CSV and one HTML file)."""

from __future__ import annotations

import base64
import csv
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from html import escape
from pathlib import Path

import yaml
from pydantic import ValidationError

from .analysis import Comparison, Interval, compare_all, marginal_means, mean_ci, pareto_front
from .spec import EMOTIONS, STAGES, SpecError, StudySpec, _describe, parse_placement
from .tracking import (COSTS, LATENCY_MS, MACS, PARAMS_ADDED, PARAMS_TOTAL, REPORT_ARTIFACTS, SPEC_ARTIFACT,
                       TEST_ACCURACY, TEST_MACRO_F1, Outcome, RunNotFound, StoreUnusable, StudyRecord, TrialRecord,
                       as_param, best, explanation, f1_class, find_study, is_score, metric_history, read_artifact,
                       study_trials, test_f1)


@dataclass(frozen=True)
class ConfigSummary:
    """One configuration (a point of the search space) over its seeds."""

    config: dict[str, str]  # axis -> value, as logged
    seeds: int  # finished trials
    failed: int  # trials that raised
    killed: int  # trials an interruption stopped
    mean: float | None  # of the ranking metric's best-epoch value, over finished seeds
    std: float | None
    test_accuracy: float | None
    test_macro_f1: float | None
    params_total: int | None


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def rank(records: list[TrialRecord], axes: list[str], metric: str, mode: str) -> list[ConfigSummary]:
    """Group trials by configuration and order the groups by the mean best-epoch `metric`."""
    summaries = []
    for arm in collect(records, axes).values():
        values = [r.metrics[best(metric)] for r in arm.finished if best(metric) in r.metrics]
        params = arm.costs.get(PARAMS_TOTAL)
        summaries.append(ConfigSummary(
            config=arm.levels,
            seeds=len(values),
            failed=len(arm.failed) + len(arm.diverged),
            killed=len(arm.unfinished),
            mean=_mean(values),
            std=statistics.stdev(values) if len(values) > 1 else None,
            test_accuracy=_mean([r.metrics[TEST_ACCURACY] for r in arm.finished]),
            test_macro_f1=_mean([r.metrics[TEST_MACRO_F1] for r in arm.finished]),
            params_total=None if params is None else int(params),
        ))
    sign = -1 if mode == "max" else 1
    return sorted(summaries, key=lambda s: (s.mean is None, sign * (s.mean or 0.0)))


# --- The study report: `ablate report` -------------------------------------------------------------

SCORES = (TEST_ACCURACY, TEST_MACRO_F1)


@dataclass
class Arm:
    """One configuration's trials, as the report sees them."""

    name: str
    levels: dict[str, str]  # axis -> value, as logged
    scores: dict[str, dict[int, float]] = field(default_factory=dict)  # metric -> seed -> value
    costs: dict[str, float] = field(default_factory=dict)
    finished: list[TrialRecord] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)  # stopped early by the scheduler
    unfinished: list[str] = field(default_factory=list)  # killed, or still running

    @property
    def seeds(self) -> int:
        return len(self.finished)

    def interval(self, metric: str) -> Interval | None:
        values = list(self.scores.get(metric, {}).values())
        return mean_ci(values) if values else None

    def setting(self, key: str) -> str | None:
        """A spec key's value as its finished trials logged it (None without one)."""
        return self.finished[0].params.get(key) if self.finished else None


def arm_name(params: dict[str, str], axes: list[str]) -> str:
    """The arm a trial belongs to, from its params as logged."""
    return params.get("arm") or ",".join(f"{a}={params.get(a, '')}" for a in axes)


def collect(records: list[TrialRecord], axes: list[str]) -> dict[str, Arm]:
    """Trials grouped by arm, each sorted into finished, failed, diverged, stopped early or unfinished."""
    arms: dict[str, Arm] = {}
    for r in records:
        name = arm_name(r.params, axes)
        arm = arms.setdefault(name, Arm(name, {axis: r.params.get(axis, "") for axis in axes}))
        arm.costs |= {k: r.metrics[k] for k in COSTS if k in r.metrics}
        outcome = r.outcome
        if outcome == Outcome.FINISHED:
            arm.finished.append(r)
            seed = int(r.params.get("seed", len(arm.finished)))
            for key, value in r.metrics.items():
                if is_score(key):
                    arm.scores.setdefault(key, {})[seed] = value
        else:
            {Outcome.STOPPED_EARLY: arm.stopped, Outcome.DIVERGED: arm.diverged, Outcome.FAILED: arm.failed,
             Outcome.UNFINISHED: arm.unfinished}[outcome].append(r.name)
    return arms


def default_baseline(arms: dict[str, Arm]) -> str | None:
    """The arm without attention: `model.placement=none`, else `model.attention=none`."""
    for arm in arms.values():
        if any(arm.setting(key) == "none" for key in ("model.placement", "model.attention")):
            return arm.name
    return None


@dataclass(frozen=True)
class Plan:
    """What a grid study set out to run, read from the spec.yaml of its parent run."""

    arms: dict[str, dict[str, str]]  # arm -> axis -> value, named and spelled as its trials log them
    baseline: str | None  # the first arm without attention sites
    seeds: int
    spec: StudySpec | None = None


def _spec_text(uri: str, study: StudyRecord) -> bytes | None:
    """The study's spec as its parent run stored it (`spec.yaml`), or None if it has none."""
    try:
        return read_artifact(uri, study.run.run_id, SPEC_ARTIFACT)
    except RunNotFound:
        return None


def _reference(text: bytes | None) -> str | None:
    """The published results the study's spec asks to be printed beside its own, if any."""
    try:
        tree = yaml.safe_load(text.decode("utf-8")) if text else None
    except (UnicodeDecodeError, yaml.YAMLError):
        return None
    return tree.get("reference") if isinstance(tree, dict) else None


def read_plan(text: bytes | None, axes: list[str]) -> tuple[Plan | None, str | None]:
    """The plan in a study's `spec.yaml` text, or None and why there is none to show (None when a search
    draws its trials, since then there is no fixed plan to fall short of)."""
    if text is None:
        return None, "The study's parent run has no spec.yaml, so configurations that never started are not listed."
    try:
        tree = yaml.safe_load(text.decode("utf-8"))
        search = tree.get("search") if isinstance(tree, dict) else None
        if isinstance(search, dict) and search.get("method", "grid") != "grid":
            return None, None
        spec = StudySpec.model_validate(tree)
        trials = spec.trials()
    except (UnicodeDecodeError, yaml.YAMLError, SpecError, ValidationError) as err:
        # Its data.root, for one, may not exist on the machine that reports.
        why = _describe(err) if isinstance(err, ValidationError) else " ".join(str(err).split())
        return None, (f"The study's spec.yaml cannot be read here ({why}), so configurations that never "
                      "started are not listed.")
    arms: dict[str, dict[str, str]] = {}
    baseline = None
    for trial in trials:
        # Spelled as tracking logs params, so a planned arm and its runs meet under one name.
        params = {k: as_param(v) for k, v in trial.params().items()}
        name = arm_name(params, axes)
        arms.setdefault(name, {axis: params.get(axis, "") for axis in axes})
        if baseline is None and not trial.spec.model.sites:
            baseline = name
    if spec.search.race:  # the arm the race compared with, which the report compares with too
        baseline = spec.race_baseline()
    return Plan(arms, baseline, len(spec.search.seeds), spec), None


def class_names(arms: dict[str, Arm]) -> list[str]:
    found = {f1_class(key) for arm in arms.values() for key in arm.scores} - {None}
    return [c for c in EMOTIONS if c in found] + sorted(found - set(EMOTIONS))


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.header) + " |",
                 "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines + (["", self.note] if self.note else []))

    def html(self) -> str:
        cells = "".join(f"<th>{escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        note = f"<p>{escape(self.note)}</p>" if self.note else ""
        return f"<h3>{escape(self.title)}</h3><table><tr>{cells}</tr>{body}</table>{note}"


def _ci(interval: Interval | None, scale: float = 1.0) -> str:
    if interval is None:
        return "-"
    if math.isnan(interval.low):
        return f"{interval.mean * scale:.4g} (one seed)"
    return f"{interval.mean * scale:.4g} ± {interval.half_width * scale:.2g}"


def _p(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3g}"


@dataclass
class StudyReport:
    study: str
    metric: str  # the study's ranking metric, for the learning curves
    arms: dict[str, Arm]
    baseline: str | None
    planned_seeds: int | None
    comparisons: dict[str, list[Comparison]]  # score -> arms against the baseline
    marginals: dict[str, dict[str, float]]  # axis -> value -> marginal mean test macro-F1
    curves: dict[str, dict[int, float]]  # arm -> epoch -> mean of `metric` over its seeds
    notes: list[str] = field(default_factory=list)
    reference: str | None = None  # published results to print beside the study's (the spec's `reference`)
    race: Race | None = None  # a race's decisions, when the study is one

    def ranked(self) -> list[Arm]:
        def key(arm: Arm):
            interval = arm.interval(TEST_MACRO_F1)
            return (interval is None, -(interval.mean if interval else 0))
        return sorted(self.arms.values(), key=key)

    def tables(self, compact: bool = False) -> list[Table]:
        """The report's tables; `compact` (for a terminal) leaves out per-class F1 and latency, and
        compares on test macro-F1 only."""
        classes = [] if compact else class_names(self.arms)
        planned = f" of {self.planned_seeds}" if self.planned_seeds else ""
        configs = Table(
            "Configurations (mean ± 95% CI half-width over seeds; test split at the best validation epoch)",
            ["configuration", "seeds", "test accuracy", "test macro-F1", *[f"F1 {c}" for c in classes],
             "params", "added", "MACs", *([] if compact else ["latency ms"]), "lost"],
            [[a.name, f"{a.seeds}{planned}", _ci(a.interval(TEST_ACCURACY)), _ci(a.interval(TEST_MACRO_F1)),
              *[_ci(a.interval(test_f1(c))) for c in classes],
              *[_count(a.costs.get(k)) for k in (PARAMS_TOTAL, PARAMS_ADDED, MACS)],
              *([] if compact else [f"{a.costs[LATENCY_MS]:.2f}" if LATENCY_MS in a.costs else "-"]), _lost(a)]
             for a in self.ranked()])
        tables = [configs]
        for score, found in self.comparisons.items():
            if compact and score != TEST_MACRO_F1:
                continue
            tables.append(Table(
                f"{score} against the baseline ({self.baseline}), paired by seed",
                ["configuration", "pairs", "difference (95% CI)", "p (paired t)", "p (Wilcoxon)", "p (Holm)",
                 "verdict", "seeds for a decision"],
                [[c.arm, str(c.difference.n),
                  f"{c.difference.mean:+.4f} [{c.difference.low:+.4f}, {c.difference.high:+.4f}]",
                  _p(c.p_t), _p(c.p_wilcoxon), _p(c.p_holm), _verdict(c),
                  _needed(c)]
                 for c in sorted(found, key=lambda c: (math.isnan(c.p_holm), c.p_holm))],
                note="Holm's correction runs over every configuration compared here. Wilcoxon's test "
                     "joins from 6 pairs. 'seeds for a decision': for a difference not yet significant, the "
                     "pairs a paired t-test needs for 80% power at the observed mean difference and spread, "
                     "at 0.05 divided by the configurations compared (Holm's strictest step)."))
        cue_scores = [f"{m}_{g}" for g in ("all", "occluded", "unoccluded") for m in ("cue_energy", "pointing_game")]
        keys = [explanation(score) for score in cue_scores]
        if not compact and any(k in keys for a in self.arms.values() for k in a.scores):
            tables.append(Table(
                "Grad-CAM on the class cues (ablate explain --score; mean over the seeds scored)",
                ["configuration", *[score.replace("_", " ") for score in cue_scores]],
                [[a.name, *[f"{a.interval(k).mean:.3f}" if a.scores.get(k) else "-" for k in keys]]
                 for a in self.ranked() if any(a.scores.get(k) for k in keys)],
                note="Cue energy: the share of the true class's Grad-CAM inside the generated face's cue mask "
                     "(brows, eyes, mouth). Pointing game: how often its peak falls on a cue. Occluded faces "
                     "wear glasses, a hand or hair over a cue."))
        for axis, means in self.marginals.items():
            tables.append(Table(f"Marginal effect of {axis} on test macro-F1 (mean over the other axes)",
                                ["rank", axis, "mean test macro-F1"],
                                [[str(i), value, f"{mean:.4f}"] for i, (value, mean) in
                                 enumerate(sorted(means.items(), key=lambda kv: -kv[1]), 1)]))
        if self.race is not None:
            tables.append(_race_table(self.race, self.metric))
        if self.reference == "paper" and not compact:
            tables += paper_tables(self)
        return tables


def _race_table(race: Race, metric: str) -> Table:
    run = sum(race.seeds_run.values())
    fixed = race.max_seeds * len(race.seeds_run)
    rows = [[d.arm, d.state, "-" if d.decided_at is None else str(d.decided_at), str(race.seeds_run.get(d.arm, 0)),
             f"{d.mean:+.4f}", f"[{d.low:+.4f}, {d.high:+.4f}]", str(race.max_seeds - race.seeds_run.get(d.arm, 0))]
            for d in race.decisions.values()]
    return Table(f"The race against {race.baseline} on best-epoch {metric}",
                 ["arm", "decision", "decided at (seeds)", "seeds run", "difference", "interval", "seeds saved"], rows,
                 note=f"Sequentially valid intervals: every decision holds with family-wise error at most "
                      f"{race.alpha:g} over all the looks the race took. Equivalent: the interval lies inside "
                      f"±{race.margin:g}. The race ran {run} trials where the fixed design runs {fixed} "
                      f"({1 - run / fixed:.0%} saved), the baseline's included.")


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


def _needed(c: Comparison) -> str:
    if c.significant or math.isnan(c.p_t):
        return "-"
    return str(c.seeds_needed) if c.seeds_needed else "> 1000"


def _verdict(c: Comparison) -> str:
    if math.isnan(c.p_holm):
        return "no spread to test"
    if c.significant:
        return "better" if c.difference.mean > 0 else "worse"
    return "within seed noise"


def build_report(uri: str, study: str, *, baseline: str | None = None) -> StudyReport:
    """Read `study` from the store at `uri` and work out its statistics."""
    found = find_study(uri, study)
    axes = found.axes
    records = study_trials(uri, found.experiment_id, found.run.run_id)
    logged = collect(records, axes)
    spec_text = _spec_text(uri, found)
    plan, why = read_plan(spec_text, axes)
    notes = [why] if why else []
    # An interrupted study has planned arms without a single run; they are listed, in the plan's order.
    arms = logged if plan is None else (
        {name: logged.get(name) or Arm(name, levels) for name, levels in plan.arms.items()} | logged)
    if baseline is not None and baseline not in arms:
        raise ValueError(f"--baseline {baseline!r} is not a configuration of {study} "
                         f"(it has: {', '.join(sorted(arms))})")
    planned = None
    if plan is not None:
        planned = plan.seeds  # the latest run's spec: the first run's search.seeds param never changes
    elif "search.seeds" in found.params:
        planned = len(json.loads(found.params["search.seeds"]))
    chosen = baseline or (plan.baseline if plan and plan.baseline else default_baseline(arms))
    if chosen is None:
        notes.append("No configuration without attention was found, so nothing is compared; "
                     "name one with --baseline.")
    comparisons = {}
    if chosen is not None:
        for score in SCORES:
            values = {a.name: a.scores.get(score, {}) for a in arms.values() if a.scores.get(score)}
            if chosen in values and (compared := compare_all(values, chosen)):
                comparisons[score] = compared
        if not comparisons and not arms[chosen].seeds:
            notes.append(f"The baseline ({chosen}) has 0{f' of {planned}' if planned else ''} seeds finished, so "
                         "nothing is compared; finish the study (ablate resume, or ablate run again).")
        elif not comparisons:
            notes.append(f"No configuration shares two or more seeds with the baseline ({chosen}), so nothing is "
                         "compared; add seeds (e.g. --set \"search.seeds=[0, 1, 2]\" and run the study again).")
    race = _race(plan.spec, arms, found.metric) if plan and plan.spec and plan.spec.search.race else None
    if planned and race is None:  # a race gives seeds only to the arms still open, by design
        short = [a.name for a in arms.values() if a.seeds < planned]
        if short:
            notes.append(f"{len(short)} configuration(s) have fewer finished seeds than the {planned} planned: "
                         + ", ".join(f"{a} ({arms[a].seeds})" for a in short) + ".")
    marginals = {}
    real_axes = [a for a in axes if a != "arm"]
    if len(real_axes) >= 2:
        means = {a.name: a.interval(TEST_MACRO_F1).mean for a in arms.values() if a.scores.get(TEST_MACRO_F1)}
        marginals = {axis: marginal_means(means, {n: arms[n].levels for n in means}, axis) for axis in real_axes}
    metric = found.metric
    curves = {}
    for arm in arms.values():
        histories = [metric_history(uri, r.run_id, metric) for r in arm.finished]
        epochs = sorted({e for h in histories for e in h})
        curves[arm.name] = {e: statistics.fmean(h[e] for h in histories if e in h) for e in epochs}
    return StudyReport(study, metric, arms, chosen, planned, comparisons, marginals, curves, notes,
                       reference=_reference(spec_text), race=race)


@dataclass(frozen=True)
class Race:
    """A race as its finished runs decide it (the same rule the driver used, recomputed here)."""

    baseline: str
    margin: float
    alpha: float
    max_seeds: int
    decisions: dict[str, Any]  # arm -> racing.Decision
    seeds_run: dict[str, int]  # arm -> finished seeds
    paths: dict[str, dict[int, tuple[float, float]]]  # arm -> seeds -> its interval then


def _race(spec: StudySpec, arms: dict[str, Arm], metric: str) -> Race:
    from . import racing

    r, key, order = spec.search.race, best(metric), spec.search.seeds
    values = {name: {int(t.params["seed"]): t.metrics[key] for t in arm.finished if key in t.metrics}
              for name, arm in arms.items()}
    baseline = spec.race_baseline()
    family = [a for a in arms if a != baseline] if r.mode == "baseline" else list(arms)

    def decide(upto: int) -> dict[str, Any]:
        seen = {arm: {s: v for s, v in by_seed.items() if s in order[:upto]} for arm, by_seed in values.items()}
        return racing.decide(seen, baseline, order, margin=r.margin, alpha=r.alpha, max_seeds=len(order),
                             start=r.start, mode=r.mode, higher_is_better=spec.mode == "max", arms=family)

    paths: dict[str, dict[int, tuple[float, float]]] = {arm: {} for arm in family}
    for n in range(r.start, len(order) + 1):
        for arm, d in decide(n).items():
            if d.seeds == n or n == r.start:
                paths.setdefault(arm, {})[d.seeds] = (d.low, d.high)
    return Race(baseline, r.margin, r.alpha, len(order), decide(len(order)),
                {arm: len(v) for arm, v in values.items()}, paths)


# The paper's published figures (Oh et al.; ../shared/paper.md): single runs on AI-HUB at 256 px.
PAPER_COLUMNS = {  # column -> (model.arch, model.attention)
    "ResNet50": ("resnet50", "none"), "ResNet101": ("resnet101", "none"),
    "ResNet50 + Identity-CBAM": ("resnet50", "identity_cbam"), "ResNet101 + Identity-CBAM": ("resnet101", "identity_cbam"),
}
PAPER_F1 = {  # Table 1, F1 per class, in PAPER_COLUMNS order
    "happy": (0.97, 0.98, 0.98, 0.98), "anger": (0.85, 0.85, 0.87, 0.87), "unrest": (0.69, 0.71, 0.73, 0.72),
    "wound": (0.61, 0.64, 0.69, 0.66), "sad": (0.79, 0.80, 0.81, 0.78), "neutral": (0.93, 0.92, 0.92, 0.91),
    "average": (0.806, 0.816, 0.833, 0.82),
}
PAPER_ACCURACY = (81.2, 81.99, 83.23, 82.17)  # Table 2, %


def paper_tables(report: StudyReport) -> list[Table]:
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


def draw(report: StudyReport, out: Path) -> list[Path]:
    """The report's PNGs in `out`."""
    from . import figures

    arms = [a for a in report.ranked() if a.scores.get(TEST_MACRO_F1)]
    if not arms:
        return []
    means = {a.name: a.interval(TEST_MACRO_F1).mean for a in arms}
    drawn = [_heatmap(report, arms, means, out)]
    costs = [MACS, PARAMS_TOTAL]
    points = {a.name: {TEST_ACCURACY: a.interval(TEST_ACCURACY).mean, **a.costs} for a in arms
              if all(k in a.costs for k in costs)}
    if points:
        fronts = {c: pareto_front({n: (p[c], p[TEST_ACCURACY]) for n, p in points.items()}) for c in costs}
        drawn.append(figures.cost_scatter(points, score=TEST_ACCURACY, costs=costs, fronts=fronts,
                                          path=out / "accuracy_vs_cost.png"))
    shown = [a for a in arms[:3] if a.name != report.baseline]
    if report.baseline in report.arms and report.arms[report.baseline].scores:
        shown.append(report.arms[report.baseline])
    classes = class_names(report.arms)
    per_class = {a.name + (" (baseline)" if a.name == report.baseline else ""):
                 {c: a.interval(test_f1(c)).mean for c in classes if a.scores.get(test_f1(c))} for a in shown}
    drawn.append(figures.class_bars(per_class, classes, title="per-class test F1, top configurations",
                                    path=out / "per_class_f1.png"))
    curves = {name: curve for name, curve in report.curves.items() if curve}
    if curves:
        drawn.append(figures.learning_curves(curves, metric=report.metric, path=out / "learning_curves.png"))
    if report.race is not None:
        drawn.append(figures.race_intervals(report.race.paths, margin=report.race.margin, baseline=report.race.baseline,
                                            metric=report.metric, path=out / "race.png"))
    return drawn


def _heatmap(report: StudyReport, arms: list[Arm], means: dict[str, float], out: Path) -> Path:
    from . import figures

    axes = [a for a in (arms[0].levels if arms else {}) if a != "arm"]
    placements = {a.name: a.levels.get("model.placement") or a.setting("model.placement") or ""
                  for a in arms}
    title = "test macro-F1, mean over seeds"
    if axes == ["model.placement"] or (not axes and any(placements.values())):
        # Which stages the good placements use: a row per placement, its score in each stage it covers.
        values = {}
        for arm in arms:
            placed = placements[arm.name]
            try:  # a block site (layer3.2) puts a module in its stage too
                held = {site.stage for site in parse_placement(placed)} if placed else set()
            except ValueError:
                held = set()
            stages = [s for s in STAGES if s in held]
            for stage in stages:
                values[(arm.name, stage)] = means[arm.name]
            if placed == "none":
                values[(arm.name, "none")] = means[arm.name]
        columns = [*STAGES, *(["none"] if any(c == "none" for _, c in values) else [])]
        return figures.heatmap(values, [a.name for a in arms], columns, row_label="placement",
                               column_label="stage holding a module", title=title, path=out / "heatmap.png")
    if len(axes) >= 2:
        rows = sorted({a.levels[axes[0]] for a in arms})
        columns = sorted({a.levels[axes[1]] for a in arms})
        cells: dict[tuple[str, str], list[float]] = defaultdict(list)
        for arm in arms:
            cells[(arm.levels[axes[0]], arm.levels[axes[1]])].append(means[arm.name])
        values = {cell: statistics.fmean(v) for cell, v in cells.items()}
        return figures.heatmap(values, rows, columns, row_label=axes[0], column_label=axes[1],
                               title=title + (" and the other axes" if len(axes) > 2 else ""), path=out / "heatmap.png")
    names = [a.name for a in arms]
    return figures.heatmap({(n, "test macro-F1"): means[n] for n in names}, names, ["test macro-F1"],
                           row_label="configuration", column_label="", title=title, path=out / "heatmap.png")


def write(report: StudyReport, out: Path) -> list[Path]:
    """report.md, report.csv, report.html (self-contained: the PNGs embedded) and the PNGs, in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    pictures = draw(report, out)
    tables = report.tables()
    notes = report.notes + [f"Baseline: {report.baseline}." if report.baseline else ""]
    md = [f"# Report: {report.study}", "", *[n for n in notes if n], ""]
    for table in tables:
        md += [table.markdown(), ""]
    md += [f"![{p.stem}]({p.name})" for p in pictures]
    (out / "report.md").write_text("\n".join(md) + "\n")
    with open(out / "report.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(tables[0].header)
        writer.writerows(tables[0].rows)
    images = "".join(f'<figure><img alt="{p.stem}" src="data:image/png;base64,'
                     f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{p.stem}</figcaption></figure>'
                     for p in pictures)
    body = "".join(f"<p>{escape(n)}</p>" for n in notes if n) + "".join(t.html() for t in tables) + images
    (out / "report.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(report.study)}</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}"
        "td:first-child{text-align:left}img{max-width:100%}</style></head>"
        f"<body><h1>Report: {escape(report.study)}</h1>{body}</body></html>")
    return [out / "report.md", out / "report.csv", out / "report.html", *pictures]


def make_report(uri: str, study: str, out: Path, *,
                baseline: str | None = None) -> tuple[StudyReport, list[Path], str | None]:
    """Build the report of `study`, write it to `out`, and log it as the artifacts `report/` of the
    study's parent run, so the MLflow UI shows it beside the runs. Returns the report, the files
    written, and why the store did not take them (None when it did): the files are kept either way."""
    report = build_report(uri, study, baseline=baseline)
    written = write(report, out)
    try:
        find_study(uri, study).run.log_folder(out, REPORT_ARTIFACTS)
    except StoreUnusable as err:
        return report, written, str(err)
    return report, written, None
