"""The ranked table `ablate run` prints, from trial records as MLflow returns them."""

import pytest

from ablation.report import rank
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
from ablation.cli import app  # noqa: E402
from ablation.spec import EMOTIONS  # noqa: E402

# Two seeds per configuration: layer4 is clearly better than vanilla, layer1 is within the noise,
# and layer2's second seed diverged.
KNOWN = {
    "none": {0: 0.70, 1: 0.74},
    "layer4": {0: 0.80, 1: 0.83},
    "layer1": {0: 0.69, 1: 0.76},
    "layer2": {0: 0.72},
}


def log_known_study(uri: str) -> None:
    experiment_id, parent = tracking.open_study(
        uri, "known", params={"search.seeds": [0, 1], "trials": 8}, spec_yaml="name: known\n")
    parent.set_tags({"ablate.axes": "model.placement", "ablate.metric": "val_macro_f1"})
    for placement, by_seed in KNOWN.items():
        for seed in (0, 1):
            opened = tracking.open_trial(uri, experiment_id, parent.run_id, name=f"placement={placement},seed={seed}",
                                         trial_id=f"{placement}-{seed}", params={
                                             "arm": f"placement={placement}", "model.placement": placement,
                                             "model.attention": "identity_cbam", "seed": seed})
            run = opened.run
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


