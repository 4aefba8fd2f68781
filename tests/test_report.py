"""The ranked table `ablate run` prints, from trial records as MLflow returns them, and the statistics
`ablate report` gives of a study read from a real MLflow store: means, clipped intervals, Holm-corrected
paired tests, the ranking by the study's own metric and mode, and what it says of a store or study that
is not there."""

import math

import numpy as np
import pytest
from PIL import Image
from scipy import stats
from typer.testing import CliRunner

from ablation import tracking
from ablation.cli.main import app
from ablation.report.model import rank, ranking_metric
from ablation.report.tables import tables
from ablation.tracking import TrialRecord
from reported_studies import KNOWN, log_known_study, made_arm, made_report, open_trial


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


# --- Ranking by the study's own metric and mode; clipped intervals; the decimals a mean is given --------


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


def test_a_mean_and_its_interval_take_the_decimals_of_the_intervals_width():
    from ablation.report.tables import _ci
    from ablation.stats.analysis import Interval

    assert _ci(Interval(0.825, 0.784, 0.866, 3)) == "0.825 ± 0.041"
    assert _ci(Interval(0.3557, 0.3517, 0.3597, 3)) == "0.3557 ± 0.0040"
    assert _ci(Interval(0.7, math.nan, math.nan, 1)) == "0.700 (one seed)"
    assert _ci(Interval(0.815, 0.624, 1.0, 2, clipped=True)) == "0.815 [0.624, 1.000]†"
