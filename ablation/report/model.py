"""The report model: a study read back from MLflow (never from Ray's files, so a remote server works
too) as its arms, their seed statistics, paired comparisons, marginal means, learning curves, race
and setup. It renders nothing: `tables`, `files`, `paper` and the terminal's views draw it."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from ablation.core import SpecError, Study, StudySpec
from ablation.core.emotions import EMOTIONS
from ablation.core.factorial import DESIGNS as FACTORIAL_DESIGNS
from ablation.core.schema import describe, validation_context
from ablation.stats.analysis import (Comparison, Interval, clip, compare_all, marginal_means, mean_ci, metric_range,
                                     order)
from ablation.report.provenance import planned_seeds, setup_rows
from ablation.tracking import (COSTS, LATENCY_MS, MACS, PARAMS_ADDED, PARAMS_TOTAL, SPEC_ARTIFACT, TEST_ACCURACY,
                               TEST_MACRO_F1, Outcome, RunNotFound, StudyRecord, Tag, TrialRecord, as_param, best,
                               f1_class, find_study, is_score, metric_history, read_artifact, study_trials)

if TYPE_CHECKING:
    from ablation.report.effects import StudyEffects
    from ablation.report.race import Race


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
FEW_SEEDS = 3  # below this a 95% t interval is too wide to tell configurations apart (t = 12.7 at two)


def ranking_metric(metric: str, records: list[TrialRecord]) -> str:
    """The metric a report ranks configurations by, given the study's own `metric`.

    The study's metric is a validation one (val_macro_f1): it picks each trial's epoch, so on the
    validation split every configuration is flattered by that choice. Configurations are ranked
    instead on its test counterpart at the chosen epoch (val_macro_f1 -> test_macro_f1, val_loss ->
    test_loss), in the study's mode. A metric whose test counterpart no run logged is ranked by its
    best-epoch value, as `ablate run` ranks."""
    counterpart = f"test_{metric.removeprefix('val_')}" if metric.startswith("val_") else metric
    if any(counterpart in r.metrics for r in records) or not any(best(metric) in r.metrics for r in records):
        return counterpart
    return best(metric)


def label(metric: str) -> str:
    """A metric's name for people: `test_macro_f1` -> test macro-F1, `macs` -> GMACs."""
    named = {MACS: "GMACs", PARAMS_TOTAL: "parameters (M)", PARAMS_ADDED: "parameters added (M)",
             LATENCY_MS: "latency (ms)"}
    if metric in named:
        return named[metric]
    if (c := f1_class(metric)) is not None:
        return f"test F1 ({c})"
    words = metric.removeprefix("best_")
    for old, new in (("val_", "validation "), ("test_", "test "), ("macro_f1", "macro-F1"), ("_", " ")):
        words = words.replace(old, new)
    return ("best " if metric.startswith("best_") else "") + words


# To the units of `label`; MACs take theirs from the arms (`mac_unit`).
COST_SCALE = {PARAMS_TOTAL: 1e-6, PARAMS_ADDED: 1e-6, LATENCY_MS: 1.0}


def mac_unit(arms: Iterable[Arm]) -> tuple[str, float]:
    """MACs in the unit that gives the arms' differences digits: a 48 px ResNet-18's 0.0984 and 0.0986
    GMACs read alike, its 98.4 and 98.6 MMACs do not."""
    giga = any(a.costs.get(MACS, 0) >= 1e9 for a in arms)
    return ("GMACs", 1e-9) if giga else ("MMACs", 1e-6)


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
    lost_seeds: set[int] = field(default_factory=set)  # seeds of its failed or diverged trials

    @property
    def seeds(self) -> int:
        return len(self.finished)

    def interval(self, metric: str) -> Interval | None:
        """The mean of `metric` over seeds with its 95% interval, clipped to the metric's range."""
        values = list(self.scores.get(metric, {}).values())
        return clip(mean_ci(values), *metric_range(metric)) if values else None

    def setting(self, key: str) -> str | None:
        """A spec key's value as its finished trials logged it (None without one)."""
        return self.finished[0].params.get(key) if self.finished else None


