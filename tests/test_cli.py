"""The command line: bad input is refused with exit status 2 before Ray or MLflow is touched."""

import json
import os
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
        # A study's size is bounded before anything expands it: a million seeds once went silent for minutes.
        (["--set", f"name={'n' * 101}"], "should have at most 100 characters"),
        (["--set", f"search.seeds={list(range(1001))}"], "1,001 seeds; a study runs at most 1,000"),
        (["--set", "search.seeds={start: 3, max: 1000000}", "--set", "search.race={margin: 0.05}"],
         "seeds: max is 1000000; a race runs 1 to 1000 seeds"),
        (["--set", f"search.space.train.lr={[round(1e-4 * (i + 1), 6) for i in range(1000)]}",
          "--set", f"search.seeds={list(range(101))}"], "2,000 arms x 101 seeds = 202,000 trials"),
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


# Nine levels of nine aliases: 400 bytes that expand to 400 million values.
ALIAS_BOMB = "name: tiny\na: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))

SPEC_FILE_FAULTS = {
    "not UTF-8": ("expected UTF-8 text", "name: tiny\n# caf\u00e9\n".encode("latin-1")),
    "an alias bomb": ("its aliases (*name) expand it to ", ALIAS_BOMB.encode()),
    "larger than a spec": ("is larger than 1 MB", b"name: tiny\n" + b"# padding\n" * 110_000),
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


@pytest.mark.parametrize("kind", ["/dev/zero", "a pipe", "a folder"])
def test_a_spec_path_that_is_not_a_file_exits_2_at_once(tmp_path, kind):
    if kind == "/dev/zero":
        path = Path("/dev/zero")
    elif kind == "a pipe":  # opening a FIFO for reading would wait for a writer forever
        path = tmp_path / "spec.yaml"
        os.mkfifo(path)
    else:
        path = tmp_path
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}: is a" in result.output and "not a spec file" in result.output


@pytest.mark.parametrize("command", [["report", "quickstart"], ["explain", "0123abcd", "--from-split", "test"]])
def test_an_out_folder_that_is_a_file_exits_2_before_any_work(tmp_path, command):
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    result = runner.invoke(app, [*command, "--out", str(taken), "--tracking-uri", str(tmp_path / "store")])
    assert result.exit_code == 2, result.output
    assert f"--out {taken}: is a file; give a folder" in " ".join(result.output.split())
    assert taken.read_text() == "mine" and not (tmp_path / "store").exists()


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


def test_ui_on_a_port_in_use_exits_2_naming_it_before_printing_a_link(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["ui", "--tracking-uri", str(tmp_path / "store"), "--port", str(port)])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert f"--port {port}: 127.0.0.1:{port} is not free" in said and f"--port {port + 1}" in said
    assert "http://" not in said and not (tmp_path / "store").exists()


def test_a_shipped_spec_is_found_by_name_from_any_folder_and_a_wrong_name_lists_them(tmp_path, monkeypatch):
    """The tests run in a folder of their own, so `quickstart` resolves to the checkout's search_spaces/."""
    result = CliRunner().invoke(app, ["plan", "quickstart", "--json"])
    assert result.exit_code == 0, result.output
    wrong = CliRunner().invoke(app, ["plan", "quickstrat"])
    said = " ".join(wrong.output.split())
    assert wrong.exit_code == 2 and "quickstrat: no such spec file, nor a shipped spec" in said
    assert "quickstart, race_quick" in said
    (tmp_path / "search_spaces").mkdir()  # a spec of one's own of that name comes first
    (tmp_path / "search_spaces" / "quickstart.yaml").write_text("name: mine\n")
    monkeypatch.chdir(tmp_path)
    mine = CliRunner().invoke(app, ["plan", "quickstart"])
    assert "search_spaces/quickstart.yaml: search: required key is missing" in " ".join(mine.output.split())