def test_the_report_gives_means_intervals_and_holm_corrected_paired_tests_that_scipy_agrees_with(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_known_study(uri)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "known", "--tracking-uri", uri, "--out", str(out)])
    assert result.exit_code == 0, result.output

    from ablation.report import build_report

    report = build_report(uri, "known")
    assert report.baseline == "placement=none"
    layer4 = report.arms["placement=layer4"].interval("test_macro_f1")
    low, high = stats.t.interval(0.95, 1, loc=0.815, scale=stats.sem([0.80, 0.83]))
    assert (layer4.mean, layer4.low, layer4.high) == pytest.approx((0.815, low, high))
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
    html = (out / "report.html").read_text()
    pictures = sorted(out.glob("*.png"))
    assert {p.name for p in pictures} == {"heatmap.png", "accuracy_vs_cost.png", "per_class_f1.png",
                                          "learning_curves.png"}
    for picture in pictures:
        with Image.open(picture) as image:
            assert image.width > 100 and np.asarray(image.convert("L")).std() > 5  # drawn, not blank
    assert html.count("data:image/png;base64,") == 4
    client = tracking.MlflowClient(uri)
    parent = tracking.find_study(uri, "known").run.run_id
    logged = {a.path for a in client.list_artifacts(parent, "report")}
    assert {"report/report.html", "report/report.csv", "report/heatmap.png"} <= logged


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
    from ablation.report import build_report, write

    report = build_report(uri, "known")
    layer4 = report.arms["placement=layer4"].finished[0]
    tracking.log_metrics(uri, layer4.run_id, {"explain_cue_energy_all": 0.4, "explain_pointing_game_all": 0.5})
    write(build_report(uri, "known"), tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Grad-CAM on the class cues" in md and "| placement=layer4 | 0.400 | 0.500 |" in md


def test_the_paper_study_prints_the_published_tables_beside_the_measured_ones(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id, parent = tracking.open_study(uri, "paper", params={"search.seeds": [0]},
                                                spec_yaml="name: paper\nreference: paper\n")
    parent.set_tags({"ablate.axes": "model.arch,model.attention"})
    for arch in ("resnet50", "resnet101"):
        for attention in ("none", "identity_cbam"):
            run = tracking.open_trial(uri, experiment_id, parent.run_id, name=f"{arch},{attention}",
                                      trial_id=f"{arch}-{attention}", params={
                                          "arm": f"arch={arch},attention={attention}", "model.arch": arch,
                                          "model.attention": attention, "seed": 0}).run
            run.log_metrics({"test_accuracy": 0.8, "test_macro_f1": 0.79, "test_f1_happy": 0.95})
            run.finish("FINISHED")
    from ablation.report import build_report

    tables = {t.title: t for t in build_report(uri, "paper").tables()}
    table1 = next(t for title, t in tables.items() if title.startswith("Table 1"))
    assert table1.header[1:] == ["ResNet50", "ResNet101", "ResNet50 + Identity-CBAM", "ResNet101 + Identity-CBAM"]
    assert table1.rows[0] == ["happy", "0.97 / 0.950", "0.98 / 0.950", "0.98 / 0.950", "0.98 / 0.950"]
    table2 = next(t for title, t in tables.items() if title.startswith("Table 2"))
    assert table2.rows[0][2] == "83.23 / 80.000"
    assert any(title.startswith("Marginal effect of model.arch") for title in tables)


def test_with_one_seed_the_report_says_there_is_nothing_to_pair(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id, parent = tracking.open_study(uri, "single", params={"search.seeds": [0]}, spec_yaml="name: x\n")
    parent.set_tags({"ablate.axes": "model.placement"})
    for placement, value in (("none", 0.7), ("layer4", 0.8)):
        run = tracking.open_trial(uri, experiment_id, parent.run_id, name=placement, trial_id=placement, params={
            "arm": f"placement={placement}", "model.placement": placement, "seed": 0}).run
        run.log_metrics({"test_accuracy": value, "test_macro_f1": value})
        run.finish("FINISHED")
    from ablation.report import build_report

    report = build_report(uri, "single")
    assert report.comparisons == {} and any("add seeds" in note for note in report.notes)
    assert [t.title for t in report.tables()][0].startswith("Configurations")


def test_reporting_from_a_store_that_does_not_exist_says_so_and_creates_none(tmp_path):
    result = CliRunner().invoke(app, ["report", "known", "--tracking-uri", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no MLflow store" in result.output
    assert not (tmp_path / "nowhere").exists()


# --- An interrupted study: the plan comes from the parent run's spec.yaml, not from the runs -------

import csv  # noqa: E402

import yaml  # noqa: E402

from ablation.spec import StudySpec  # noqa: E402

PLANNED = ["none", "layer4", "layer2", "layer1"]


def log_interrupted_study(uri: str, finished: dict[str, dict[int, float]], killed: set[tuple[str, int]] = frozenset(),
                          name: str = "interrupted") -> StudySpec:
    """A grid study logged as `ablate run` logs it, cut short: only the trials in `finished` (placement ->
    seed -> test macro-F1) and `killed` ever started."""
    spec = StudySpec.model_validate({"name": name, "search": {"space": {"model.placement": PLANNED},
                                                              "seeds": [0, 1]}})
    trials = spec.trials()
    experiment_id, parent = tracking.open_study(
        uri, name, params=spec.params() | {"search.seeds": spec.search.seeds, "trials": len(trials)},
        spec_yaml=yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    parent.set_tags({"ablate.axes": ",".join(spec.axes()), "ablate.design": "grid", "ablate.metric": "val_macro_f1"})
    for trial in trials:
        placement = trial.spec.model.placement
        value = finished.get(placement, {}).get(trial.seed)
        if value is None and (placement, trial.seed) not in killed:
            continue  # never started
        run = tracking.open_trial(uri, experiment_id, parent.run_id, name=trial.name, trial_id=trial.id,
                                  params=trial.params()).run
        if value is None:
            run.finish("KILLED")
            continue
        run.log_metrics({"val_macro_f1": value}, step=1)
        run.log_metrics({"test_accuracy": value + 0.01, "test_macro_f1": value})
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
    from ablation.report import build_report

    report = build_report(uri, "interrupted")
    assert set(report.arms) == {f"placement={p}" for p in PLANNED}
    assert report.baseline == "placement=none"
    assert {c.arm for c in report.comparisons["test_macro_f1"]} == {"placement=layer4"}
    with open(out / "report.csv") as f:
        rows = {row["configuration"]: row for row in csv.DictReader(f)}
    assert rows["placement=layer1"]["seeds"] == "0 of 2" and rows["placement=layer1"]["lost"] == "not started"
    assert rows["placement=layer2"]["seeds"] == "1 of 2" and rows["placement=layer2"]["lost"] == "1 unfinished"
    assert rows["placement=none"]["seeds"] == "2 of 2"
    assert list(rows)[-1] == "placement=layer1"  # nothing finished: ranked last
    assert "| placement=layer1 | 0 of 2 |" in (out / "report.md").read_text()
    assert any("placement=layer1 (0)" in n and "placement=layer2 (1)" in n for n in report.notes)


def test_an_interrupted_study_whose_baseline_never_started_says_so_rather_than_that_it_has_none(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_interrupted_study(uri, {"layer4": {0: 0.80, 1: 0.83}, "layer1": {0: 0.69, 1: 0.76}})
    result = CliRunner().invoke(app, ["report", "interrupted", "--tracking-uri", uri, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "No configuration without attention" not in result.output
    from ablation.report import build_report

    report = build_report(uri, "interrupted")
    assert report.baseline == "placement=none" and report.comparisons == {}
    assert report.arms["placement=none"].seeds == 0
    assert any("baseline (placement=none) has 0 of 2 seeds" in n for n in report.notes), report.notes
    assert not any("No configuration without attention" in n for n in report.notes)
    configs = report.tables()[0]
    assert ["placement=none", "0 of 2"] in [row[:2] for row in configs.rows]


def test_a_study_without_a_readable_spec_is_reported_from_its_runs_and_says_why(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_known_study(uri)  # its spec.yaml is not a study spec
    from ablation.report import build_report

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
        from ablation.spec import Trial

        trial = Trial.create(spec, {"model.placement": placement, "seed": 0})
        run = tracking.open_trial(uri, experiment_id, parent.run_id, name=trial.name, trial_id=trial.id,
                                  params=trial.params()).run
        run.log_metrics({"test_accuracy": 0.8, "test_macro_f1": 0.8})
        run.finish("FINISHED")
    from ablation.report import build_report

    report = build_report(uri, "drawn")
    assert set(report.arms) == {"placement=none", "placement=layer4"} and report.baseline == "placement=none"