def arm_name(params: dict[str, str], axes: list[str]) -> str:
    """The arm a trial belongs to, from its params as logged."""
    return params.get("arm") or ",".join(f"{a}={params.get(a, '')}" for a in axes)


def collect(records: list[TrialRecord], axes: list[str], keep: tuple[str, ...] = ()) -> dict[str, Arm]:
    """Trials grouped by arm, each sorted into finished, failed, diverged, stopped early or unfinished;
    the scores of finished ones kept by seed, with the metrics in `keep` (a loss to rank by, say)."""
    arms: dict[str, Arm] = {}
    for r in records:
        name = arm_name(r.params, axes)
        arm = arms.setdefault(name, Arm(name, {axis: r.params.get(axis, "") for axis in axes}))
        # The latency's companions (its spread, the load it was timed under) come with it.
        arm.costs |= {k: v for k, v in r.metrics.items() if k in COSTS or k.startswith("latency_")}
        outcome = r.outcome
        if outcome == Outcome.FINISHED:
            arm.finished.append(r)
            seed = int(r.params.get("seed", len(arm.finished)))
            for key, value in r.metrics.items():
                if is_score(key) or key in keep:
                    arm.scores.setdefault(key, {})[seed] = value
        else:
            if outcome in (Outcome.FAILED, Outcome.DIVERGED) and "seed" in r.params:
                arm.lost_seeds.add(int(r.params["seed"]))
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
    study: Study | None = None


def _spec_text(uri: str, study: StudyRecord) -> bytes | None:
    """The study's spec as its parent run stored it (`spec.yaml`), or None if it has none."""
    try:
        return read_artifact(uri, study.run.run_id, SPEC_ARTIFACT)
    except RunNotFound:
        return None


def _tree(text: bytes | None) -> dict[str, Any] | None:
    """The study's spec.yaml as a plain tree, unvalidated: its settings are shown even where its data.root
    does not exist on the machine that reports."""
    try:
        tree = yaml.safe_load(text.decode("utf-8")) if text else None
    except (UnicodeDecodeError, yaml.YAMLError):
        return None
    return tree if isinstance(tree, dict) else None


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
        # Its data.root, for one, may not exist on the machine that reports.
        spec = StudySpec.model_validate(tree, context=validation_context(data_on_disk=False))
        study = Study.from_spec(spec, data_on_disk=False)
    except (UnicodeDecodeError, yaml.YAMLError, SpecError, ValidationError) as err:
        why = describe(err) if isinstance(err, ValidationError) else " ".join(str(err).split())
        return None, (f"The study's spec.yaml cannot be read here ({why}), so configurations that never "
                      "started are not listed.")
    arms: dict[str, dict[str, str]] = {}
    baseline = None
    for trial in study.trials:
        # Spelled as tracking logs params, so a planned arm and its runs meet under one name.
        params = {k: as_param(v) for k, v in trial.params().items()}
        name = arm_name(params, axes)
        arms.setdefault(name, {axis: params.get(axis, "") for axis in axes})
        if baseline is None and not trial.spec.model.sites:
            baseline = name
    if spec.search.race:  # the arm the race compared with, which the report compares with too
        baseline = study.baseline
    return Plan(arms, baseline, len(spec.search.seeds), study), None


def class_names(arms: dict[str, Arm]) -> list[str]:
    found = {f1_class(key) for arm in arms.values() for key in arm.scores} - {None}
    return [c for c in EMOTIONS if c in found] + sorted(found - set(EMOTIONS))


