"""The `Study` value: a spec expanded once, immutable, and what every command receives."""

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablation.cli.main import app
from ablation.core import Study, design, load_study

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def expansions(monkeypatch):
    """How many times a design is expanded into trials."""
    calls = []
    real = design.expand

    def counted(*args, **kwargs):
        calls.append(args[0].name)
        return real(*args, **kwargs)

    monkeypatch.setattr(design, "expand", counted)
    return calls


def test_a_study_is_expanded_once_and_cannot_be_changed(expansions):
    study = load_study(ROOT / "search_spaces" / "race_quick.yaml")
    assert expansions == ["race_quick"]
    assert len(study.trials) == 18 and len(study.every_trial) == 48 and study.baseline == "placement=none"
    assert study.trial("placement=all", 7) in study.every_trial
    with pytest.raises(dataclasses.FrozenInstanceError):
        study.baseline = "placement=all"


def test_plan_expands_the_study_once(expansions, tmp_path, monkeypatch):
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["plan", str(ROOT / "search_spaces" / "quickstart.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    assert expansions == ["quickstart"]


def test_a_dataset_elsewhere_is_an_argument_not_a_setting_of_the_process(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\ndata: {dataset: folder, root: /nowhere/at/all}\n"
                    "search: {space: {model.placement: [none, all]}}\n")
    priced = Study.load(spec, data_on_disk=False)
    assert str(priced.spec.data.root) == "/nowhere/at/all"
    with pytest.raises(ValueError, match="no such file or folder: /nowhere/at/all"):
        Study.load(spec)  # the same process, right after: a run needs the data here
