from typing import get_args

import pytest
import torch
from torch import nn
from torchvision.models import resnet18, resnet34, resnet50

from ablation.models import ATTENTIONS, BUILDERS, IdentityCBAM, build_model, count_parameters
from ablation.models.cbam import CBAM
from ablation.models.eca import adaptive_kernel_size
from ablation.core import ModelSpec
from ablation.core.catalog import ARCHITECTURES
from ablation.core.sites import STAGES

PLACEMENTS = ["none", "layer1", "layer2", "layer3", "layer4", "layer1+layer3", "all"]


def test_vanilla_resnet50_with_six_classes_has_the_published_parameter_count():
    model = build_model(ModelSpec(arch="resnet50", attention="none", placement="none"), num_classes=6)
    assert count_parameters(model) == 23_520_326


def test_the_backbone_keeps_torchvision_state_dict_names_so_its_weights_load():
    model = build_model(ModelSpec(arch="resnet50", placement="all"), num_classes=1000)
    result = model.load_state_dict(resnet50().state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(k.startswith("attention.") for k in result.missing_keys)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_the_backbone_is_torchvisions_resnet_weight_for_weight_from_the_same_seed(arch):
    """Written out rather than imported (importing torchvision costs a trial's worker 160 MB), it must
    stay torchvision's network: the same names in the same order, the same weights drawn from a seed,
    the same outputs."""
    import torchvision.models

    torch.manual_seed(7)
    ours = build_model(ModelSpec(arch=arch, attention="none", placement="none"), num_classes=6).eval()
    torch.manual_seed(7)
    theirs = getattr(torchvision.models, arch)(num_classes=6).eval()
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(reference)
    assert all(torch.equal(mine[k], reference[k]) for k in reference)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_stage_widths_in_the_spec_match_the_built_network(arch):
    model = build_model(ModelSpec(arch=arch, placement="all", reduction=16), num_classes=6)
    for stage in STAGES:
        module = model.attention[stage][0]
        assert module.branch.conv1.in_channels == ARCHITECTURES[arch].width(stage)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_every_placement_trains_forward_and_backward(placement):
    model = build_model(ModelSpec(arch="resnet18", placement=placement, count=2, reduction=8), num_classes=6)
    x = torch.randn(2, 3, 32, 32)
    model(x).sum().backward()
    placed = [s for s in STAGES if isinstance(model.attention[s], nn.Sequential)]
    assert placed == [site.stage for site in ModelSpec(placement=placement).sites]
    assert all(len(model.attention[s]) == 2 for s in placed)
    assert all(p.grad is not None for p in model.parameters())


def test_identity_cbam_adds_parameters_only_where_placed():
    base = count_parameters(build_model(ModelSpec(arch="resnet18", placement="none"), num_classes=6))
    one = count_parameters(build_model(ModelSpec(arch="resnet18", placement="layer4"), num_classes=6))
    assert one - base == count_parameters(IdentityCBAM(512, reduction=16))


def test_identity_cbam_is_a_bottleneck_with_cbam_on_a_skip():
    module = IdentityCBAM(64, reduction=16)
    assert (module.branch.conv1.out_channels, module.branch.conv3.out_channels) == (16, 64)
    assert module.cbam.channel_gate.mlp[1].out_features == 4
    assert module.cbam.spatial_gate.conv.kernel_size == (7, 7)
    x = torch.randn(2, 64, 8, 8)
    assert module(x).shape == x.shape


def test_modules_use_relu_modules_so_guided_attribution_can_hook_them():
    model = build_model(ModelSpec(arch="resnet18", placement="all"), num_classes=6)
    assert any(isinstance(m, nn.ReLU) for m in model.attention.modules())


def test_zero_init_starts_the_network_as_the_vanilla_one():
    torch.manual_seed(0)
    vanilla = build_model(ModelSpec(arch="resnet18", attention="none", placement="none"), num_classes=6).eval()
    model = build_model(ModelSpec(arch="resnet18", placement="all", zero_init=True), num_classes=6).eval()
    model.load_state_dict(vanilla.state_dict(), strict=False)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), vanilla(x), rtol=0, atol=0)


