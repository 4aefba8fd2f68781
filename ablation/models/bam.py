"""BAM, the Bottleneck Attention Module (Park, Woo, Lee, Kweon, "BAM: Bottleneck Attention Module",
BMVC 2018), from the authors of CBAM.

It sits at the bottlenecks between stages: the paper and the official ResNet put one after layer1,
layer2 and layer3 and none after layer4, so placement `all` means those three (`all_stages` below);
layer4 gets one only when named (`layer1+layer2+layer3+layer4`). That makes it the precedent for
Identity-CBAM's placement after stages. The layers and their names follow the official code
(Jongchan/attention-module, MODELS/bam.py, MIT licence):
- the channel branch Mc: global average pooling, then an MLP C -> C/r -> C with BN and ReLU on its
  hidden layer;
- the spatial branch Ms: a 1x1 reduction to C/r channels, `dilated_convs` dilated 3x3 convolutions
  (dilation `dilation`), each with BN and ReLU, and a 1x1 convolution to one map;
- the output x * (1 + sigmoid(M)), with M combining the branches as the `variant` says.

The paper and the code disagree on M, so `variant` names the two:
- `official` (the default): what MODELS/bam.py computes, `1 + sigmoid(Mc(x) * Ms(x))` times x, the
  branch logits *multiplied* (broadcast to C x H x W), each branch ending in its bare last FC / 1x1
  conv. It equals a transcription of the official module to float precision (tests/test_bam.py).
- `paper`: the paper's Eqs. 2-4, M = sigmoid(Mc + Ms), the branches *added*, and each branch ending
  in a BN that puts the two sums on one scale (Eq. 3: BN after the MLP's last FC; Eq. 4: BN after
  the final 1x1 conv), 2C + 2 parameters more per module. The equations leave out the hidden layers' BN and ReLU;
  they are kept as the code has them, so the two variants differ only in those two BNs and in + / *.
The default is `official`: it is the BAM that can be checked line for line, the code behind the
authors' released ResNet-50+BAM checkpoint (76.86% top-1, their README), and this tool's CBAM follows
its official code too, so BAM against CBAM sets like against like. Where the code is not followed:
its ChannelGate sets `self.gate_activation = gate_activation`, an undefined name (left out here),
and pools with `avg_pool2d(x, H)`, global only on square maps (global for any shape here).

Initialisation: `reset_parameters` does to BAM's layers what the official ResNet's init loop does
to them by state-dict key (model_resnet.py), so a BAM built here starts where the official one does
rather than at PyTorch's defaults (the modules are built after torchvision's init pass); both
variants get it, the paper's end BNs included.
`channel_gate` / `spatial_gate` switch a branch off, removing exactly its parameters.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ablation.core.attentions import BAM_VARIANTS

# How M combines the branch logits, by variant (see the module docstring).
VARIANTS = dict(zip(BAM_VARIANTS, (torch.mul, torch.add)))


class ChannelBranch(nn.Module):
    """Which channels matter, as one logit per channel, shaped (N, C, 1, 1)."""

    def __init__(self, channels: int, reduction: int = 16, end_bn: bool = False) -> None:
        super().__init__()
        hidden = channels // reduction
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            flatten=nn.Flatten(),
            gate_c_fc_0=nn.Linear(channels, hidden),
            gate_c_bn_1=nn.BatchNorm1d(hidden),
            gate_c_relu_1=nn.ReLU(),
            gate_c_fc_final=nn.Linear(hidden, channels),
        )
        if end_bn:  # the paper's Eq. 3, BN(MLP(AvgPool(F))); not in the official code
            layers["gate_c_bn_final"] = nn.BatchNorm1d(channels)
        self.gate_c = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate_c(F.adaptive_avg_pool2d(x, 1))[:, :, None, None]


class SpatialBranch(nn.Module):
    """Where the features matter, as one logit per position, shaped (N, 1, H, W)."""

    def __init__(self, channels: int, reduction: int = 16, dilated_convs: int = 2, dilation: int = 4,
                 end_bn: bool = False) -> None:
        super().__init__()
        hidden = channels // reduction
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            gate_s_conv_reduce0=nn.Conv2d(channels, hidden, kernel_size=1),
            gate_s_bn_reduce0=nn.BatchNorm2d(hidden),
            gate_s_relu_reduce0=nn.ReLU(),
        )
        for i in range(dilated_convs):
            layers[f"gate_s_conv_di_{i}"] = nn.Conv2d(hidden, hidden, kernel_size=3, padding=dilation,
                                                      dilation=dilation)
            layers[f"gate_s_bn_di_{i}"] = nn.BatchNorm2d(hidden)
            layers[f"gate_s_relu_di_{i}"] = nn.ReLU()
        layers["gate_s_conv_final"] = nn.Conv2d(hidden, 1, kernel_size=1)
        if end_bn:  # the paper's Eq. 4, BN(f3(f2(f1(f0(F))))); not in the official code
            layers["gate_s_bn_final"] = nn.BatchNorm2d(1)
        self.gate_s = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate_s(x)


class BAM(nn.Module):
    """x -> x * (1 + sigmoid(Mc(x) * Ms(x))) (`official`), or x * (1 + sigmoid(Mc(x) + Ms(x))) with
    each branch ending in BN (`paper`)."""

    def __init__(self, channels: int, reduction: int = 16, dilated_convs: int = 2, dilation: int = 4,
                 variant: str = "official", channel_gate: bool = True, spatial_gate: bool = True) -> None:
        super().__init__()
        if channels % reduction:
            raise ValueError(f"reduction {reduction} does not divide {channels} channels")
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r}: expected 'official' (the code: branches multiplied) or "
                             "'paper' (Eqs. 2-4: branches added, each ending in BN)")
        self.variant = variant
        end_bn = variant == "paper"
        self.channel_att = ChannelBranch(channels, reduction, end_bn) if channel_gate else None
        self.spatial_att = SpatialBranch(channels, reduction, dilated_convs, dilation, end_bn) if spatial_gate else None
        self.branches = [b for b in (self.channel_att, self.spatial_att) if b is not None]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official ResNet's initialisation of BAM's layers. Its loop goes over the network's
        state-dict keys: a `weight` whose key holds "conv" gets kaiming_normal(mode="fan_out") (a=0,
        so gain sqrt(2)): all of Ms's convolutions, e.g. the final 1x1 conv to std sqrt(2 / 1); one
        whose key holds "bn" gets 1 (BAM's keys never hold "SpatialGate", the CBAM attribute whose BN
        goes to 0); every `bias` gets 0. Mc's FC weights match neither and keep PyTorch's default.
        Called on construction, like torch's own layers, so every builder gets it."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                nn.init.ones_(module.weight)
            if isinstance(getattr(module, "bias", None), torch.Tensor):
                nn.init.zeros_(module.bias)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The logits sigmoid turns into the gate, broadcast to x's shape."""
        combine = VARIANTS[self.variant]
        logits, *others = [branch(x) for branch in self.branches]
        for other in others:
            logits = combine(logits, other)
        return logits.expand_as(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.branches:  # both branches switched off: nothing is left to gate with
            return x
        return x * (1 + torch.sigmoid(self.attention(x)))
