"""The command line teaches: every help shows real examples and clean usage, `-h` and `--version` work,
a run points at the next step, start-up noise stays hidden, and tables fit an 80-column terminal."""

import io
import logging
import re
import shlex
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import typer.rich_utils
from rich.console import Console
from typer.main import get_command
from typer.testing import CliRunner

from ablation.cli import main as cli
from ablation.core.memory import MemoryFit

from ablation.cli import help as cli_help

from ablation.cli import views
from ablation.cli.main import app

REPO = Path(__file__).resolve().parents[1]
COMMANDS = [["run"], ["resume"], ["inspect"], ["plan"], ["schema"], ["report"], ["runs"], ["explain"], ["ui"], ["data"],
            ["data", "summary"], ["data", "generate"], []]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _eighty_columns(monkeypatch):
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", 80)


def _help(*args: str) -> str:
    result = runner.invoke(app, list(args), prog_name="ablate")
    assert result.exit_code == 0, result.output
    return result.output


def _command(path: list[str]):
    command = get_command(app)
    for name in path:
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "ablate")
def test_every_help_shows_its_examples_and_a_clean_usage_line(path):
    shown = _help(*path, "--help")
    assert _help(*path, "-h") == shown
    usage = next(line for line in shown.splitlines() if "Usage:" in line)
    assert not re.search(r"[{}]|\[\[|<\w+>", usage), usage
    assert not re.search(r"<(bool|str|path|int|list)", shown), shown
    name = path[-1] if path else "ablate"
    assert cli_help.EXAMPLES[name], f"{name} has no example"
    lines = [line.strip() for line in shown.splitlines()]
    for _, example in cli_help.EXAMPLES[name]:
        assert example in lines, f"{example!r} is not shown on a line of its own in:\n{shown}"


@pytest.mark.parametrize(("path", "usage"), [
    (["run"], "ablate run [OPTIONS] SPEC"), (["inspect"], "ablate inspect [OPTIONS] [SPEC]"),
    (["explain"], "ablate explain [OPTIONS] RUN_ID..."), (["report"], "ablate report [OPTIONS] STUDY")])
def test_usage_reads_as_typed(path, usage):
    assert f"Usage: {usage}" in " ".join(_help(*path, "--help").split())


def test_flags_show_no_type_and_options_name_their_value():
    shown = " ".join(_help("run", "--help").split())
    assert "--tracking-uri URI" in shown and "--set KEY=VALUE" in shown and "--address HOST:PORT" in shown
    assert re.search(r"--verbose also show", shown)


def _examples():
    return [(name, example) for name, pairs in cli_help.EXAMPLES.items() for _, example in pairs]


@pytest.mark.parametrize(("name", "example"), _examples(), ids=[e for _, e in _examples()])
def test_every_example_parses_and_its_spec_loads(name, example, monkeypatch):
    """Examples are real: the command exists, takes those options, and the spec it names (a shipped one,
    by name, found from any folder: the test runs in a folder of its own) loads with its overrides."""
    from ablation.core import load_model_and_data, load_spec

    words = shlex.split(example)
    words = words[:words.index(">")] if ">" in words else words
    assert words[0] == "ablate"
    words = words[1:]
    path = words[:2] if words[0] == "data" else words[:1]
    command = _command(path)
    args = words[len(path):]
    context = command.make_context(" ".join(["ablate", *path]), list(args))
    params = context.params
    spec = params.get("spec_path")
    if spec is not None:
        assert spec.is_file() and spec.parent == REPO / "search_spaces", spec
    if path[0] in ("run", "plan"):
        load_spec(spec, params["overrides"])
    elif path[0] == "inspect":
        load_model_and_data(spec, params["overrides"])


def test_version_prints_the_version_the_runs_record():
    """From a checkout, the commit too (`0.1.0+g54c5ff0c0611`), as the parent run's ablate version tag says."""
    from ablation.core.names import VERSION_TAG
    from ablation.tracking.provenance import study_provenance

    result = runner.invoke(app, ["--version"])
    printed = result.output.strip()
    assert result.exit_code == 0 and printed.startswith(f"ablate {version('ablate')}")
    assert printed == f"ablate {study_provenance()[f'{VERSION_TAG}ablate']}"
    assert "+g" in printed or not (Path(__file__).resolve().parents[1] / ".git").exists()