@pytest.mark.parametrize(("arch", "published"), [("resnet50", 28_089_624), ("resnet101", 49_330_172)])
def test_cbam_in_every_block_has_the_cbam_papers_parameter_count(arch, published):
    vanilla = {"resnet50": 25_557_032, "resnet101": 44_549_160}[arch]
    assert count_parameters(build_model(ModelSpec(arch=arch, attention="none"), num_classes=1000)) == vanilla
    model = build_model(ModelSpec(arch=arch, attention="cbam", placement="all"), num_classes=1000)
    assert count_parameters(model) == published


def test_cbam_sits_in_each_block_of_the_placed_stages_before_the_addition():
    model = build_model(ModelSpec(arch="resnet18", attention="cbam", placement="layer2"), num_classes=6)
    assert all(isinstance(block.attention[0], CBAM) for block in model.layer2)
    assert all(isinstance(block.attention, nn.Identity) for block in model.layer1)
    assert all(isinstance(model.attention[s], nn.Identity) for s in STAGES)
    # As in the official ResNet-CBAM: the spatial gate starts half open.
    assert model.layer2[0].attention[0].spatial_gate.bn.weight.abs().sum() == 0
    model(torch.randn(2, 3, 32, 32)).sum().backward()


def test_every_attention_type_the_spec_names_is_registered_with_a_builder():
    accepted = get_args(ModelSpec.model_fields["attention"].annotation)
    assert sorted(accepted) == sorted(ATTENTIONS)
    assert sorted(BUILDERS) == sorted(set(accepted) - {"none"})


def test_se_in_every_block_of_resnet50_has_the_se_papers_parameter_count():
    model = build_model(ModelSpec(arch="resnet50", attention="se", placement="all"), num_classes=1000)
    assert count_parameters(model) == 28_088_024  # CBAM's count minus its 16 spatial gates of 100


def test_eca_adds_only_its_small_kernels_and_ignores_the_reduction():
    vanilla = count_parameters(build_model(ModelSpec(arch="resnet50", attention="none"), num_classes=1000))
    model = build_model(ModelSpec(arch="resnet50", attention="eca", placement="all", reduction=7), num_classes=1000)
    kernels = [adaptive_kernel_size(ARCHITECTURES["resnet50"].width(s)) for s in STAGES]
    assert kernels == [5, 5, 5, 7]  # the paper's adaptive rule for 256..2048 channels
    assert count_parameters(model) - vanilla == sum(k * n for k, n in zip(kernels, (3, 4, 6, 3)))


@pytest.mark.parametrize("attention", ["se", "eca"])
def test_channel_attention_baselines_train(attention):
    model = build_model(ModelSpec(arch="resnet18", attention=attention, placement="layer1+layer4"), num_classes=6)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert not isinstance(model.layer4[1].attention, nn.Identity)


def test_switching_off_a_gate_removes_exactly_its_parameters():
    both = count_parameters(CBAM(64, reduction=16))
    assert both - count_parameters(CBAM(64, reduction=16, gates="channel")) == 2 * 7 * 7 + 2  # conv + BN
    assert both - count_parameters(CBAM(64, reduction=16, gates="spatial")) == 64 * 4 + 4 + 4 * 64 + 64  # MLP


def test_gate_order_kernel_size_and_pooling_change_the_computation():
    torch.manual_seed(0)
    x = torch.randn(2, 64, 8, 8)
    reference = CBAM(64, reduction=8).eval()
    swapped = CBAM(64, reduction=8, gates="spatial+channel").eval()
    swapped.load_state_dict(reference.state_dict())
    assert not torch.allclose(reference(x), swapped(x))
    assert CBAM(64, kernel_size=3).spatial_gate.conv.kernel_size == (3, 3)
    avg_only = CBAM(64, reduction=8, pooling="avg").eval()
    avg_only.load_state_dict(reference.state_dict())
    assert not torch.allclose(reference(x), avg_only(x))


