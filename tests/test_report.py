"""The ranked table `ablate run` prints, from trial records as MLflow returns them."""

import pytest

from ablation.report.model import rank
from ablation.report.tables import tables
from ablation.tracking import TrialRecord


def record(placement: str, seed: int, status: str = "FINISHED", value: float | None = None) -> TrialRecord:
    metrics = {"params_total": 100.0}
    if value is not None:
        metrics |= {"best_val_macro_f1": value, "test_accuracy": value - 0.1, "test_macro_f1": value - 0.2}
    return TrialRecord(f"{placement}-{seed}", f"{placement},{seed}", status,
                       {"model.placement": placement, "seed": str(seed)}, metrics)


def test_configurations_are_ranked_by_their_mean_over_seeds_and_lost_trials_are_counted():
    records = [
        record("none", 0, value=0.70), record("none", 1, value=0.80),
        record("all", 0, value=0.90), record("all", 1, "FAILED"),
        record("layer1", 0, "KILLED"),
    ]
    table = rank(records, ["model.placement"], "val_macro_f1", "max")
    assert [s.config["model.placement"] for s in table] == ["all", "none", "layer1"]
    best, second, last = table
    assert (best.seeds, best.failed, best.killed, best.std) == (1, 1, 0, None)
    assert second.mean == pytest.approx(0.75) and second.std == pytest.approx(0.0707, abs=1e-4)
    assert second.test_accuracy == pytest.approx(0.65)
    assert (last.seeds, last.killed, last.mean) == (0, 1, None)  # nothing finished: ranked last


def test_a_metric_to_minimise_ranks_the_lowest_first():
    records = [record("none", 0, value=0.3), record("all", 0, value=0.2)]
    assert [s.config["model.placement"] for s in rank(records, ["model.placement"], "val_macro_f1", "min")] == [
        "all", "none"]


# --- `ablate report` on a study logged to a real MLflow store with known effects ---------------------


import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import stats  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from ablation import tracking  # noqa: E402
from ablation.cli.main import app  # noqa: E402
from ablation.core.emotions import EMOTIONS  # noqa: E402

# Two seeds per configuration: layer4 is clearly better than vanilla, layer1 is within the noise,
# and layer2's second seed diverged.
KNOWN = {
    "none": {0: 0.70, 1: 0.74},
    "layer4": {0: 0.80, 1: 0.83},
    "layer1": {0: 0.69, 1: 0.76},
    "layer2": {0: 0.72},
}


def open_trial(uri: str, experiment_id: str, parent_run_id: str, *, name: str, trial_id: str,
               params: dict) -> tracking.TrackedRun:
    """A trial's run with its params logged, as a started trial has them (a trial logs its params when
    it starts on its worker, so a run only opened has none yet)."""
    run = tracking.open_trial(uri, experiment_id, parent_run_id, name=name, trial_id=trial_id, params=params).run
    run.log_params(params)
    return run


def log_known_study(uri: str, spec_yaml: str = "name: known\n") -> None:
    experiment_id, parent = tracking.open_study(
        uri, "known", params={"search.seeds": [0, 1], "trials": 8}, spec_yaml=spec_yaml)
    parent.set_tags({"ablate.axes": "model.placement", "ablate.metric": "val_macro_f1"})
    for placement, by_seed in KNOWN.items():
        for seed in (0, 1):
            run = open_trial(uri, experiment_id, parent.run_id, name=f"placement={placement},seed={seed}",
                             trial_id=f"{placement}-{seed}", params={
                                 "arm": f"placement={placement}", "model.placement": placement,
                                 "model.attention": "identity_cbam", "seed": seed})
            if seed not in by_seed:
                run.set_tags({"ablate.failure": "divergence"})
                run.finish("FAILED")
                continue
            value = by_seed[seed]
            run.log_metrics({"params_total": 1e6 + 1e5 * len(placement), "params_added": 1e5 * len(placement),
                             "macs": 2e8 + 1e6 * len(placement), "latency_ms": 1.5})
            for epoch in (1, 2):
                run.log_metrics({"val_macro_f1": value - 0.1 / epoch}, step=epoch)
            run.log_metrics({"test_accuracy": value + 0.01, "test_macro_f1": value,
                             **{f"test_f1_{c}": value + 0.01 * i for i, c in enumerate(EMOTIONS)}})
            run.finish("FINISHED")
    parent.finish("FINISHED")


