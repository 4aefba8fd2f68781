"""The command line: bad input is refused with exit status 2 before Ray or MLflow is touched."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from typer.testing import CliRunner

from ablation.cli import app

runner = CliRunner()


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
    ray.shutdown()


def test_a_missing_spec_file_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "nope.yaml" in result.output


def test_help_is_fast_because_heavy_libraries_load_only_in_commands():
    code = "import sys, ablation.cli; print(sorted({'torch', 'ray', 'mlflow'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plan_prices_a_study_without_running_it(tiny_spec, tmp_path):
    result = runner.invoke(app, ["plan", str(tiny_spec), "--json", "--set", "search.seeds=[0, 1]"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert [(t["arm"], t["seed"]) for t in plan["trials"]] == [
        ("placement=none", 0), ("placement=none", 1), ("placement=layer4", 0), ("placement=layer4", 1)]
    none, layer4 = plan["arms"]
    assert none["params_added"] == 0 and layer4["params_added"] > 0 and layer4["macs"] > none["macs"]
    assert plan["total_macs"] == 2 * (none["train_macs"] + layer4["train_macs"])
    assert plan["estimated_seconds"] > 0
    # The machine's speed is measured once, then read back.
    cached = json.loads((Path(os.environ["ABLATE_CACHE_DIR"]) / "calibration.json").read_text())
    assert list(cached.values()) == [plan["macs_per_second"]]
    assert not list(Path().glob("mlruns*")) and not list(Path().glob("ablate_runs*"))
