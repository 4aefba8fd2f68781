"""BAM (Park et al., BMVC 2018), added as one module file and one registration: its two named variants
(the official code's, checked against a transcription of it, and the paper's equations), its size and
sites as published, the official initialisation, and a forward pass at every placement."""

import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from ablation.models import ATTENTIONS, build_model, count_parameters
from ablation.models.bam import BAM
from ablation.report.model import Arm
from ablation.report.files import _all_stages, placement_grid
from ablation.core import ModelSpec, SpecError, load_spec, load_study

RESNET50_IMAGENET = 25_557_032


# --- The official module, transcribed ---------------------------------------------------------------
# From https://github.com/Jongchan/attention-module, MODELS/bam.py (commit 3a34385), MIT License,
# Copyright (c) 2019 Jongchan Park. Transcribed as published, with two changes that do not alter what
# it computes: ChannelGate's `self.gate_activation = gate_activation` is left out (the name is not
# defined anywhere, so the published class cannot be built with it), and the deprecated F.sigmoid is
# torch.sigmoid. BAM's constructor takes the ratio so the tests can vary it (the official one fixes 16).

class Flatten(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


class ChannelGate(nn.Module):
    def __init__(self, gate_channel, reduction_ratio=16, num_layers=1):
        super(ChannelGate, self).__init__()
        self.gate_c = nn.Sequential()
        self.gate_c.add_module('flatten', Flatten())
        gate_channels = [gate_channel]
        gate_channels += [gate_channel // reduction_ratio] * num_layers
        gate_channels += [gate_channel]
        for i in range(len(gate_channels) - 2):
            self.gate_c.add_module('gate_c_fc_%d' % i, nn.Linear(gate_channels[i], gate_channels[i + 1]))
            self.gate_c.add_module('gate_c_bn_%d' % (i + 1), nn.BatchNorm1d(gate_channels[i + 1]))
            self.gate_c.add_module('gate_c_relu_%d' % (i + 1), nn.ReLU())
        self.gate_c.add_module('gate_c_fc_final', nn.Linear(gate_channels[-2], gate_channels[-1]))

    def forward(self, in_tensor):
        avg_pool = F.avg_pool2d(in_tensor, in_tensor.size(2), stride=in_tensor.size(2))
        return self.gate_c(avg_pool).unsqueeze(2).unsqueeze(3).expand_as(in_tensor)


class SpatialGate(nn.Module):
    def __init__(self, gate_channel, reduction_ratio=16, dilation_conv_num=2, dilation_val=4):
        super(SpatialGate, self).__init__()
        self.gate_s = nn.Sequential()
        self.gate_s.add_module('gate_s_conv_reduce0', nn.Conv2d(gate_channel, gate_channel // reduction_ratio,
                                                                kernel_size=1))
        self.gate_s.add_module('gate_s_bn_reduce0', nn.BatchNorm2d(gate_channel // reduction_ratio))
        self.gate_s.add_module('gate_s_relu_reduce0', nn.ReLU())
        for i in range(dilation_conv_num):
            self.gate_s.add_module('gate_s_conv_di_%d' % i, nn.Conv2d(
                gate_channel // reduction_ratio, gate_channel // reduction_ratio, kernel_size=3,
                padding=dilation_val, dilation=dilation_val))
            self.gate_s.add_module('gate_s_bn_di_%d' % i, nn.BatchNorm2d(gate_channel // reduction_ratio))
            self.gate_s.add_module('gate_s_relu_di_%d' % i, nn.ReLU())
        self.gate_s.add_module('gate_s_conv_final', nn.Conv2d(gate_channel // reduction_ratio, 1, kernel_size=1))

    def forward(self, in_tensor):
        return self.gate_s(in_tensor).expand_as(in_tensor)


class OfficialBAM(nn.Module):
    def __init__(self, gate_channel, reduction_ratio=16):
        super(OfficialBAM, self).__init__()
        self.channel_att = ChannelGate(gate_channel, reduction_ratio)
        self.spatial_att = SpatialGate(gate_channel, reduction_ratio)

    def forward(self, in_tensor):
        att = 1 + torch.sigmoid(self.channel_att(in_tensor) * self.spatial_att(in_tensor))
        return att * in_tensor


def official_init_rule(key: str) -> str:
    """What the official ResNet's init loop (MODELS/model_resnet.py, same repository and licence) does to
    the state-dict entry `key`, transcribed from its conditions: "kaiming" (kaiming_normal, fan_out),
    "one", "zero" or "default" (left as PyTorch built it)."""
    if key.split('.')[-1] == "weight":
        if "conv" in key:
            return "kaiming"
        if "bn" in key:
            return "zero" if "SpatialGate" in key else "one"
        return "default"
    if key.split(".")[-1] == 'bias':
        return "zero"
    return "default"  # running statistics


# --- The official variant -------------------------------------------------------------------------------

def default_bam(channels: int = 256) -> BAM:
    """A BAM as the default spec builds it (after layer1 of a ResNet-50: 256 channels)."""
    model = build_model(ModelSpec(arch="resnet50", attention="bam", placement="layer1"), num_classes=6)
    module = model.attention["layer1"][0]
    assert isinstance(module, BAM) and module.channel_att.gate_c.gate_c_fc_0.in_features == channels
    return module


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_the_default_variant_is_the_official_module(mode):
    torch.manual_seed(0)
    ours = default_bam().double()
    official = OfficialBAM(256).double()
    official.load_state_dict(ours.state_dict())  # strict: the layer names are the official ones
    ours.train(mode == "train"), official.train(mode == "train")
    x = torch.randn(4, 256, 14, 14, dtype=torch.float64)
    torch.testing.assert_close(ours(x), official(x), rtol=0, atol=1e-12)
    # In training, BN's batch statistics and running averages agree too.
    for key, value in official.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, rtol=0, atol=1e-12)


def test_the_official_variant_multiplies_the_branch_logits_before_the_sigmoid():
    torch.manual_seed(0)
    bam = BAM(64, variant="official").eval()
    x = torch.randn(2, 64, 8, 8)
    mc, ms = bam.channel_att(x), bam.spatial_att(x)
    assert mc.shape == (2, 64, 1, 1) and ms.shape == (2, 1, 8, 8)
    torch.testing.assert_close(bam(x), x * (1 + torch.sigmoid(mc * ms)))


# --- The paper's variant -------------------------------------------------------------------------------

def test_the_paper_variant_ends_each_branch_in_bn_and_adds_them():
    # The paper's Eq. 3, Mc = BN(MLP(AvgPool(F))), Eq. 4, Ms = BN(f3(f2(f1(f0(F))))), and Eq. 2,
    # M = sigmoid(Mc + Ms); the output is F + F * M (Eq. 1).
    torch.manual_seed(0)
    paper, official = BAM(64, variant="paper"), BAM(64, variant="official")
    channel_end, spatial_end = paper.channel_att.gate_c[-1], paper.spatial_att.gate_s[-1]
    assert isinstance(channel_end, nn.BatchNorm1d) and channel_end.num_features == 64
    assert isinstance(paper.channel_att.gate_c[-2], nn.Linear)
    assert isinstance(spatial_end, nn.BatchNorm2d) and spatial_end.num_features == 1
    assert isinstance(paper.spatial_att.gate_s[-2], nn.Conv2d) and paper.spatial_att.gate_s[-2].out_channels == 1
    assert isinstance(official.channel_att.gate_c[-1], nn.Linear)  # the code's branches end bare
    assert isinstance(official.spatial_att.gate_s[-1], nn.Conv2d)
    assert count_parameters(paper) - count_parameters(official) == 2 * 64 + 2  # the two BNs' weights and biases
    x = torch.randn(3, 64, 8, 8)
    for mode in (False, True):  # eval (running statistics), then training (batch statistics)
        paper.train(mode)
        mc, ms = paper.channel_att(x), paper.spatial_att(x)
        torch.testing.assert_close(paper(x), x * (1 + torch.sigmoid(mc + ms)))
        # Training mode: each branch's logits come out normalised by its end BN (weight 1, bias 0).
        if mode:
            ms = ms.detach()
            assert abs(float(ms.mean())) < 1e-5 and float(ms.var(unbiased=False)) == pytest.approx(1, abs=1e-3)


# --- Size and sites as published ------------------------------------------------------------------------

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


def test_resnet50_with_bam_at_all_is_the_official_network_with_nothing_after_layer4():
    # The paper and the official ResNet put BAM at the three bottlenecks between stages (after
    # layer1, layer2 and layer3, at 64/128/256 x expansion channels), none after layer4.
    model = build_model(ModelSpec(arch="resnet50", attention="bam", placement="all"), num_classes=1000)
    expected = RESNET50_IMAGENET + sum(official_bam_parameters(c) for c in (256, 512, 1024))
    assert count_parameters(model) == expected == 25_915_099  # the BAM paper's 25.92M
    assert isinstance(model.attention["layer4"], nn.Identity)
    assert all(isinstance(model.attention[s][0], BAM) for s in ("layer1", "layer2", "layer3"))
    assert ATTENTIONS.get("bam").all_stages == ("layer1", "layer2", "layer3")


def test_bam_after_layer4_only_when_named_and_the_spelling_keeps_its_meaning():
    four = ModelSpec(arch="resnet50", attention="bam", placement="layer1+layer2+layer3+layer4")
    assert four.placement == "layer1+layer2+layer3+layer4" and len(four.sites) == 4  # not collapsed into `all`
    assert count_parameters(build_model(four, num_classes=1000)) == 25_915_099 + official_bam_parameters(2048)
    three = ModelSpec(arch="resnet50", attention="bam", placement="layer1+layer2+layer3")
    assert three.placement == "layer1+layer2+layer3"  # so an arm that switches to CBAM keeps three stages
    # The other types are unchanged: `all` is every stage, and every stage spelled out is `all`.
    for kind in ("identity_cbam", "cbam", "se", "eca"):
        assert ModelSpec(attention=kind, placement="layer1+layer2+layer3+layer4").placement == "all"
        assert [s.stage for s in ModelSpec(attention=kind, placement="all").sites] == \
            ["layer1", "layer2", "layer3", "layer4"]


def test_an_arm_reads_all_as_its_own_types_sites_and_spelled_out_sites_as_written(tmp_path):
    path = tmp_path / "types.yaml"
    path.write_text(yaml.safe_dump({"name": "types", "model": {"arch": "resnet18", "attention": "bam",
                                                                "placement": "all"},
                                    "search": {"space": {"model.attention": ["bam", "cbam"],
                                                         "model.placement": ["all", "layer1+layer2+layer3"]}}}))
    study = load_study(path, ["search.seeds=[0]"])
    stages = {t.arm: [s.stage for s in t.spec.model.sites] for t in study.trials}
    assert stages["attention=bam,placement=all"] == ["layer1", "layer2", "layer3"]
    assert stages["attention=cbam,placement=all"] == ["layer1", "layer2", "layer3", "layer4"]
    assert stages["attention=cbam,placement=layer1+layer2+layer3"] == ["layer1", "layer2", "layer3"]
    # A placement search over every subset of the four stages reaches BAM after all four.
    path.write_text(yaml.safe_dump({"name": "subsets", "model": {"arch": "resnet18", "attention": "bam"},
                                    "search": {"space": {"model.placement": {"subsets_of": ["layer1", "layer2",
                                                                                            "layer3", "layer4"],
                                                                             "size": 4}}}}))
    (trial,) = load_study(path, ["search.seeds=[0]"]).trials
    assert len(trial.spec.model.sites) == 4


def test_the_heatmap_shows_a_bam_arm_at_all_after_layer1_to_3():
    arms = [Arm("bam", {"model.placement": "all", "model.attention": "bam"}),
            Arm("cbam", {"model.placement": "all", "model.attention": "cbam"})]
    placements = {a.name: "all" for a in arms}
    values, columns = placement_grid(placements, {"bam": 0.5, "cbam": 0.6}, _all_stages(arms, placements))
    assert {c for (arm, c) in values if arm == "bam"} == {"layer1", "layer2", "layer3"}
    assert {c for (arm, c) in values if arm == "cbam"} == {"layer1", "layer2", "layer3", "layer4"}
    assert columns == ["layer1", "layer2", "layer3", "layer4"]


# --- The official initialisation ----------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["official", "paper"])
def test_bam_starts_from_the_official_resnets_initialisation(variant):
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch="resnet50", attention="bam", placement="all", variant=variant),
                        num_classes=6)
    state = {k: v for k, v in model.state_dict().items() if k.startswith("attention.")}
    kaiming = []  # each kaiming weight divided by the std the rule gives it
    for key, value in state.items():
        rule = official_init_rule(key)
        if rule == "zero":
            assert torch.count_nonzero(value) == 0, key
        elif rule == "one":
            assert torch.all(value == 1), key
        elif rule == "kaiming":
            # kaiming_normal(mode="fan_out") with its default a=0: gain sqrt(2 / (1 + a^2)) = sqrt(2),
            # std = gain / sqrt(fan_out), fan_out = out_channels * kernel area.
            fan_out = value.shape[0] * value[0, 0].numel()
            kaiming.append(value.flatten() / math.sqrt(2 / fan_out))
            if value.numel() >= 1000:  # the reduce and dilated convs: enough draws for a tight check
                assert float(value.std()) == pytest.approx(math.sqrt(2 / fan_out), rel=0.1), key
        elif key.endswith("weight"):  # the channel MLP's FCs: PyTorch's kaiming_uniform(a=sqrt(5))
            assert float(value.abs().max()) <= 1 / math.sqrt(value.shape[1]), key
    # The final 1x1 convs to one map (fan_out 1, so std sqrt(2) ~ 1.41, against PyTorch's default
    # 1 / sqrt(3 * fan_in) = 0.07-0.14): 16 + 32 + 64 draws, whose std is 1 +- 0.07 once scaled.
    finals = torch.cat([state[f"attention.{s}.0.spatial_att.gate_s.gate_s_conv_final.weight"].flatten()
                        for s in ("layer1", "layer2", "layer3")])
    scaled = torch.cat(kaiming)
    assert finals.numel() == 112 and 0.75 < float(finals.std()) / math.sqrt(2) < 1.25
    assert 0.9 < float(scaled.std()) < 1.1 and abs(float(scaled.mean())) < 0.05


# --- Every placement, the switches, the spec -----------------------------------------------------------

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


def test_switching_a_branch_off_removes_exactly_its_parameters():
    full = count_parameters(BAM(256))
    hidden = 256 // 16
    no_channel = count_parameters(BAM(256, channel_gate=False))
    no_spatial = count_parameters(BAM(256, spatial_gate=False))
    assert full - no_channel == 2 * 256 * hidden + 3 * hidden + 256
    assert no_channel + no_spatial == full


def test_a_spec_sets_bams_options_under_their_own_keys_and_refuses_bad_values(tmp_path):
    path = tmp_path / "bam.yaml"
    path.write_text(yaml.safe_dump({"name": "bam", "model": {"attention": "bam", "placement": "layer3"},
                                    "search": {"design": "loco"}}))
    assert load_spec(path).model.variant == "official"
    spec = load_spec(path, ["model.variant=paper", "model.dilation=2"])
    assert (spec.model.variant, spec.model.dilation) == ("paper", 2)
    assert load_study(path).arm_names == ["full", "no channel_gate", "no spatial_gate", "baseline"]
    with pytest.raises(SpecError, match="model.variant"):
        load_spec(path, ["model.variant=max"])
    with pytest.raises(SpecError, match="model.reduction"):
        load_spec(path, ["model.reduction=5"])


def test_the_retired_combine_key_says_what_replaced_it(tmp_path):
    # `model.combine` (sum | product) was BAM's option before the variants were named; a spec that still
    # uses it is told the key, its replacement and the values it takes, not just "unknown key".
    path = tmp_path / "bam.yaml"
    path.write_text(yaml.safe_dump({"name": "bam", "model": {"attention": "bam", "combine": "product"},
                                    "search": {"design": "loco"}}))
    with pytest.raises(SpecError, match=r"model\.combine: replaced by model\.variant: official .* or paper"):
        load_spec(path)
    path.write_text(yaml.safe_dump({"name": "bam", "model": {"attention": "bam"},
                                    "search": {"space": {"model.combine": ["sum", "product"]}}}))
    with pytest.raises(SpecError, match=r"model\.combine'?: replaced by model\.variant"):
        load_spec(path)