def test_a_study_run_again_with_more_seeds_is_reported_against_the_seeds_it_now_asks_for(tmp_path):
    """MLflow keeps the first run's `search.seeds` param for good, so a study run with one seed and then
    with two read "2 of 1" seeds per configuration and "seeds planned [0]". The latest spec.yaml says."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _, first = tracking.open_study(uri, "known", params={"search.seeds": [0]},
                                   spec_yaml="name: known\nsearch: {seeds: [0]}\n")
    first.finish("FINISHED")
    log_known_study(uri, spec_yaml="name: known\nsearch: {seeds: [0, 1]}\n")  # the run with a second seed

    from ablation.report.model import build_report
    from ablation.report.tables import tables

    report = build_report(uri, "known")
    assert report.planned_seeds == 2
    assert dict(report.setup)["seeds planned"] == "[0, 1]"
    seeds = [row[1] for row in tables(report)[0].rows]
    assert "2 of 2" in seeds and not any(cell.endswith("of 1") for cell in seeds), seeds


def test_the_report_gives_means_intervals_and_holm_corrected_paired_tests_that_scipy_agrees_with(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_known_study(uri)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "known", "--tracking-uri", uri, "--out", str(out)])
    assert result.exit_code == 0, result.output

    from ablation.report.model import build_report

    report = build_report(uri, "known")
    assert report.baseline == "placement=none"
    layer4 = report.arms["placement=layer4"].interval("test_macro_f1")
    low, high = stats.t.interval(0.95, 1, loc=0.815, scale=stats.sem([0.80, 0.83]))
    assert high > 1  # two seeds: the t interval runs past what an F1 can be, so it is clipped, and says so
    assert (layer4.mean, layer4.low, layer4.high, layer4.clipped) == pytest.approx((0.815, low, 1.0, True))
    found = {c.arm: c for c in report.comparisons["test_macro_f1"]}
    assert set(found) == {"placement=layer4", "placement=layer1"}  # layer2 has one seed: nothing to pair
    raw = {arm: stats.ttest_rel(list(KNOWN[arm.split("=")[1]].values()), list(KNOWN["none"].values())).pvalue
           for arm in found}
    ordered = sorted(raw, key=raw.get)
    assert ordered[0] == "placement=layer4"
    assert found[ordered[0]].p_holm == pytest.approx(min(1, 2 * raw[ordered[0]]))
    assert found[ordered[1]].p_holm == pytest.approx(max(found[ordered[0]].p_holm, raw[ordered[1]]))
    assert found["placement=layer4"].difference.mean == pytest.approx(0.095)
    assert not found["placement=layer1"].significant and found["placement=layer1"].seeds_needed > 2
    assert report.arms["placement=layer2"].diverged == ["placement=layer2,seed=1"]
    assert any("fewer finished seeds than the 2 planned" in n and "placement=layer2 (1)" in n for n in report.notes)
    assert report.curves["placement=layer4"] == pytest.approx({1: 0.715, 2: 0.765})

    md = (out / "report.md").read_text()
    assert "1 diverged" in md and "placement=layer4" in md
    accuracy = report.arms["placement=layer4"].interval("test_accuracy")
    # Decimals from the interval's width (two significant figures of its half-width, three at least), the
    # mean and both bounds alike: not 0.825 beside 0.8150, nor 1 beside 0.634.
    assert (f"| placement=layer4 | 2 of 2 | 0.825 [{accuracy.low:.3f}, 1.000]† | 0.815 [{low:.3f}, 1.000]† |"
            in md)
    assert "† interval clipped to the metric's range" in md
    html = (out / "report.html").read_text()
    pictures = sorted(out.glob("*.png"))
    # One axis of one site each: each configuration's interval, not a diagonal of sites.
    assert {p.name for p in pictures} == {"intervals.png", "score_vs_cost.png", "per_class_f1.png",
                                          "learning_curves.png"}
    for picture in pictures:
        with Image.open(picture) as image:
            assert image.width > 100 and np.asarray(image.convert("L")).std() > 5  # drawn, not blank
    assert html.count("data:image/png;base64,") == 4
    # Captions in words, numbered; no file name stands in for one.
    # MACs in MMACs, as report.tex gives them: every arm is under a GMAC (0.2 G), where GMACs read alike.
    assert "*Figure 2. Test macro-F1 against MMACs, parameters (M), latency (ms)" in md
    assert "<figcaption>Figure 1. Test macro-F1 of each configuration: mean and 95% interval" in html and "<figcaption>heatmap" not in html
    # The method is said once, under the last comparison, though two scores are compared.
    assert len(report.comparisons) == 2
    for text in (md, html):
        assert text.count("correction runs over every configuration") == 1
    # Two seeds make intervals uninformative: said where it is seen, in each form of the report.
    assert "> **Warning:** Fewer than 3 seeds: 4 of 4 configurations" in md
    assert '<p class="warning"><strong>Warning:</strong> Fewer than 3 seeds' in html
    assert "warning: Fewer than 3 seeds" in " ".join(result.output.split())
    client = tracking.find_study(uri, "known").run.client
    parent = tracking.find_study(uri, "known").run.run_id
    logged = {a.path for a in client.list_artifacts(parent, "report")}
    assert {"report/report.html", "report/report.csv", "report/report.tex", "report/intervals.png"} <= logged


@pytest.mark.slow  # an MLflow server
def test_a_study_logged_through_a_server_and_its_report_print_no_mlflow_links(mlflow_server, tmp_path, capsys):
    """Through a server, MLflow prints "🏃 View run <name> at: http://..." and "🧪 View experiment at: ..."
    each time a run ends: a line pair per trial among a study's output. `ablate` gives its own links."""
    url, _ = mlflow_server
    log_known_study(url)  # ends nine runs, as a study's driver and trials do
    result = CliRunner().invoke(app, ["report", "known", "--tracking-uri", url, "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    printed = capsys.readouterr()
    for text in (printed.out, printed.err, result.output):
        assert "View run" not in text and "View experiment" not in text and "🏃" not in text


def test_reporting_a_study_that_does_not_exist_names_what_the_store_has(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_known_study(uri)
    result = CliRunner().invoke(app, ["report", "unknown", "--tracking-uri", uri])
    assert result.exit_code == 2 and "no study named 'unknown'" in result.output and "known" in result.output
    bad = CliRunner().invoke(app, ["report", "known", "--tracking-uri", uri, "--baseline", "placement=layer9"])
    assert bad.exit_code == 2 and "placement=layer9" in bad.output


def test_the_report_adds_the_cue_scores_explain_logged(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_known_study(uri)
    from ablation.report.model import build_report
    from ablation.report.files import write

    report = build_report(uri, "known")
    layer4 = report.arms["placement=layer4"].finished[0]
    tracking.log_explanation(uri, layer4.run_id, {"cue_energy_all": 0.4, "pointing_game_all": 0.5}, layer="layer1",
                             images=8)
    write(build_report(uri, "known"), tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Grad-CAM on the class cues (ablate explain --score, at layer1 on 8 images;" in md
    assert "| placement=layer4 | 0.400 | 0.500 |" in md


def test_the_paper_study_prints_the_published_tables_beside_the_measured_ones(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id, parent = tracking.open_study(uri, "paper", params={"search.seeds": [0]},
                                                spec_yaml="name: paper\nreference: paper\n")
    parent.set_tags({"ablate.axes": "model.arch,model.attention"})
    for arch in ("resnet50", "resnet101"):
        for attention in ("none", "identity_cbam"):
            run = open_trial(uri, experiment_id, parent.run_id, name=f"{arch},{attention}",
                                      trial_id=f"{arch}-{attention}", params={
                                          "arm": f"arch={arch},attention={attention}", "model.arch": arch,
                                          "model.attention": attention, "seed": 0})
            run.log_metrics({"test_accuracy": 0.8, "test_macro_f1": 0.79, "test_f1_happy": 0.95})
            run.finish("FINISHED")
    from ablation.report.model import build_report

    by_title = {t.title: t for t in tables(build_report(uri, "paper"))}
    table1 = next(t for title, t in by_title.items() if title.startswith("Table 1"))
    assert table1.header[1:] == ["ResNet50", "ResNet101", "ResNet50 + Identity-CBAM", "ResNet101 + Identity-CBAM"]
    assert table1.rows[0] == ["happy", "0.97 / 0.950", "0.98 / 0.950", "0.98 / 0.950", "0.98 / 0.950"]
    table2 = next(t for title, t in by_title.items() if title.startswith("Table 2"))
    assert table2.rows[0][2] == "83.23 / 80.000"
    assert any(title.startswith("Marginal effect of model.arch") for title in by_title)


def test_with_one_seed_the_report_says_there_is_nothing_to_pair(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id, parent = tracking.open_study(uri, "single", params={"search.seeds": [0]}, spec_yaml="name: x\n")
    parent.set_tags({"ablate.axes": "model.placement"})
    for placement, value in (("none", 0.7), ("layer4", 0.8)):
        run = open_trial(uri, experiment_id, parent.run_id, name=placement, trial_id=placement, params={
            "arm": f"placement={placement}", "model.placement": placement, "seed": 0})
        run.log_metrics({"test_accuracy": value, "test_macro_f1": value})
        run.finish("FINISHED")
    from ablation.report.model import build_report

    report = build_report(uri, "single")
    assert report.comparisons == {} and any("add seeds" in note for note in report.notes)
    assert [t.title for t in tables(report)][0].startswith("Configurations")


def test_reporting_from_a_store_that_does_not_exist_says_so_and_creates_none(tmp_path):
    result = CliRunner().invoke(app, ["report", "known", "--tracking-uri", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no MLflow store" in result.output
    assert not (tmp_path / "nowhere").exists()


# --- An interrupted study: the plan comes from the parent run's spec.yaml, not from the runs -------

import csv  # noqa: E402

import yaml  # noqa: E402

from ablation.core import Study, StudySpec  # noqa: E402

PLANNED = ["none", "layer4", "layer2", "layer1"]


def log_interrupted_study(uri: str, finished: dict[str, dict[int, float]], killed: set[tuple[str, int]] = frozenset(),
                          name: str = "interrupted") -> StudySpec:
    """A grid study logged as `ablate run` logs it, cut short: only the trials in `finished` (placement ->
    seed -> test macro-F1) and `killed` ever started."""
    spec = StudySpec.model_validate({"name": name, "search": {"space": {"model.placement": PLANNED},
                                                              "seeds": [0, 1]}})
    trials = Study.from_spec(spec).trials
    experiment_id, parent = tracking.open_study(
        uri, name, params=spec.params() | {"search.seeds": spec.search.seeds, "trials": len(trials)},
        spec_yaml=yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    parent.set_tags({"ablate.axes": "model.placement", "ablate.design": "grid", "ablate.metric": "val_macro_f1"})
    for trial in trials:
        placement = trial.spec.model.placement
        value = finished.get(placement, {}).get(trial.seed)
        if value is None and (placement, trial.seed) not in killed:
            continue  # never started
        run = open_trial(uri, experiment_id, parent.run_id, name=trial.name, trial_id=trial.id,
                                  params=trial.params())
        if value is None:
            run.finish("KILLED")
            continue
        run.log_metrics({"val_macro_f1": value}, step=1)
        # The worker's high-water mark, as the trainable logs it: 600 MB plus 100 MB per trial logged.
        run.log_metrics({"test_accuracy": value + 0.01, "test_macro_f1": value,
                         "worker_peak_rss_mb": 600.0 + 100 * len(run.client.search_runs([experiment_id]))})
        run.finish("FINISHED")
    parent.finish("KILLED")
    return spec


def test_an_interrupted_study_lists_the_configurations_that_never_started_with_0_of_n_seeds(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_interrupted_study(uri, {"none": {0: 0.70, 1: 0.74}, "layer4": {0: 0.80, 1: 0.83}, "layer2": {0: 0.72}},
                          killed={("layer2", 1)})
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "interrupted", "--tracking-uri", uri, "--out", str(out)])
    assert result.exit_code == 0, result.output
    from ablation.report.model import build_report

    report = build_report(uri, "interrupted")
    assert set(report.arms) == {f"placement={p}" for p in PLANNED}
    assert report.baseline == "placement=none"
    assert {c.arm for c in report.comparisons["test_macro_f1"]} == {"placement=layer4"}
    with open(out / "report.csv") as f:
        rows = {(row["configuration"], row["metric"]): row for row in csv.DictReader(f)}
    never = rows[("placement=layer1", "test_macro_f1")]  # a planned configuration keeps a row, with n = 0
    assert (never["n"], never["mean"], never["rank"]) == ("0", "", "")
    assert rows[("placement=layer2", "test_macro_f1")]["n"] == "1"
    assert float(rows[("placement=none", "test_macro_f1")]["mean"]) == pytest.approx(0.72)
    assert list(rows)[-1][0] == "placement=layer1"  # nothing finished: ranked last
    assert "| placement=layer1 | 0 of 2 |" in (out / "report.md").read_text()
    assert any("placement=layer1 (0)" in n and "placement=layer2 (1)" in n for n in report.notes)


def test_an_interrupted_study_whose_baseline_never_started_says_so_rather_than_that_it_has_none(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_interrupted_study(uri, {"layer4": {0: 0.80, 1: 0.83}, "layer1": {0: 0.69, 1: 0.76}})
    result = CliRunner().invoke(app, ["report", "interrupted", "--tracking-uri", uri, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "No configuration without attention" not in result.output
    from ablation.report.model import build_report

    report = build_report(uri, "interrupted")
    assert report.baseline == "placement=none" and report.comparisons == {}
    assert report.arms["placement=none"].seeds == 0
    assert any("baseline (placement=none) has 0 of 2 seeds" in n for n in report.notes), report.notes
    assert not any("No configuration without attention" in n for n in report.notes)
    configs = tables(report)[0]
    assert ["placement=none", "0 of 2"] in [row[:2] for row in configs.rows]


def test_a_study_without_a_readable_spec_is_reported_from_its_runs_and_says_why(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_known_study(uri)  # its spec.yaml is not a study spec
    from ablation.report.model import build_report

    report = build_report(uri, "known")
    assert set(report.arms) == {f"placement={p}" for p in KNOWN} and report.baseline == "placement=none"
    assert any("spec.yaml" in n for n in report.notes), report.notes


def test_a_sampled_study_lists_only_the_trials_it_drew(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = StudySpec.model_validate({"name": "drawn", "search": {
        "method": "random", "num_samples": 2, "space": {"model.placement": PLANNED}, "seeds": [0, 1]}})
    experiment_id, parent = tracking.open_study(
        uri, "drawn", params=spec.params() | {"search.seeds": spec.search.seeds, "trials": 2},
        spec_yaml=yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    parent.set_tags({"ablate.axes": "model.placement", "ablate.design": "grid"})
    for placement in ("none", "layer4"):
        from ablation.core import Trial

        trial = Trial.create(spec, {"model.placement": placement, "seed": 0})
        run = open_trial(uri, experiment_id, parent.run_id, name=trial.name, trial_id=trial.id,
                                  params=trial.params())
        run.log_metrics({"test_accuracy": 0.8, "test_macro_f1": 0.8})
        run.finish("FINISHED")
    from ablation.report.model import build_report

    report = build_report(uri, "drawn")
    assert set(report.arms) == {"placement=none", "placement=layer4"} and report.baseline == "placement=none"


# --- Ranking by the study's own metric and mode; clipped intervals; the tidy CSV and report.tex ------

import math  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

from ablation.report.model import Arm, StudyReport, ranking_metric  # noqa: E402
from ablation.report.files import placement_grid, tidy  # noqa: E402


def made_arm(name: str, scores: dict[str, dict[int, float]], costs: dict[str, float] | None = None,
             levels: dict[str, str] | None = None) -> Arm:
    """An arm as the report sees it, with a finished trial per seed its scores name."""
    arm = Arm(name, levels or {"model.placement": name}, scores=scores, costs=costs or {})
    seeds = sorted({s for by_seed in scores.values() for s in by_seed})
    arm.finished = [TrialRecord(f"{name}-{s}", f"{name},{s}", "FINISHED", {"seed": str(s)}, {}) for s in seeds]
    return arm


def made_report(*arms: Arm, **kw) -> StudyReport:
    return StudyReport("unit", "val_macro_f1", {a.name: a for a in arms}, None, None, {}, {}, {}, **kw)


def test_a_study_ranks_by_the_test_counterpart_of_its_own_metric_in_its_mode(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id, parent = tracking.open_study(uri, "loss", params={"search.seeds": [0, 1, 2]}, spec_yaml="x: 1\n")
    parent.set_tags({"ablate.axes": "model.placement,model.reduction", "ablate.metric": "val_loss",
                     "ablate.mode": "min"})
    losses = {("none", "16"): 0.90, ("none", "8"): 0.80, ("layer4", "16"): 0.50, ("layer4", "8"): 0.70}
    for (placement, reduction), loss in losses.items():
        for seed in (0, 1, 2):
            run = open_trial(uri, experiment_id, parent.run_id, name=f"{placement},{reduction},{seed}",
                                      trial_id=f"{placement}-{reduction}-{seed}", params={
                                          "model.placement": placement, "model.reduction": reduction,
                                          "seed": seed})
            # Test accuracy would rank the other way round: the ranking must follow the loss.
            noisy = loss + (0.0, 0.02, 0.01)[seed] * (1.5 if placement == "layer4" else 1.0)
            run.log_metrics({"best_val_loss": loss, "test_loss": noisy, "test_accuracy": noisy,
                             "test_macro_f1": noisy})
            run.finish("FINISHED")
    from ablation.report.model import build_report

    report = build_report(uri, "loss", baseline="model.placement=none,model.reduction=16")
    assert (report.rank_by, report.mode) == ("test_loss", "min")
    assert [a.name for a in report.ranked()] == [
        "model.placement=layer4,model.reduction=16", "model.placement=layer4,model.reduction=8",
        "model.placement=none,model.reduction=8", "model.placement=none,model.reduction=16"]
    by_title = {t.title: t for t in tables(report)}
    configs = tables(report)[0]
    assert configs.title.startswith("Configurations, best first by test loss (lower is better)")
    assert "test loss" in configs.header and not report.warnings  # three seeds each
    placement = by_title["Marginal effect of model.placement on test loss (mean over the other axes)"]
    assert [row[1] for row in placement.rows] == ["layer4", "none"]  # ascending: 0.61 before 0.86
    compared = by_title["test loss against the baseline (model.placement=none,model.reduction=16), paired by seed"]
    verdicts = {row[0]: row[6] for row in compared.rows}
    assert verdicts["model.placement=layer4,model.reduction=16"] == "better"  # a lower loss is better
    # accuracy keeps "higher is better": the same figures make the same arm worse on it
    accuracy = by_title["test accuracy against the baseline (model.placement=none,model.reduction=16), paired by seed"]
    assert {row[0]: row[6] for row in accuracy.rows}["model.placement=layer4,model.reduction=16"] == "worse"
    from ablation.report.files import write

    write(report, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "*Figure 1. Test loss by model.placement and model.reduction, mean over seeds.*" in md
    assert "configurations ranked on test_loss" in md


def test_the_ranking_metric_is_the_test_counterpart_when_logged_else_the_best_epoch_value():
    tested = [TrialRecord("r", "r", "FINISHED", {}, {"best_val_macro_f1": 0.7, "test_macro_f1": 0.6})]
    assert ranking_metric("val_macro_f1", tested) == "test_macro_f1"
    untested = [TrialRecord("r", "r", "FINISHED", {}, {"best_val_loss": 0.7})]
    assert ranking_metric("val_loss", untested) == "best_val_loss"
    assert ranking_metric("val_loss", []) == "test_loss"  # nothing logged yet: the rule's own choice


def test_intervals_are_clipped_to_the_metric_range_and_marked_and_few_seeds_warn():
    wide = made_arm("layer4", {"test_macro_f1": {0: 0.80, 1: 0.95}, "test_accuracy": {0: 0.8, 1: 0.81}})
    report = made_report(wide, made_arm("none", {"test_macro_f1": {0: 0.7, 1: 0.71, 2: 0.72}}))
    f1 = wide.interval("test_macro_f1")
    assert f1.clipped and f1.high == 1.0 and f1.low < 0.8
    assert not wide.interval("test_accuracy").clipped
    configs = tables(report)[0]
    assert configs.rows[0][3].endswith("†") and "interval clipped to the metric's range" in configs.footnote
    from ablation.report.model import _warnings

    assert "1 of 2 configurations (1 with 2 seeds)" in _warnings(report.arms)[0]
    assert _warnings({"none": report.arms["none"]}) == []


def test_report_csv_is_tidy_one_numeric_row_per_configuration_and_metric():
    arms = [made_arm("layer3.2+layer4", {"test_macro_f1": {0: 0.80, 1: 0.95}, "test_f1_happy": {0: 0.9}},
                     costs={"params_total": 11_180_000.0, "macs": 1.82e9, "latency_ms": 12.5}),
            made_arm("none", {"test_macro_f1": {0: 0.7, 1: 0.71, 2: 0.72}}),
            Arm("layer1", {"model.placement": "layer1"})]  # planned, never started
    from ablation.report.model import _comparisons

    by_name = {a.name: a for a in arms}
    report = StudyReport("unit", "val_macro_f1", by_name, "none", None,
                         _comparisons(by_name, "none", ("test_macro_f1",), None, []), {}, {})
    header, rows = tidy(report)
    assert header[:9] == ["rank", "configuration", "model.placement", "metric", "mean", "low", "high", "n", "clipped"]
    assert header[9:] == ["kind", "against", "p", "p_holm", "answer", "decided_at", "effect", "estimate", "se",
                          "aliases", "method"]
    by = {(r[1], r[3]): dict(zip(header, r)) for r in rows if r[header.index("kind")] in ("score", "cost")}
    f1 = by[("layer3.2+layer4", "test_macro_f1")]
    assert (f1["rank"], float(f1["mean"]), float(f1["high"]), f1["n"], f1["clipped"]) == (1, 0.875, 1.0, 2, True)
    assert by[("layer3.2+layer4", "test_f1_happy")]["low"] == ""  # one seed: no interval, not a string
    assert float(by[("layer3.2+layer4", "params_total")]["mean"]) == 11_180_000
    assert float(by[("layer3.2+layer4", "macs")]["mean"]) == 1.82e9
    assert by[("layer1", "test_macro_f1")]["n"] == 0
    for row in rows:
        for column in ("mean", "low", "high", "p", "p_holm"):
            value = row[header.index(column)]
            assert value == "" or math.isfinite(float(value)), row  # numbers only: no "±", no "M"
    # The paired differences from the baseline, as the report's comparison table gives them.
    [c] = report.comparisons["test_macro_f1"]
    [difference] = [dict(zip(header, r)) for r in rows if r[header.index("kind")] == "difference"]
    assert (difference["configuration"], difference["against"], difference["n"]) == ("layer3.2+layer4", "none", 2)
    assert float(difference["mean"]) == pytest.approx(c.difference.mean) == pytest.approx(0.875 - 0.705)
    assert float(difference["p_holm"]) == pytest.approx(c.p_holm) and float(difference["p"]) == pytest.approx(c.p_t)


def test_report_tex_holds_booktabs_tables_1_and_2_with_escaped_names(tmp_path):
    from ablation.report.paper import escape, latex

    assert escape("cbam_r16 & 5% $x#{y}") == r"cbam\_r16 \& 5\% \$x\#\{y\}"
    classes = {f"test_f1_{c}": {0: 0.8, 1: 0.9} for c in EMOTIONS}
    arms = [made_arm("placement=layer3.2+layer4_r&d", {"test_macro_f1": {0: 0.80, 1: 0.82},
                                                       "test_accuracy": {0: 0.81, 1: 0.83}, **classes},
                     costs={"params_total": 11_180_000.0, "macs": 1.82e9}),
            made_arm("placement=none", {"test_macro_f1": {0: 0.7}, "test_accuracy": {0: 0.72}})]
    tex = latex(made_report(*arms))
    assert tex.count("\\toprule") == 2 and tex.count("\\bottomrule") == 2
    # Seven intervals span the page in 8 pt, rather than shrink to 5 pt in one column; two stay in one.
    assert tex.count("\\begin{table*}") == tex.count("\\end{table*}") == 1 and tex.count("\\begin{table}") == 1
    assert "\\footnotesize\\setlength{\\tabcolsep}{4pt}" in tex
    assert "placement=layer3.2+layer4\\_r\\&d & 2 &" in tex and "placement=layer3.2+layer4_r&d" not in tex
    assert "Configuration & $n$ & Happy & Anger & Unrest & Wound & Sad & Neutral & Macro-F1 \\\\" in tex
    assert "0.810 $\\pm$ 0.127" in tex  # macro-F1: mean and the t interval's half-width on two seeds
    assert "82.00 $\\pm$ 12.71" in tex  # accuracy, in %
    assert "0.850\\,[0.215, 1.000]$^{\\dagger}$" in tex and "interval clipped to the metric's range" in tex
    assert "placement=none & 1 & 72.00 & 0.700 & -- & -- \\\\" in tex  # one seed: its mean; no cost logged
    assert "11.18 & 1.82" in tex and "GMACs" in tex
    small = latex(made_report(made_arm("placement=layer4", {"test_macro_f1": {0: 0.8}, "test_accuracy": {0: 0.8}},
                                       costs={"params_total": 11.49e6, "macs": 37.36e6})))
    assert "MMACs" in small and "& 37.36 \\\\" in small  # not 0.04 GMACs for every small model
    assert tex.count("{") == tex.count("}")
    compiles(tex, tmp_path)


def compiles(tex: str, folder: Path) -> None:
    """`tex` typeset on a two-column paper page (`\\documentclass[twocolumn]{article}`, booktabs), with no
    overfull box in the log, where a LaTeX is installed (CI's machines may have none)."""
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        return
    (folder / "report.tex").write_text(tex)
    (folder / "paper.tex").write_text("\\documentclass[twocolumn]{article}\n\\usepackage{booktabs,graphicx}\n"
                                      "\\begin{document}\n\\input{report.tex}\n\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (folder / "paper.pdf").stat().st_size > 1000
    log = (folder / "paper.log").read_text(errors="replace")
    assert "Overfull \\hbox" not in log, log[log.find("Overfull"):][:600]


def test_the_heatmap_gives_block_sites_a_column_of_their_own():
    placements = {"a": "layer3.2", "b": "layer3", "c": "layer3.2+layer4", "d": "all", "e": "none"}
    means = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4, "e": 0.5}
    values, columns = placement_grid(placements, means)
    assert columns == ["layer1", "layer2", "layer3", "layer3.2", "layer4", "none"]
    assert values[("a", "layer3.2")] == 0.1 and ("a", "layer3") not in values
    assert {c for (arm, c) in values if arm == "c"} == {"layer3.2", "layer4"}
    assert {c for (arm, c) in values if arm == "d"} == {"layer1", "layer2", "layer3", "layer4"}
    assert values[("e", "none")] == 0.5


def test_the_figures_of_configurations_with_long_names_are_drawn_without_a_layout_warning(tmp_path):
    """A configuration's name is written beside its point and in legends beside the axes. Fitted into the
    figure (`tight_layout`), a long one squeezed the axes until matplotlib gave up and warned on the
    terminal of `ablate report`; the figures now grow to hold the names instead."""
    import warnings

    from ablation.report import figures
    from ablation.report.files import draw

    names = [f"model.attention=identity_cbam,model.placement=layer{i}.1+layer4,model.reduction=16,train.lr=0.01"
             for i in range(1, 5)]
    arms = [made_arm(name, {"test_macro_f1": {0: 0.7 + i / 50, 1: 0.72 + i / 50},
                            **{f"test_f1_{c}": {0: 0.6, 1: 0.7} for c in EMOTIONS}},
                     costs={"params_total": 11e6 + i * 1e5, "macs": 1.8e9 + i * 1e7, "latency_ms": 12.0 + i},
                     levels={"model.placement": f"layer{i + 1}.1+layer4"})
            for i, name in enumerate(names)]
    report = made_report(*arms)
    report.curves = {name: {1: 0.5, 2: 0.6} for name in names}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drawn = [p.path for p in draw(report, tmp_path)]
        drawn.append(figures.race_intervals({name: {2: (-0.1, 0.1), 3: (-0.05, 0.06)} for name in names}, margin=0.01,
                                            baseline=names[0], metric="macro-F1", path=tmp_path / "race.png"))
    assert [str(w.message) for w in caught] == []
    # Placements of two sites each: the grid of the sites they hold.
    assert {p.name for p in drawn} == {"heatmap.png", "score_vs_cost.png", "per_class_f1.png",
                                       "learning_curves.png", "race.png"}
    for picture in drawn:
        with Image.open(picture) as image:
            assert np.asarray(image.convert("L")).std() > 5  # drawn, not blank


def test_the_report_states_the_setup_and_the_provenance_its_runs_carry(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = log_interrupted_study(uri, {"none": {0: 0.70, 1: 0.74}, "layer4": {0: 0.80}})
    parent = tracking.find_study(uri, "interrupted").run
    parent.set_tags({"mlflow.source.git.commit": "c95b736", "ablate.version.torch": "2.14.1"})
    from mlflow.entities import Dataset, DatasetInput, InputTag

    parent.client.log_inputs(parent.run_id, datasets=[DatasetInput(
        Dataset("synthetic", "d1g35t", "local", "/data", profile='{"images": 1200}'),
        tags=[InputTag("mlflow.data.context", "train")])])
    from ablation.report.model import build_report
    from ablation.report.files import write

    report = build_report(uri, "interrupted")
    setup = dict(report.setup)
    assert setup["epochs"] == str(spec.train.epochs) and setup["batch size"] == str(spec.train.batch_size)
    assert setup["learning rate"] == str(spec.train.lr) and setup["optimizer"] == spec.train.optimizer
    assert setup["dataset"] == spec.data.dataset and setup["image size (px)"] == str(spec.data.image_size)
    assert setup["placement"].startswith("swept: ")
    assert setup["seeds planned"] == "[0, 1]" and setup["seeds run"] == "0, 1"
    assert setup["study metric"] == "val_macro_f1 (max); configurations ranked on test_macro_f1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", setup["study started"])
    assert setup["git commit"] == "c95b736" and setup["ablate.version.torch"] == "2.14.1"
    assert setup["git branch"] == "not recorded"
    assert setup["dataset input (train)"] == "synthetic, digest d1g35t (images 1200)"
    # Runs 2, 3 and 4 of the store (after the parent) finished: 800, 900 and 1,000 MB.
    assert setup["trial worker memory"] == "peak RSS median 900 MB, largest 1,000 MB, over 3 trials"
    write(report, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "### Setup and provenance" in md and "| git commit | c95b736 |" in md


def test_the_html_report_renders_in_a_headless_browser(tmp_path):
    """The report as a person opens it: headless Chromium draws report.html, and the picture is not blank."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "report_render.py"
    loaded = importlib.util.spec_from_file_location("report_render", path)
    render = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(render)
    browser = render.find_browser()
    if browser is None:
        pytest.skip(f"no headless browser on PATH (looked for {', '.join(render.BROWSERS)}); "
                    "Debian: apt-get install chromium")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_known_study(uri)
    from ablation.report.make import make_report

    make_report(uri, "known", tmp_path / "report")
    figures = render.measure(render.render(tmp_path / "report" / "report.html", tmp_path / "page.png", browser))
    assert render.blank(figures) is None, figures
    # The check can fail: the same page with its pictures broken is caught.
    html = (tmp_path / "report" / "report.html").read_text()
    (tmp_path / "broken.html").write_text(re.sub(r'base64,[^"]+', "base64,AAAA", html))
    broken = render.measure(render.render(tmp_path / "broken.html", tmp_path / "broken.png", browser))
    assert "the plots did not draw" in render.blank(broken), broken


def test_report_md_shows_what_a_cell_holds_without_running_html_or_adding_columns():
    """Markdown passes raw HTML through to the page, and a pipe in a cell starts another column."""
    from ablation.report.table import Table

    md = Table("arms <b>", ["configuration", "value"], [["<img src=x onerror=alert(1)>", "1|2"]],
               note="a & b").markdown()
    assert "<img" not in md and "<b>" not in md and "&lt;img src=x onerror=alert(1)&gt;" in md
    row = md.splitlines()[4]
    assert len(re.split(r"(?<!\\)\|", row)[1:-1]) == 2  # the escaped pipe stays inside its cell


def test_a_mean_and_its_interval_take_the_decimals_of_the_intervals_width():
    from ablation.report.tables import _ci
    from ablation.stats.analysis import Interval

    assert _ci(Interval(0.825, 0.784, 0.866, 3)) == "0.825 ± 0.041"
    assert _ci(Interval(0.3557, 0.3517, 0.3597, 3)) == "0.3557 ± 0.0040"
    assert _ci(Interval(0.7, math.nan, math.nan, 1)) == "0.700 (one seed)"
    assert _ci(Interval(0.815, 0.624, 1.0, 2, clipped=True)) == "0.815 [0.624, 1.000]†"


def test_the_setup_lists_swept_values_in_the_specs_order_not_the_stores():
    from ablation.report.provenance import setting
    from ablation.tracking import TrialRecord

    order = ["none", "layer1", "layer2", "layer3", "layer4", "all"]
    records = [TrialRecord(str(i), f"placement={p}", "FINISHED", {"model.placement": p}, {})
               for i, p in enumerate(["layer3", "all", "none", "layer1", "layer4", "layer2"])]
    tree = {"search": {"space": {"model.placement": order}}}
    assert setting("model.placement", records, {}, tree, ["model.placement"]) == \
        "swept: none, layer1, layer2, layer3, layer4, all"
    assert setting("model.placement", records, {}, None, ["model.placement"]) == \
        "swept: all, layer1, layer2, layer3, layer4, none"  # no spec at hand: sorted, the same every time


def test_no_two_names_in_a_cost_panel_are_drawn_over_each_other(tmp_path, monkeypatch):
    """The walkthrough's two-seed quickstart drew `placement=layer1` over `placement=layer4` in the latency
    panel: overlaps were judged before the constrained layout narrowed the panels, so names that only the
    layout brought together were never moved. Its figure, redrawn from that report's numbers."""
    from ablation.report import figures

    scores = {"placement=layer4": (0.7875, 0.7172, 0.8579), "placement=layer1": (0.7831, 0.6629, 0.9033),
              "placement=layer3": (0.7712, 0.5994, 0.943), "placement=none": (0.7693, 0.6777, 0.8608),
              "placement=all": (0.7688, 0.6524, 0.8853), "placement=layer2": (0.7658, 0.5555, 0.9761)}
    order = list(scores)
    costs = {"MMACs": dict(zip(order, [99.14, 98.60, 98.60, 97.96, 101.06, 98.59])),
             "parameters (M)": dict(zip(order, [11.49, 11.185, 11.26, 11.18, 11.60, 11.20])),
             "latency (ms)": dict(zip(order, [15.99, 15.06, 20.43, 14.28, 22.68, 16.53]))}
    front = ["placement=none", "placement=layer1", "placement=layer4"]
    drawn, save = {}, figures._save

    def keep(figure, path, beside=()):  # where each panel's names are as the figure is saved (laid out)
        figure.draw_without_rendering()
        renderer = figure.canvas.get_renderer()
        drawn.update({ax.get_xlabel(): [t.get_window_extent(renderer) for t in ax.texts if t.get_text()]
                      for ax in figure.axes})
        return save(figure, path, beside)

    monkeypatch.setattr(figures, "_save", keep)
    figures.cost_scatter(scores, costs, score_label="test macro-F1", fronts={axis: front for axis in costs},
                         path=tmp_path / "score_vs_cost.png")
    assert set(drawn) == set(costs)
    for axis, boxes in drawn.items():
        assert len(boxes) == len(scores)
        overlapping = [(i, j) for i, a in enumerate(boxes) for j, b in enumerate(boxes) if i < j and a.overlaps(b)]
        assert not overlapping, (axis, overlapping)
