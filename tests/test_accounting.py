"""Cost accounting: parameters, MACs (torch's flop counter) and latency, and `ablate inspect`."""

import json

import pytest
from typer.testing import CliRunner

from ablation.accounting import count_macs, model_costs
from ablation.cli.main import app
from ablation.models import build_model
from ablation.core import ModelSpec


def test_resnet50_at_224_pixels_costs_the_published_4_1_giga_macs():
    model = build_model(ModelSpec(arch="resnet50", attention="none"), num_classes=1000)
    assert count_macs(model, 224) == pytest.approx(4.09e9, rel=0.005)


def test_costs_report_what_the_attention_adds_over_the_same_vanilla_resnet():
    spec = ModelSpec(arch="resnet18", placement="layer4")
    costs = model_costs(build_model(spec, num_classes=6), spec, num_classes=6, image_size=32)
    vanilla = model_costs(build_model(ModelSpec(arch="resnet18", attention="none"), num_classes=6),
                          ModelSpec(arch="resnet18", attention="none"), num_classes=6, image_size=32)
    assert vanilla["params_added"] == 0
    assert costs["params_added"] == costs["params_total"] - vanilla["params_total"] > 0
    assert costs["macs"] > vanilla["macs"] and costs["latency_ms"] > 0


def test_inspect_prints_one_json_object_with_the_costs_and_the_latency_when_asked():
    args = ["inspect", "--set", "model.arch=resnet18", "--set", "data.image_size=32", "--json"]
    result = CliRunner().invoke(app, [*args, "--latency"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert {"params", "params_added", "macs", "latency_ms", "input_size"} <= figures.keys()
    assert figures["input_size"] == 32 and figures["params"] == figures["params_total"]
    untimed = json.loads(CliRunner().invoke(app, args).output)
    assert "latency_ms" not in untimed and {k: untimed[k] for k in ("params", "macs")} == {
        k: figures[k] for k in ("params", "macs")}


def test_inspect_gives_macs_in_plans_units_and_says_latency_was_not_timed():
    result = CliRunner().invoke(app, ["inspect", "--set", "model.arch=resnet18", "--set", "data.image_size=32",
                                      "--set", "model.placement=none"])
    assert result.exit_code == 0, result.output
    assert "MACs        37.01 MMAC per image" in result.output  # as `ablate plan` prints it, not 0.037 G
    assert "latency     not timed (--latency times it)" in result.output


def test_inspect_refuses_settings_it_cannot_use_with_exit_2():
    result = CliRunner().invoke(app, ["inspect", "--set", "model.kernel_size=9"])
    assert result.exit_code == 2 and "model.kernel_size" in result.output


def inspect(*settings: str, size: int = 32) -> dict:
    args = ["inspect", "--classes", "1000", "--json", "--set", f"data.image_size={size}"]
    result = CliRunner().invoke(app, args + [a for s in settings for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize(("arch", "attention", "published"), [
    ("resnet50", "none", 25_557_032),
    ("resnet50", "cbam", 28_089_624),  # the CBAM paper's 28.09M
    ("resnet101", "none", 44_549_160),
    ("resnet101", "cbam", 49_330_172),
])
@pytest.mark.slow
def test_inspect_reproduces_the_published_imagenet_parameter_counts(arch, attention, published):
    figures = inspect(f"model.arch={arch}", f"model.attention={attention}", "model.placement=all")
    assert figures["params"] == published


@pytest.mark.slow
def test_inspect_reproduces_resnet50s_4_1_giga_macs_at_224_pixels():
    figures = inspect("model.arch=resnet50", "model.attention=none", size=224)
    assert figures["macs"] == pytest.approx(4.09e9, rel=0.005) and figures["input_size"] == 224


def test_inspect_and_a_study_time_the_same_model_the_same_way(monkeypatch):
    """`ablate inspect` times the model it builds; a study times each model after its trials. They must
    time the same network on the same input, the same number of passes, or the report's latency column
    and `inspect` tell two stories. (What the timing comes to is the machine's: benchmarks time it.)"""
    from ablation import accounting
    from ablation.core import load_model_and_data

    timed = []
    measure = accounting.measure_latency

    def recorded(model, image_size, **settings):
        timed.append((str(model), sum(p.numel() for p in model.parameters()), image_size, settings,
                      model.training, next(model.parameters()).device))
        latency = measure(model, image_size, **settings)
        timed[-1] += (model.training,)
        return latency

    monkeypatch.setattr(accounting, "measure_latency", recorded)
    settings = ["model.arch=resnet18", "data.image_size=32", "model.placement=layer3"]
    result = CliRunner().invoke(app, ["inspect", "--json", "--latency", *(a for s in settings for a in ("--set", s))])
    assert result.exit_code == 0, result.output
    spec, data = load_model_and_data(None, settings)
    studied = accounting.arm_latency(spec, num_classes=json.loads(result.output)["num_classes"],
                                     image_size=data.image_size)
    assert len(timed) == 2 and timed[0] == timed[1], timed
    assert "IdentityCBAM" in timed[0][0] and timed[0][2] == 32 and timed[0][-1] is False  # timed in eval mode
    assert studied.repeats == 30 and studied.median_ms > 0
