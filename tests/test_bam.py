"""BAM (Park et al., BMVC 2018) as the official code builds it, added as one module file and one
registration: its size, its two ways of combining the branches, and a forward pass at every placement."""

import pytest
import torch
import yaml

from ablation.models import build_model, count_parameters
from ablation.models.bam import BAM
from ablation.spec import ModelSpec, SpecError, load_spec

RESNET50_IMAGENET = 25_557_032


def official_bam_parameters(channels: int, reduction: int = 16, dilated_convs: int = 2) -> int:
    """Parameters of the official BAM(gate_channel) worked out from its layer shapes (MODELS/bam.py)."""
    hidden = channels // reduction
    channel_branch = (channels * hidden + hidden      # gate_c_fc_0: Linear(C, C/r)
                      + 2 * hidden                    # gate_c_bn_1: BatchNorm1d(C/r)
                      + hidden * channels + channels)  # gate_c_fc_final: Linear(C/r, C)
    spatial_branch = (channels * hidden + hidden                          # gate_s_conv_reduce0: 1x1 C -> C/r
                      + 2 * hidden                                        # gate_s_bn_reduce0
                      + dilated_convs * (9 * hidden * hidden + hidden + 2 * hidden)  # 3x3 dilated + BN each
                      + hidden + 1)                                       # gate_s_conv_final: 1x1 C/r -> 1
    return channel_branch + spatial_branch


def test_resnet50_with_bam_between_stages_has_the_official_codes_parameter_count():
    # The official ResNet puts BAM after layer1, layer2 and layer3, at 64/128/256 x expansion channels.
    model = build_model(ModelSpec(arch="resnet50", attention="bam", placement="layer1+layer2+layer3"),
                        num_classes=1000)
    expected = RESNET50_IMAGENET + sum(official_bam_parameters(c) for c in (256, 512, 1024))
    assert count_parameters(model) == expected == 25_915_099  # the BAM paper's Table: 25.92M


PLACEMENTS = ["none", "layer1", "layer2", "layer3", "layer4", "layer1+layer2+layer3", "all", "layer2.1",
              "layer1.0+layer4.1"]


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_a_resnet_with_bam_at_any_placement_trains(placement):
    model = build_model(ModelSpec(arch="resnet18", attention="bam", placement=placement, reduction=16),
                        num_classes=6)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 6)
    out.sum().backward()
    added = count_parameters(model) - count_parameters(build_model(ModelSpec(arch="resnet18", attention="none"),
                                                                   num_classes=6))
    assert (added > 0) == (placement != "none")


@pytest.mark.parametrize("combine", ["sum", "product"])
def test_the_branches_are_combined_as_asked_before_the_sigmoid(combine):
    torch.manual_seed(0)
    bam = BAM(64, combine=combine).eval()
    x = torch.randn(2, 64, 8, 8)
    mc, ms = bam.channel_att(x), bam.spatial_att(x)
    assert mc.shape == (2, 64, 1, 1) and ms.shape == (2, 1, 8, 8)
    logits = mc + ms if combine == "sum" else mc * ms
    torch.testing.assert_close(bam(x), x * (1 + torch.sigmoid(logits)))


def test_switching_a_branch_off_removes_exactly_its_parameters():
    full = count_parameters(BAM(256))
    hidden = 256 // 16
    no_channel, no_spatial = count_parameters(BAM(256, channel_gate=False)), count_parameters(BAM(256, spatial_gate=False))
    assert full - no_channel == 2 * 256 * hidden + 3 * hidden + 256
    assert no_channel + no_spatial == full


def test_a_spec_sets_bams_options_under_their_own_keys_and_refuses_bad_values(tmp_path):
    path = tmp_path / "bam.yaml"
    path.write_text(yaml.safe_dump({"name": "bam", "model": {"attention": "bam", "placement": "layer3"},
                                    "search": {"design": "loco"}}))
    spec = load_spec(path, ["model.combine=product", "model.dilation=2"])
    assert (spec.model.combine, spec.model.dilation) == ("product", 2)
    assert [arm for arm, _ in spec.arms()] == ["full", "no channel_gate", "no spatial_gate", "baseline"]
    with pytest.raises(SpecError, match="model.combine"):
        load_spec(path, ["model.combine=max"])
    with pytest.raises(SpecError, match="model.reduction"):
        load_spec(path, ["model.reduction=5"])