def test_a_finished_run_ends_with_the_report_command(monkeypatch, tmp_path):
    from ablation.tracking import resolve_uri

    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=200))
    monkeypatch.setattr(cli, "_print_ranking", lambda spec, outcome: None)
    spec = SimpleNamespace(name="quickstart", spec=SimpleNamespace(name="quickstart"))

    def conclude(uri):
        outcome = SimpleNamespace(race=None, stopped_early={}, diverged=[], unfinished=[], errors={}, memory_kills={},
                                  tracking_uri=uri)
        cli._conclude(spec, outcome, resume_hint="")
        return out.getvalue().strip().splitlines()[-1]

    assert conclude(resolve_uri(None)).endswith("ablate report quickstart")
    other = resolve_uri(str(tmp_path / "elsewhere.db"))
    assert conclude(other).endswith(f"ablate report quickstart --tracking-uri {other}")


@pytest.mark.slow
def test_mlflow_creates_its_store_quietly_unless_verbose(tmp_path):
    code = ("import sys; from ablation.cli import help as cli_help; cli_help.quiet_libraries(sys.argv[1] == 'verbose'); "
            "import mlflow; mlflow.MlflowClient(sys.argv[2]).search_experiments()")

    def stderr(mode: str) -> str:
        uri = f"sqlite:///{tmp_path / mode}.db"
        return subprocess.run([sys.executable, "-c", code, mode, uri], capture_output=True, text=True,
                              check=True).stderr

    assert "Creating initial MLflow database tables" in stderr("verbose")  # the noise is real
    assert "MLflow database" not in stderr("quiet") and "Updating database tables" not in stderr("quiet")


def test_rays_token_warning_is_silenced_unless_verbose():
    name = "ray._private.authentication.authentication_token_setup"
    logger = logging.getLogger(name)
    saved = logger.level
    try:
        logger.setLevel(logging.NOTSET)
        cli_help.quiet_libraries(verbose=True)
        assert logger.level == logging.NOTSET
        cli_help.quiet_libraries(verbose=False)
        assert not logger.isEnabledFor(logging.WARNING)
    finally:
        logger.setLevel(saved)


# Tables at 80 columns: names wrap only after `,` or `+`, figures stay whole.

PLACEMENTS = ["none", "layer1", "layer1+layer2", "layer1+layer2+layer3", "layer2+layer3+layer4", "all"]


def _rendered(draw) -> str:
    console = Console(width=80, record=True, file=io.StringIO())
    draw(console)
    return console.export_text()


def _fits(text: str, names: list[str]) -> None:
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80, text
    assert "…" not in text, text
    for name in names:  # each part of a name (up to and including a `,` or `+`) stays on one line
        for part in re.split(r"(?<=[,+])", name):
            assert any(part in line for line in lines), f"{part!r} of {name!r} was split:\n{text}"


def _study(axes=("model.placement",)):
    race = SimpleNamespace(alpha=0.05, margin=0.01, start=2)
    spec = SimpleNamespace(name="placement", metric="val_macro_f1", mode="max",
                           data=SimpleNamespace(image_size=64), train=SimpleNamespace(epochs=30),
                           search=SimpleNamespace(seeds=[0, 1, 2], design="grid", race=race),
                           resources=SimpleNamespace(cpu=2))
    arms = [(f"placement={p}", {"model.placement": p}) for p in PLACEMENTS]
    return SimpleNamespace(spec=spec, name="placement", axes=list(axes), baseline="placement=none", factorial=None,
                           arms=arms, trials=[(arm, seed) for arm, _ in arms for seed in spec.search.seeds])