@dataclass
class StudyReport:
    study: str
    metric: str  # the study's ranking metric, for the learning curves
    arms: dict[str, Arm]
    baseline: str | None
    planned_seeds: int | None
    comparisons: dict[str, list[Comparison]]  # score -> arms against the baseline
    marginals: dict[str, dict[str, float]]  # axis -> value -> marginal mean of `rank_by`
    curves: dict[str, dict[int, float]]  # arm -> epoch -> mean of `metric` over its seeds
    notes: list[str] = field(default_factory=list)
    reference: str | None = None  # published results to print beside the study's (the spec's `reference`)
    race: Race | None = None  # a race's decisions, when the study is one
    rank_by: str = TEST_MACRO_F1  # what configurations are ranked by (`ranking_metric`)
    mode: str = "max"  # the study's: whether more of `rank_by` is better
    explained_at: str = ""  # where the scored runs' Grad-CAM looked, and on how many images
    warnings: list[str] = field(default_factory=list)  # what makes the figures less than they look
    setup: list[tuple[str, str]] = field(default_factory=list)  # (label, value): `provenance.setup_rows`
    effects: StudyEffects | None = None  # a factorial or fractional study's effects model

    def ranked(self) -> list[Arm]:
        """Configurations best first by `rank_by` in the study's mode; those without it last."""
        means = {a.name: a.interval(self.rank_by).mean for a in self.arms.values() if a.scores.get(self.rank_by)}
        return [self.arms[n] for n in order(means, self.mode)] + [a for a in self.arms.values() if a.name not in means]

    def lower_is_better(self, score: str) -> bool:
        return score == self.rank_by and self.mode == "min"

CURVE_SEEDS = 10  # seeds per configuration a learning curve averages: one history read per run


def _curves(uri: str, arms, metric: str) -> dict[str, dict[int, float]]:
    """Each configuration's mean learning curve of `metric` over its first `CURVE_SEEDS` finished seeds,
    read side by side: a study of a thousand runs would otherwise wait on a thousand reads in a row."""
    from concurrent.futures import ThreadPoolExecutor

    runs = {arm.name: sorted(arm.finished, key=lambda r: int(r.params.get("seed", 0)))[:CURVE_SEEDS] for arm in arms}
    with ThreadPoolExecutor(4) as pool:
        histories = {name: list(pool.map(lambda r: metric_history(uri, r.run_id, metric), chosen))
                     for name, chosen in runs.items()}
    curves = {}
    for name, read in histories.items():
        epochs = sorted({e for h in read for e in h})
        curves[name] = {e: statistics.fmean(h[e] for h in read if e in h) for e in epochs}
    return curves


def build_report(uri: str, study: str, *, baseline: str | None = None) -> StudyReport:
    """Read `study` from the store at `uri` and work out its statistics."""
    found = find_study(uri, study)
    axes, metric, mode = found.axes, found.metric, found.tags.get(Tag.MODE, "max")
    records = study_trials(uri, found.experiment_id, found.run.run_id)
    rank_by = ranking_metric(metric, records)
    logged = collect(records, axes, keep=(rank_by,))
    spec_text = _spec_text(uri, found)
    # A study that ran all it planned needs no plan to list what never started, and reading one brings
    # in the spec (and torch, seconds of a report's time); a race reads its settings from it, and a
    # factorial design's effects code each run by its planned arm.
    parent = found.run.client.get_run(found.run.run_id)
    ran_all = parent.info.status == "FINISHED" and found.tags.get(Tag.TRIALS_UNFINISHED) == "0" \
        and Tag.RACE_BASELINE not in found.tags
    tree = _tree(spec_text)
    search = tree.get("search") if tree else None
    factorial = (found.tags.get(Tag.DESIGN) or isinstance(search, dict) and search.get("design")) in FACTORIAL_DESIGNS
    plan, why = (None, None) if ran_all and not factorial else read_plan(spec_text, axes)
    notes = [why] if why and not ran_all else []
    # An interrupted study has planned arms without a single run; they are listed, in the plan's order.
    arms = logged if plan is None else (
        {name: logged.get(name) or Arm(name, levels) for name, levels in plan.arms.items()} | logged)
    if baseline is not None and baseline not in arms:
        raise ValueError(f"--baseline {baseline!r} is not a configuration of {study} "
                         f"(it has: {', '.join(sorted(arms))})")
    planned = plan.seeds if plan is not None else planned_seeds(tree, found.params)
    chosen = baseline or (plan.baseline if plan and plan.baseline else default_baseline(arms))
    comparisons = _comparisons(arms, chosen, tuple(dict.fromkeys((*SCORES, rank_by))), planned, notes)
    race = None
    if plan and plan.study and plan.study.spec.search.race:
        from ablation.report.race import race_values, read_race

        race = read_race(plan.study, *race_values(arms, best(metric)))
    if planned and race is None:  # a race gives seeds only to the arms still open, by design
        short = [a.name for a in arms.values() if a.seeds < planned]
        if short:
            notes.append(f"{len(short)} configuration(s) have fewer finished seeds than the {planned} planned: "
                         + ", ".join(f"{a} ({arms[a].seeds})" for a in short) + ".")
    marginals = {}
    real_axes = [a for a in axes if a != "arm"]
    if len(real_axes) >= 2:
        means = {a.name: a.interval(rank_by).mean for a in arms.values() if a.scores.get(rank_by)}
        marginals = {axis: marginal_means(means, {n: arms[n].levels for n in means}, axis) for axis in real_axes}
    curves = _curves(uri, arms.values(), metric)
    effects = None
    if factorial:
        from ablation.report.effects import study_effects

        effects = study_effects(plan.study if plan else None, records, metric, label(best(metric)))
    first = next((r for r in records if r.outcome == Outcome.FINISHED), None)
    setup = setup_rows(records, axes=axes, parent_params=found.params, parent_tags=found.tags, tree=tree,
                       metric=metric, mode=mode, rank_by=rank_by,
                       runs=[parent, *([found.run.client.get_run(first.run_id)] if first else [])],
                       started=parent.info.start_time, ended=parent.info.end_time)
    return StudyReport(study, metric, arms, chosen, planned, comparisons, marginals, curves, notes,
                       reference=tree.get("reference") if tree else None, race=race, rank_by=rank_by, mode=mode,
                       warnings=_warnings(arms) + ([w] if race and (w := race.margin_warning(label(metric))) else []),
                       setup=setup, effects=effects, explained_at=_explained_at(records))


