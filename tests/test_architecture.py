"""The layers of `ablation`, read from its source with `ast` (docs/architecture.md draws them): every
import, at the top of a module, inside a function or under TYPE_CHECKING, points down a layer or stays
within its own package, and no import goes round in a circle."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ablation"
sys.path.insert(0, str(ROOT / "docs"))
import layers  # noqa: E402  (docs/layers.py: the floors, and docs/architecture.md's "Where things live")

# Each part of the package and its floor: a part imports only parts on lower floors, and itself.
LAYERS = layers.FLOORS
LONGEST_CHAIN = 6  # parts, counting both ends


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of `ablation` that `name` imports, wherever in the file the import is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            # `from ablation.core import design` imports the module ablation.core.design; `from
            # ablation.core import Study` a name of ablation.core
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import ablation.core.catalog.X` -> the module itself
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def part(module: str) -> str | None:
    """The part of the package a module belongs to (`ablation.core.schema` -> core); None for the package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_part_of_the_package_has_a_floor():
    assert {part(m) for m in modules()} - {None} == set(LAYERS)


def test_imports_point_down_the_layers():
    upward = []
    for module, targets in graph().items():
        for target in targets:
            here, there = part(module), part(target)
            if here is None:  # the package itself: `ablation.load_study` is core's, and light
                if there != "core":
                    upward.append(f"ablation/__init__.py imports {target}")
            elif there is None:
                upward.append(f"{module} imports the package root ablation")
            elif here != there and LAYERS[there] >= LAYERS[here]:
                upward.append(f"{module} (floor {LAYERS[here]}) imports {target} (floor {LAYERS[there]})")
    assert not upward, "\n".join(sorted(upward))


def test_no_import_goes_round_in_a_circle():
    edges = graph()
    circles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join(path[path.index(target):] + [module, target]) if target in path
                               else f"{module} -> {target}")
            elif target not in state:
                visit(target, path + [module])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [])
    assert not circles, "\n".join(circles)


def test_the_longest_import_chain_between_parts_is_short():
    """The drawing's chain: from the CLI down to core, through at most LONGEST_CHAIN parts."""
    edges: dict[str, set[str]] = {}
    for module, targets in graph().items():
        if part(module) is not None:
            edges.setdefault(part(module), set()).update(part(t) for t in targets if part(t) not in (None, part(module)))
    longest: dict[str, list[str]] = {}

    def chain(name: str) -> list[str]:
        if name not in longest:
            longest[name] = [name, *max((chain(t) for t in edges.get(name, ())), key=len, default=[])]
        return longest[name]

    deepest = max((chain(name) for name in edges), key=len)
    assert len(deepest) <= LONGEST_CHAIN, " -> ".join(deepest)


LONGEST_MODULE = 400  # lines: one responsibility per module; a longer one is doing two jobs


def test_no_module_is_long():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > LONGEST_MODULE}
    assert not long, long


@pytest.mark.parametrize("command", [["--help"], ["schema"], ["plan", "--help"]])
def test_the_light_commands_import_no_torch(command):
    code = ("import sys; from typer.testing import CliRunner; from ablation.cli.main import app; "
            f"result = CliRunner().invoke(app, {command!r}); assert result.exit_code == 0, result.output; "
            "heavy = [m for m in ('torch', 'mlflow', 'ray') if m in sys.modules]; print(heavy); sys.exit(bool(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_study_loads_without_torch_mlflow_or_ray():
    code = """
import sys
from pathlib import Path
import ablation
for path in sorted(Path("search_spaces").glob("*.yaml")):
    study = ablation.load_study(path, data_on_disk=False)
    assert study.trials and study.every_trial
heavy = [m for m in ("torch", "mlflow", "ray") if m in sys.modules]
assert not heavy, heavy
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow  # trains, in a process of its own that imports what a worker imports
def test_a_trials_worker_trains_without_torchvision_torchmetrics_or_dynamo(tmp_path):
    """Each would cost every trial's worker memory and start-up for code a trial does not run
    (torchvision loads its detection ops, torchmetrics loads torchvision and scipy, torch._dynamo
    sympy and triton): the ResNet and the F1 are written out, torchvision's transforms are imported
    only for the augmentations beyond a flip, and the optimizers step without dynamo (ablation.optim)."""
    code = """
import sys
import torch
from ablation import engine
from ablation.core import load_study
import ablation.driver.trainable
study = load_study(sys.argv[1], ["train.epochs=1", "data.image_size=16", "data.train_per_class=2",
                                 "data.val_per_class=1", "data.test_per_class=1"])
engine.fit(study.trials[0].spec, 0, on_epoch=lambda metrics, checkpoint: None)
loaded = [m for m in ("torchvision", "torchmetrics", "torch._dynamo") if m in sys.modules]
assert not loaded, loaded
"""
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / "search_spaces" / "quickstart.yaml")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_architecture_page_says_where_things_live_as_the_tree_has_them():
    assert layers.readme_block((ROOT / "docs" / "architecture.md").read_text()) == layers.block(), \
        "docs/architecture.md's 'Where things live' is stale: run python docs/layers.py --write"


def test_the_architecture_page_lists_every_floor():
    page = (ROOT / "docs" / "architecture.md").read_text()
    for part, floor in LAYERS.items():
        assert f"| {floor} | " in page and f"`{part}`" in page, part


@pytest.mark.slow
def test_the_readmes_notebook_example_runs(tmp_path):
    """The README's notebook example, verbatim, against a store holding the quickstart study's trials
    (logged as `ablate run` logs them, with known scores)."""
    import re
    import shutil

    import yaml

    from ablation import tracking
    from ablation.core import load_study

    text = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- notebook-example.*?```python\n(.*?)```", text, re.S).group(1)
    (tmp_path / "search_spaces").mkdir()
    shutil.copy(ROOT / "search_spaces" / "quickstart.yaml", tmp_path / "search_spaces")
    study = load_study(ROOT / "search_spaces" / "quickstart.yaml")
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    experiment_id, parent = tracking.open_study(uri, study.name, params={}, spec_yaml=yaml.safe_dump(
        study.spec.model_dump(mode="json")))
    scores = {}
    for i, trial in enumerate(study.trials):
        run = tracking.open_trial(uri, experiment_id, parent.run_id, name=trial.name, trial_id=trial.id,
                                  params=trial.params())
        scores[trial.arm] = 0.5 + i / 100
        run.run.log(params=run.params)
        run.run.log_metrics({"test_macro_f1": scores[trial.arm], "test_accuracy": 0.6})
        run.run.finish()
    parent.finish("FINISHED")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{len(study.trials)} {study.arm_names}")
    for arm, score in scores.items():
        assert re.search(rf"{re.escape(arm)}\s+{score:.2f}", done.stdout), (arm, done.stdout)