@pytest.mark.parametrize("attention", ["identity_cbam", "cbam"])
def test_the_cbam_axes_reach_the_modules_from_the_spec(attention):
    spec = ModelSpec(arch="resnet18", attention=attention, placement="layer3", kernel_size=5, pooling="max",
                     gates="spatial+channel")
    model = build_model(spec, num_classes=6)
    cbam = next(m for m in model.modules() if isinstance(m, CBAM))
    assert cbam.spatial_gate.conv.kernel_size == (5, 5) and len(cbam.channel_gate.pools) == 1
    assert cbam.sequence == [cbam.spatial_gate, cbam.channel_gate]
    model(torch.randn(2, 3, 32, 32)).sum().backward()


def test_switching_off_the_bottleneck_removes_exactly_its_parameters():
    full, bare = IdentityCBAM(64), IdentityCBAM(64, bottleneck=False)
    assert count_parameters(full) - count_parameters(bare) == count_parameters(full.branch)
    x = torch.rand(2, 64, 8, 8)
    assert bare(x).shape == x.shape


def test_switching_off_the_skip_drops_the_input_from_the_sum():
    torch.manual_seed(0)
    with_skip, without = IdentityCBAM(64).eval(), IdentityCBAM(64, skip=False).eval()
    without.load_state_dict(with_skip.state_dict())
    x = torch.rand(2, 64, 8, 8)
    branch = with_skip.cbam(with_skip.branch(x))
    torch.testing.assert_close(without(x), torch.relu(branch))
    torch.testing.assert_close(with_skip(x), torch.relu(branch + x))


# One Identity-CBAM(512, r=16) after layer4 of a ResNet-18: the reference each axis below changes.
REFERENCE = {"arch": "resnet18", "attention": "identity_cbam", "placement": "layer4"}


