"""The command line: bad input is refused with exit status 2 before Ray or MLflow is touched."""

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
