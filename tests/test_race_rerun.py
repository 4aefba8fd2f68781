"""A race keeps the settings it decided with: a re-run (or a resume) that changes them is refused with
exit status 2 before Ray starts or anything is written, naming each change; the same settings pass.

One real race (two arms, two seeds) is run once for the module; every edited re-run reads its store."""

import copy
import json
import shutil

import pytest
import ray
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ablation.driver import race_settings
from ablation.cli.main import app
from ablation.core import load_study

pytestmark = pytest.mark.slow  # each test runs real studies under Ray

BASELINE = "lr=1e-12"
SPEC = {"name": "kept", "model": {"arch": "resnet18", "attention": "none", "placement": "none"},
        "data": {"image_size": 32, "train_per_class": 8, "val_per_class": 4, "test_per_class": 4},
        "train": {"epochs": 1, "batch_size": 16},
        "search": {"space": {"train.lr": [1e-12, 0.01]}, "seeds": {"start": 2, "max": 2},
                   "race": {"margin": 0.05, "baseline": BASELINE}},
        "resources": {"cpu": 1}, "metric": "val_loss", "mode": "min"}


@pytest.fixture(scope="module")
def raced(tmp_path_factory):
    """A finished race's store, spec and study folder (the run takes ~20 s, so the module shares it)."""
    folder = tmp_path_factory.mktemp("raced")
    with pytest.MonkeyPatch.context() as patch:  # what conftest's per-test isolation does, for the module
        patch.setenv("ABLATE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.chdir(folder)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        spec = folder / "kept.yaml"
        spec.write_text(yaml.safe_dump(SPEC))
        command = ["run", str(spec), "--tracking-uri", uri, "--storage", str(folder / "runs")]
        result = CliRunner().invoke(app, command)  # on the Ray the session's tests share
        assert result.exit_code == 0, result.output
        yield {"uri": uri, "spec": spec, "storage": folder / "runs", "command": command}


def _store(uri: str) -> tuple[int, dict, dict]:
    """The study's run count, and its parent run's params and tags: all that a re-run would write to."""
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("kept").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("ablate.kind") == "study")
    return len(runs), dict(parent.data.params), dict(parent.data.tags)


def _edited(tree: dict, edit) -> dict:
    tree = copy.deepcopy(tree)
    edit(tree)
    return tree