def channel_gate(c: int, r: int) -> int:
    return c * (c // r) + c // r + (c // r) * c + c  # the shared MLP, with biases


def spatial_gate(k: int) -> int:
    return 2 * k * k + 2  # conv without bias, BN weight and bias


def branch(c: int) -> int:
    m = c // 4
    return c * m + 2 * m + 9 * m * m + 2 * m + m * c + 2 * c  # 1x1, 3x3, 1x1 convs and their BNs


def module(c: int, r: int = 16) -> int:
    return branch(c) + channel_gate(c, r) + spatial_gate(7)


AXES = {
    "placement=layer3+layer4": ({"placement": "layer3+layer4"}, module(256)),
    "placement=layer2.0+layer4": ({"placement": "layer2.0+layer4"}, module(128)),
    "count=3": ({"count": 3}, 2 * module(512)),
    "count=0": ({"count": 0}, -module(512)),
    "count per stage": ({"placement": "layer1+layer4", "count": {"layer1": 2, "layer4": 1}}, 2 * module(64)),
    "reduction=64": ({"reduction": 64}, channel_gate(512, 64) - channel_gate(512, 16)),
    "reduction per stage": ({"placement": "layer1+layer4", "reduction": {"layer1": 4, "layer4": 8}},
                            module(64, 4) + channel_gate(512, 8) - channel_gate(512, 16)),
    "kernel_size=3": ({"kernel_size": 3}, spatial_gate(3) - spatial_gate(7)),
    "pooling=max": ({"pooling": "max"}, 0),
    "gates=spatial+channel": ({"gates": "spatial+channel"}, 0),
    "gates=parallel": ({"gates": "parallel"}, 0),
    "gates=channel": ({"gates": "channel"}, -spatial_gate(7)),
    "gates=spatial": ({"gates": "spatial"}, -channel_gate(512, 16)),
    "bottleneck=False": ({"bottleneck": False}, -branch(512)),
    "skip=False": ({"skip": False}, 0),
    "channel_gate=False": ({"channel_gate": False}, -channel_gate(512, 16)),
    "spatial_gate=False": ({"spatial_gate": False}, -spatial_gate(7)),
    "zero_init=True": ({"zero_init": True}, 0),
    "attention=none": ({"attention": "none"}, -module(512)),
    # ResNet-34 has the same stage widths: only the backbone grows, by torchvision's own count.
    "arch=resnet34": ({"arch": "resnet34"}, count_parameters(resnet34(num_classes=6)) - count_parameters(resnet18(num_classes=6))),
    "attention=cbam": ({"attention": "cbam"}, 2 * (channel_gate(512, 16) + spatial_gate(7)) - module(512)),
    "attention=se": ({"attention": "se"}, 2 * channel_gate(512, 16) - module(512)),
}


@pytest.mark.parametrize("change", list(AXES))
def test_each_axis_trains_and_changes_the_parameters_by_exactly_its_own(change):
    settings, delta = AXES[change]
    torch.manual_seed(0)
    reference = build_model(ModelSpec(**REFERENCE), num_classes=6)
    model = build_model(ModelSpec(**REFERENCE | settings), num_classes=6)
    assert count_parameters(model) - count_parameters(reference) == delta
    x = torch.randn(2, 3, 32, 32)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    if delta == 0 and "zero_init" not in settings:  # same weights, so the axis must change the computation
        model.load_state_dict(reference.state_dict())
        assert not torch.allclose(model.eval()(x), reference.eval()(x))


def test_a_block_site_puts_modules_after_that_block_or_inside_it_only():
    after = build_model(ModelSpec(arch="resnet18", placement="layer3.0"), num_classes=6)
    assert isinstance(after.layer3[0].after[0], IdentityCBAM) and isinstance(after.layer3[1].after, nn.Identity)
    assert isinstance(after.attention["layer3"], nn.Identity)
    inside = build_model(ModelSpec(arch="resnet18", attention="cbam", placement="layer3.1"), num_classes=6)
    assert isinstance(inside.layer3[1].attention[0], CBAM) and isinstance(inside.layer3[0].attention, nn.Identity)


def test_parallel_gates_both_read_the_input():
    torch.manual_seed(0)
    module = CBAM(64, reduction=8, gates="parallel").eval()
    x = torch.randn(2, 64, 8, 8)
    expected = x * module.channel_gate.attention(x) * module.spatial_gate.attention(x)
    torch.testing.assert_close(module(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_zero_init_starts_block_placements_as_the_vanilla_network_too(arch):
    torch.manual_seed(0)
    vanilla = build_model(ModelSpec(arch=arch, attention="none"), num_classes=6).eval()
    spec = ModelSpec(arch=arch, placement="layer1.0+layer2+layer3.1+layer4", count=2, zero_init=True)
    model = build_model(spec, num_classes=6).eval()
    model.load_state_dict(vanilla.state_dict(), strict=False)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model(x), vanilla(x), rtol=0, atol=0)


def test_pretrained_weights_load_into_the_backbone_and_leave_the_modules_new(tmp_path):
    torch.manual_seed(0)
    imagenet = resnet18()  # stands in for downloaded ImageNet weights: same format, 1000 classes
    path = tmp_path / "resnet18.pth"
    torch.save(imagenet.state_dict(), path)
    spec = ModelSpec(arch="resnet18", placement="all", zero_init=True, pretrained=path)
    model = build_model(spec, num_classes=6).eval()
    torch.testing.assert_close(model.layer3[1].conv2.weight, imagenet.layer3[1].conv2.weight, rtol=0, atol=0)
    # With the backbone loaded and each module starting as the identity, the features are ImageNet's.
    imagenet.fc = model.fc
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model(x), imagenet.eval()(x), rtol=0, atol=0)


def test_weights_of_another_depth_or_not_weights_at_all_are_a_clear_error(tmp_path):
    from ablation.models import WeightsError, load_backbone

    deeper, text = tmp_path / "resnet34.pth", tmp_path / "notes.pth"
    torch.save(resnet34().state_dict(), deeper)
    text.write_text("not weights")
    model = build_model(ModelSpec(arch="resnet18", placement="none"), num_classes=6)
    with pytest.raises(WeightsError, match=r"resnet34.pth: does not fit .*unexpected layer1.2"):
        load_backbone(model, deeper)
    with pytest.raises(WeightsError, match="notes.pth: not a torch state dict"):
        load_backbone(model, text)
