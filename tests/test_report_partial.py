"""A report of a study the store holds only part of: an interrupted study, whose plan comes from the
parent run's spec.yaml and not from its runs (configurations that never started keep a row, with 0 of n
seeds); a study whose spec cannot be read; and a sampled study, which lists only the trials it drew."""

import csv

import pytest
import yaml
from typer.testing import CliRunner

from ablation import tracking
from ablation.cli.main import app
from ablation.core import StudySpec
from ablation.report.tables import tables
from reported_studies import KNOWN, PLANNED, log_interrupted_study, log_known_study, open_trial


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
