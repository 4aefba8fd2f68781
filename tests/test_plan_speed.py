"""`ablate plan` quickly: a model's costs composed from the plain ResNet's and each placed module's,
exactly what counting the whole model gives, and a warm plan that imports no torch."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ablation import accounting, plan
from ablation.core import ModelSpec, load_study

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "search_spaces").glob("*.yaml"))
_whole: dict[tuple[str, int, int], dict[str, int]] = {}  # studies share arms (placement, placement_race)


def whole(spec: ModelSpec, num_classes: int, image_size: int) -> dict[str, int]:
    key = (spec.model_dump_json(), num_classes, image_size)
    if key not in _whole:
        _whole[key] = accounting._count(spec, num_classes, image_size)
    return _whole[key]


def mismatch(spec: ModelSpec, num_classes: int, image_size: int) -> str | None:
    composed, counted = accounting._composed(spec, num_classes, image_size), whole(spec, num_classes, image_size)
    same = composed["params_total"] == counted["params_total"] and composed["macs"] == counted["macs"]
    return None if same else f"{spec.model_dump(exclude_defaults=True)}: composed {composed}, whole model {counted}"


@pytest.mark.slow
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_shipped_arm_costs_exactly_what_its_whole_model_counts(path):
    study = load_study(path, ["data.dataset=synthetic", "data.root=null"] if path.stem == "paper" else [],
                       data_on_disk=False)
    first = {}
    for trial in study.trials:
        first.setdefault(trial.arm, trial)
    wrong = [m for t in first.values()
             if (m := mismatch(t.spec.model, len(plan._classes(t.spec.data)), t.spec.data.image_size))]
    assert not wrong, "\n".join(wrong)


R50 = {"arch": "resnet50"}
STAGEWISE = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}


@pytest.mark.parametrize("settings", [
    # per-stage reduction and count, a count of 0 at a stage, stacks of modules
    R50 | {"attention": "identity_cbam", "reduction": STAGEWISE, "count": {"layer1": 2, "layer2": 0, "layer3": 1,
                                                                           "layer4": 3}},
    R50 | {"attention": "identity_cbam", "placement": "layer1.0+layer3.1+layer4", "count": 2},
    R50 | {"attention": "identity_cbam", "placement": "layer3+layer3.1"},  # after the stage and after its block 1
    R50 | {"attention": "identity_cbam", "bottleneck": False, "skip": False, "gates": "parallel", "pooling": "max",
           "kernel_size": 3},
    R50 | {"attention": "identity_cbam", "gates": "spatial", "zero_init": True},
    # block types: every block of a placed stage, or one block
    R50 | {"attention": "cbam", "placement": "all"},
    R50 | {"attention": "cbam", "placement": "layer3.1"},
    R50 | {"attention": "cbam", "placement": "layer3+layer3.1"},  # block 1 is filled once, not twice
    R50 | {"attention": "cbam", "gates": "parallel", "pooling": "avg", "kernel_size": 5, "reduction": STAGEWISE},
    R50 | {"attention": "cbam", "count": {"layer1": 0, "layer2": 2, "layer3": 1, "layer4": 0}},
    R50 | {"attention": "se", "reduction": STAGEWISE},
    R50 | {"attention": "se", "placement": "layer2.0+layer4"},
    R50 | {"attention": "eca"},
    R50 | {"attention": "eca", "placement": "layer4.2", "count": 3},
    # BAM: `all` is layer1-3; layer4 only when named
    R50 | {"attention": "bam"},
    R50 | {"attention": "bam", "placement": "layer1+layer2+layer3+layer4"},
    R50 | {"attention": "bam", "variant": "paper", "dilated_convs": 3, "dilation": 2, "reduction": STAGEWISE},
    R50 | {"attention": "bam", "channel_gate": False, "placement": "layer2.1"},
    R50 | {"attention": "bam", "channel_gate": False, "spatial_gate": False},
    # basic blocks
    {"arch": "resnet18", "attention": "cbam"},
    {"arch": "resnet18", "attention": "bam", "placement": "layer4"},
    {"arch": "resnet34", "attention": "identity_cbam", "placement": "layer2.3+layer3", "count": 2},
    R50 | {"attention": "none"},
], ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items() if k != "arch" or v != "resnet50"))
def test_composed_costs_equal_the_whole_models_count(settings):
    assert mismatch(ModelSpec(**settings), 6, 64) is None


@pytest.mark.parametrize("attention", ["identity_cbam", "cbam", "bam", "eca"])
@pytest.mark.parametrize(("num_classes", "image_size"), [(1000, 45), (2, 97)])
def test_composed_costs_follow_the_input_size_and_the_classes(attention, num_classes, image_size):
    """Odd sizes round each stage's maps down differently; the modules are counted at the shapes they get."""
    spec = ModelSpec(arch="resnet50", attention=attention, placement="layer1+layer2.1+layer4", count=2)
    assert mismatch(spec, num_classes, image_size) is None


def test_a_module_that_changes_its_inputs_shape_gets_its_model_counted_whole(monkeypatch):
    """Composition holds because each module keeps its input's shape; one that does not (here a
    stride-2 convolution after layer2, so layer3 and layer4 run on smaller maps) is caught."""
    from torch import nn

    from ablation import models

    monkeypatch.setitem(models.BUILDERS, "identity_cbam", lambda channels, **options: nn.Conv2d(channels, channels, 1, stride=2))
    accounting._module_costs.cache_clear()  # it remembers the real module at these shapes
    try:
        spec = ModelSpec(arch="resnet50", attention="identity_cbam", placement="layer2")
        assert accounting._composed(spec, 6, 64)["macs"] == accounting._count(spec, 6, 64)["macs"]
    finally:
        accounting._module_costs.cache_clear()


def test_static_costs_are_cached_per_model_and_say_what_the_attention_adds(monkeypatch):
    spec = ModelSpec(arch="resnet18", placement="layer4")
    costs = accounting.static_costs(spec, num_classes=6, image_size=32)
    vanilla = accounting.static_costs(ModelSpec(arch="resnet18", attention="none"), num_classes=6, image_size=32)
    assert vanilla["params_added"] == 0
    assert costs["params_added"] == costs["params_total"] - vanilla["params_total"] > 0
    monkeypatch.setattr(accounting, "_composed", lambda *args: pytest.fail("counted again, not read back"))
    assert accounting.static_costs(spec, num_classes=6, image_size=32) == costs


def test_a_warm_plan_imports_no_torch(tiny_spec, tmp_path):
    """Every arm's costs and the speed in the cache: `ablate plan` reads them without torch."""
    study = load_study(tiny_spec)
    for trial in study.trials:
        accounting.static_costs(trial.spec.model, num_classes=6, image_size=trial.spec.data.image_size)
    calibration = {"macs_per_second": 1e10, "spread": 0.01, "busy": 0.0, "measured": "2026-12-01"}
    (accounting.cache_dir() / "calibration.json").write_text(json.dumps({plan._calibration_key(int(study.spec.resources.cpu)): calibration}))
    code = ("import sys; from typer.testing import CliRunner; from ablation.cli.main import app; "
            f"result = CliRunner().invoke(app, ['plan', {str(tiny_spec)!r}, '--json']); "
            "assert result.exit_code == 0, result.output; print(result.output); sys.exit('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["speed"]["cached"]