EDITS = {
    "margin": (lambda t: t["search"]["race"].update(margin=0.1), [], "search.race.margin: 0.05 -> 0.1"),
    "max seeds": (lambda t: t["search"]["seeds"].update(max=3), [], "search.seeds: [0, 1] -> [0, 1, 2]"),
    "an added arm": (lambda t: t["search"]["space"]["train.lr"].append(0.1), [],
                     'arms: ["lr=0.01", "lr=1e-12"] -> ["lr=0.01", "lr=0.1", "lr=1e-12"] (added ["lr=0.1"])'),
    "the baseline": (lambda t: t["search"]["race"].update(baseline="lr=0.01"), [],
                     "search.race.baseline: lr=1e-12 -> lr=0.01"),
    "the metric, by --set": (lambda t: None, ["--set", "metric=val_accuracy", "--set", "mode=max"],
                             "metric: val_loss -> val_accuracy; mode: min -> max"),
    "no race": (lambda t: t["search"].update(seeds=[0, 1], race=None), [], "-> null"),
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_a_rerun_that_changes_a_race_setting_is_refused_before_ray_or_any_write(raced, tmp_path, edit, own_ray):
    change, flags, named = edit
    spec = tmp_path / "kept.yaml"  # the same study, edited
    spec.write_text(yaml.safe_dump(_edited(SPEC, change)))
    before = _store(raced["uri"])

    result = CliRunner().invoke(app, ["run", str(spec), *flags, *raced["command"][2:]])

    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert named in text and "--set name=NEW_NAME" in text and "Traceback" not in text
    assert not ray.is_initialized()
    assert _store(raced["uri"]) == before  # no run, and not even a tag of the parent's was written


def test_the_same_race_settings_pass_and_are_the_parents_params(raced, tmp_path):
    from ablation.driver.launch import _check_race_unchanged, _recorded

    count, params, _ = _store(raced["uri"])
    assert {k: params[k] for k in ("search.race.margin", "search.race.start", "search.race.baseline", "metric",
                                   "mode", "search.race.seeds", "search.race.arms")} == {
        "search.race.margin": "0.05", "search.race.start": "2", "search.race.baseline": BASELINE,
        "metric": "val_loss", "mode": "min", "search.race.seeds": "[0, 1]",
        "search.race.arms": '["lr=1e-12", "lr=0.01"]'}
    # A re-run as it was, or changing only what the race does not decide by (a changed epoch count
    # gives new trials of the same arms, as before), is not refused.
    for overrides in ([], ["train.epochs=2"], ["resources.max_failures=3"], ["search.race.margin=0.050"]):
        planned = load_study(raced["spec"], overrides)
        _check_race_unchanged(raced["uri"], planned, _recorded(raced["uri"], planned.name))
    assert _store(raced["uri"])[0] == count


def test_a_resume_whose_saved_spec_changed_the_race_is_refused(raced, tmp_path, own_ray):
    folder = tmp_path / "kept"
    shutil.copytree(raced["storage"] / "kept", folder)
    state = json.loads((folder / "ablate_study.json").read_text())
    state["spec"]["search"]["race"]["alpha"] = 0.2
    (folder / "ablate_study.json").write_text(json.dumps(state))
    before = _store(raced["uri"])

    result = CliRunner().invoke(app, ["resume", str(folder)])

    assert result.exit_code == 2, result.output
    assert "search.race.alpha: 0.05 -> 0.2" in " ".join(result.output.split())
    assert not ray.is_initialized() and _store(raced["uri"]) == before


def test_the_comparison_reads_settings_as_values_and_compares_only_what_is_stored():
    stored = {"search.race.margin": "0.1", "search.race.start": "3", "search.race.seeds": "[0, 1, 2, 3]",
              "search.race.arms": '["a", "b", "c"]', "metric": "val_macro_f1"}
    same = stored | {"search.race.margin": "0.10", "search.race.start": "3.0", "search.race.alpha": "0.01",
                     "mode": "min", "search.race.arms": '["c", "b", "a"]'}
    assert race_settings.changes(stored, same) == []  # spelled otherwise, reordered arms, or not stored
    assert race_settings.changes(stored, same | {"search.race.seeds": "[1, 0, 2, 3]",
                                                 "search.race.arms": '["a", "d"]'}) == [
        ("search.seeds", "[0, 1, 2, 3]", "[1, 0, 2, 3]"),
        ("arms", '["a", "b", "c"]', '["a", "d"] (added ["d"]; removed ["b", "c"])')]
    # An older version's race: its baseline tag and seeds; its arms from the trial runs, removals only.
    old = race_settings.recorded({"search.seeds": "[0, 1]", "train.lr": "0.1"}, baseline_tag="a")
    assert old == {"search.race.baseline": "a", "search.race.seeds": "[0, 1]"}
    new = {"search.race.baseline": "a", "search.race.seeds": "[0, 1]", "search.race.arms": '["a", "b", "x"]'}
    assert race_settings.changes(old, new, arms_run={"a", "b"}) == []
    assert race_settings.changes(old, new, arms_run={"a", "c"}) == [
        ("arms", '["a", "c"] (the arms with runs)', '["a", "b", "x"] (removed ["c"])')]
    # A study that never raced has nothing to keep; a race whose spec drops the race is refused.
    assert race_settings.recorded({"search.seeds": "[0]", "metric": "val_loss"}) == {}
    assert race_settings.changes({}, new) == []
    assert race_settings.changes({"search.race.margin": "0.1"}, {}) == [("search.race", "{margin: 0.1}", "null")]