def test_the_plan_fits_80_columns():
    arms = [f"placement={p}" for p in PLACEMENTS]
    trials = [SimpleNamespace(id=f"{i:010x}", arm=a, seed=s) for i, (a, s) in enumerate((a, s) for a in arms
                                                                                      for s in range(3))]
    costs = [SimpleNamespace(arm=a, params_total=23_520_000 + i * 1_300_000, params_added=i * 1_300_000,
                             macs=333_660_000 + i * 18e6, train_macs=192.59e12 + i * 1e13) for i, a in enumerate(arms)]
    speed = SimpleNamespace(cached=False, under_load=True, busy=0.6, spread=0.3, measured="2026-12-02")
    plan = SimpleNamespace(trials=trials, arms=costs, total_macs=10.25e15, macs_per_second=1.2e9, concurrent=1,
                           estimated_seconds=8e6, most_macs=None, speed=speed, cpus=16,
                           memory=MemoryFit(3000, False, 16, 23_000),  # the longer line: it does not fit
                           data_note="/data/aihub is not on this machine: the splits were priced at the spec's sizes")
    _fits(_rendered(lambda c: views.plan(c, _study(), plan, gpu=("a100", 312e12, 0.3, 12.5), list_trials=True)), arms)


def test_a_fractions_design_and_aliases_fit_80_columns():
    from ablation.core import SearchSpec
    from ablation.core.factorial import build

    keys = [f"model.placement.layer{i}" for i in range(1, 5)] + ["model.zero_init", "data.augment.flip"]
    design = build(SearchSpec(design="fractional", resolution=4, space={key: [False, True] for key in keys}))
    text = _rendered(lambda c: views.two_level(c, design))
    _fits(text, ["model.placement.layer1", "placement.layer1 x placement.layer2"])
    assert "2^(6-2) fractional factorial, resolution IV: 16 of the 64 arms" in " ".join(text.split())


@pytest.mark.parametrize(("axes", "levels"), [
    (("model.placement",), [(p,) for p in PLACEMENTS]),
    (("model.arch", "model.attention"), [(a, b) for a in ("resnet50", "resnet101") for b in ("none", "identity_cbam")]),
], ids=["placement.yaml", "paper.yaml"])
def test_the_ranking_fits_80_columns(axes, levels):
    summaries = [SimpleNamespace(config=dict(zip(axes, level)), seeds=3, failed=i % 2, killed=0, mean=0.6417,
                                 std=0.0321, test_accuracy=0.7012, test_macro_f1=0.6543, params_total=30_150_000)
                 for i, level in enumerate(levels)]
    text = _rendered(lambda c: views.ranking(c, _study(axes), summaries))
    _fits(text, [value for level in levels for value in level])
    assert "0.6417 ± 0.0321" in text and " 3/4 " in text


def test_the_race_fits_80_columns():
    """The end of a race's `ablate run`: each arm's answer on one line, its margin in seed SDs."""
    from ablation.report.race import read_race

    study = _study()
    study.spec.search = SimpleNamespace(seeds=list(range(8)), race=SimpleNamespace(alpha=0.05, margin=0.15, start=3,
                                                                             mode="baseline"))
    rng = np.random.default_rng(0)
    base = rng.binomial(200, 0.6, 8) / 200
    values = {"placement=none": dict(enumerate(base))}
    for i, p in enumerate(p for p in PLACEMENTS if p != "none"):
        values[f"placement={p}"] = dict(enumerate(base + rng.integers(-6, 7, 8) / 200 + 0.01 * (i % 3)))
    race = read_race(study, values, {})
    text = _rendered(lambda c: views.race(c, race, "validation macro-F1"))
    _fits(text, list(values)[1:])
    assert "paired seed SDs" in text and "equivalent at 3" in text
    # The report's race table, in a terminal: no header or name folded (it read `differenc`/`e` and
    # `placement=`/`layer1`), the interval beside its difference.
    from ablation.report.race import race_table

    report = _rendered(lambda c: views.show(c, race_table(race, "validation macro-F1", compact=True)))
    _fits(report, list(values)[1:])
    assert "difference [interval]" in report and "seeds" in report


def test_explanation_scores_fit_80_columns():
    names = [f"placement={p},seed=0" for p in PLACEMENTS]
    explained = [SimpleNamespace(trained=SimpleNamespace(run_id=str(i), name=n)) for i, n in enumerate(names)]
    keys = [f"{m}_{g}" for m in ("cue_energy", "pointing_game") for g in ("all", "occluded", "unoccluded")]
    scores = {str(i): {k: 0.5 for k in keys} | {"cue_area_all": 0.2} for i in range(len(names))}
    _fits(_rendered(lambda c: views.cue_scores(c, SimpleNamespace(explained=explained, scores=scores))), names)
