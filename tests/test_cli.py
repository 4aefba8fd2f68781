"""The command line: bad input is refused with exit status 2 before Ray or MLflow is touched."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from typer.testing import CliRunner

from ablation.cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_ray_running(own_ray):
    """These tests check that a refused command started no Ray, so none may be running before them
    (the one the slow tests share), and any a command did start is shut down after them."""
    yield


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["--set", "train.epoch=1"], "train.epoch: unknown key"),
        (["--set", "train.epochs=one"], "train.epochs"),
        (["--set", "model.placement=layer1+layer7"], "model.placement"),
        (["--set", "model.reduction=5"], "model.reduction"),
        (["--set", "search.space={}"], "search.space"),
        (["--set", "resources.gpu=1000"], "resources.gpu"),
        (["--set", "noequals"], "--set"),
        (["--set", "train.epochs="], "--set train.epochs=: "),
        (["--set", "train.epochs=true"], "--set train.epochs=true: train.epochs: expected an integer, got true"),
        (["--set", "....=1"], "--set ....=1: "),
        (["--set", "search.space={a: [1], a: [2]}"], "key 'a' appears twice"),
    ],
)
def test_a_bad_spec_exits_2_naming_the_key_and_creates_nothing(tiny_spec, tmp_path, overrides, key):
    store = tmp_path / "store"
    result = runner.invoke(app, ["run", str(tiny_spec), "--tracking-uri", str(store), *overrides])
    assert result.exit_code == 2, result.output
    assert key in result.output
    assert not store.exists() and not Path("mlruns").exists() and not Path("ablate_runs").exists()
    if key != "resources.gpu":  # asking for absent GPUs is only known once Ray is up
        assert not ray.is_initialized()


SPEC_FILE_FAULTS = {
    "not UTF-8": ("expected UTF-8 text", "name: tiny\n# caf\u00e9\n".encode("latin-1")),
    "a key twice": ("key 'train' appears twice (lines 2 and 3)", b"name: tiny\ntrain: {epochs: 1}\ntrain: {epochs: 9}\n"),
}


@pytest.mark.parametrize("command", ["run", "plan", "inspect"])
@pytest.mark.parametrize("fault", SPEC_FILE_FAULTS)
def test_a_faulty_spec_file_exits_2_with_one_line_naming_it_before_anything_starts(tmp_path, command, fault):
    expected, content = SPEC_FILE_FAULTS[fault]
    path = tmp_path / "spec.yaml"
    path.write_bytes(content)
    result = runner.invoke(app, [command, str(path)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and f"{path}: {expected}" in result.output
    assert not Path("mlruns").exists() and not Path("ablate_runs").exists() and not ray.is_initialized()


def test_a_missing_spec_file_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "nope.yaml" in result.output


def test_help_is_fast_because_heavy_libraries_load_only_in_commands():
    code = "import sys, ablation.cli.main; print(sorted({'torch', 'ray', 'mlflow'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_plan_prices_a_study_without_running_it(tiny_spec, tmp_path):
    result = runner.invoke(app, ["plan", str(tiny_spec), "--json", "--set", "search.seeds=[0, 1]"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert [(t["arm"], t["seed"]) for t in plan["trials"]] == [
        ("placement=none", 0), ("placement=none", 1), ("placement=layer4", 0), ("placement=layer4", 1)]
    none, layer4 = plan["arms"]
    assert none["params_added"] == 0 and layer4["params_added"] > 0 and layer4["macs"] > none["macs"]
    assert plan["total_macs"] == 2 * (none["train_macs"] + layer4["train_macs"])
    assert plan["estimated_seconds"] > 0 and plan["speed"]["macs_per_second"] > 0
    assert not list(Path().glob("mlruns*")) and not list(Path().glob("ablate_runs*"))


def test_the_schema_an_editor_reads_lists_every_registered_type_and_its_options():
    from ablation.models import ATTENTIONS

    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    model = json.loads(result.output)["$defs"]["ModelSpec"]["properties"]
    assert model["attention"]["enum"] == list(ATTENTIONS.names())
    for name, kind in ATTENTIONS.items():
        for option in kind.options.model_fields:
            assert name in model[option]["description"], (name, option)