def _explained_at(records: list[TrialRecord]) -> str:
    """`layer1 on 8 images`: where `ablate explain --score` looked, from the scored runs' tags."""
    seen = {(r.tags[Tag.EXPLAIN_LAYER], r.tags.get(Tag.EXPLAIN_IMAGES, "?")) for r in records
            if Tag.EXPLAIN_LAYER in r.tags}
    return "; ".join(f"{layer} on {n} images" for layer, n in sorted(seen))


def _comparisons(arms: dict[str, Arm], chosen: str | None, scores: tuple[str, ...], planned: int | None,
                 notes: list[str]) -> dict[str, list[Comparison]]:
    """Each score's comparisons with the baseline `chosen`; what stops them is added to `notes`."""
    if chosen is None:
        notes.append("No configuration without attention was found, so nothing is compared; "
                     "name one with --baseline.")
        return {}
    comparisons = {}
    for score in scores:
        values = {a.name: a.scores.get(score, {}) for a in arms.values() if a.scores.get(score)}
        if chosen in values and (compared := compare_all(values, chosen)):
            comparisons[score] = compared
    if not comparisons and not arms[chosen].seeds:
        notes.append(f"The baseline ({chosen}) has 0{f' of {planned}' if planned else ''} seeds finished, so "
                     "nothing is compared; finish the study (ablate resume, or ablate run again).")
    elif not comparisons:
        notes.append(f"No configuration shares two or more seeds with the baseline ({chosen}), so nothing is "
                     "compared; add seeds (e.g. --set \"search.seeds=[0, 1, 2]\" and run the study again).")
    return comparisons


def _warnings(arms: dict[str, Arm]) -> list[str]:
    few = [a for a in arms.values() if 0 < a.seeds < FEW_SEEDS]
    if not few:
        return []
    counts = ", ".join(f"{n} with {k} seed{'s' if k > 1 else ''}"
                       for k in range(1, FEW_SEEDS) if (n := sum(a.seeds == k for a in few)))
    return [f"Fewer than {FEW_SEEDS} seeds: {len(few)} of {len(arms)} configurations ({counts}). Their intervals "
            "are uninformative: a 95% t interval on two seeds is 12.7 standard errors wide on each side, and one "
            "seed gives none. Differences between configurations cannot be told from seed noise; run at least "
            f"{FEW_SEEDS} seeds (e.g. --set \"search.seeds=[0, 1, 2]\")."]
