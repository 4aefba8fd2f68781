"""BAM, the Bottleneck Attention Module (Park, Woo, Lee, Kweon, "BAM: Bottleneck Attention Module",
BMVC 2018), from the authors of CBAM.

It sits between stages (the official ResNet puts one after layer1, layer2 and layer3), which makes
it the precedent for Identity-CBAM's placement after stages. It follows the official code
(Jongchan/attention-module, MODELS/bam.py), including its layer names:
- the channel branch: global average pooling, then an MLP C -> C/r -> C with BN and ReLU on its
  hidden layer;
- the spatial branch: a 1x1 reduction to C/r channels, `dilated_convs` dilated 3x3 convolutions
  (dilation `dilation`), each with BN and ReLU, and a 1x1 convolution to one map;
- the output `x * (1 + sigmoid(att))`.

The paper and the code combine the branches differently: the paper adds them before the sigmoid
(its Eq. 2, M(F) = sigmoid(Mc(F) + Ms(F))), the official code multiplies them. `combine` chooses;
the default is the paper's `sum`. `channel_gate` / `spatial_gate` switch a branch off, removing
exactly its parameters.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from .catalog import AttentionType, Options, reduction


class ChannelBranch(nn.Module):
    """Which channels matter, as one logit per channel, shaped (N, C, 1, 1)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = channels // reduction
        self.gate_c = nn.Sequential(OrderedDict(
            flatten=nn.Flatten(),
            gate_c_fc_0=nn.Linear(channels, hidden),
            gate_c_bn_1=nn.BatchNorm1d(hidden),
            gate_c_relu_1=nn.ReLU(),
            gate_c_fc_final=nn.Linear(hidden, channels),
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate_c(F.adaptive_avg_pool2d(x, 1))[:, :, None, None]


class SpatialBranch(nn.Module):
    """Where the features matter, as one logit per position, shaped (N, 1, H, W)."""

    def __init__(self, channels: int, reduction: int = 16, dilated_convs: int = 2, dilation: int = 4) -> None:
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
        self.gate_s = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate_s(x)


class BAM(nn.Module):
    """x -> x * (1 + sigmoid(Mc(x) + Ms(x))), or with the branches multiplied (`combine="product"`)."""

    def __init__(self, channels: int, reduction: int = 16, dilated_convs: int = 2, dilation: int = 4,
                 combine: str = "sum", channel_gate: bool = True, spatial_gate: bool = True) -> None:
        super().__init__()
        if channels % reduction:
            raise ValueError(f"reduction {reduction} does not divide {channels} channels")
        if combine not in ("sum", "product"):
            raise ValueError(f"combine {combine!r}: expected 'sum' (the paper) or 'product' (the official code)")
        self.combine = combine
        self.channel_att = ChannelBranch(channels, reduction) if channel_gate else None
        self.spatial_att = SpatialBranch(channels, reduction, dilated_convs, dilation) if spatial_gate else None
        self.branches = [b for b in (self.channel_att, self.spatial_att) if b is not None]

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The logits sigmoid turns into the gate, broadcast to x's shape."""
        channel, *spatial = [branch(x) for branch in self.branches]
        for other in spatial:
            channel = channel + other if self.combine == "sum" else channel * other
        return channel.expand_as(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.branches:  # both branches switched off: nothing is left to gate with
            return x
        return x * (1 + torch.sigmoid(self.attention(x)))


class BAMOptions(Options):
    reduction: int | dict[str, int] = reduction()
    dilated_convs: int = Field(2, ge=1, le=4, description="BAM's dilated 3x3 convolutions in the spatial branch")
    dilation: int = Field(4, ge=1, le=8, description="BAM's dilation of those convolutions")
    combine: Literal["sum", "product"] = Field(
        "sum", description="BAM's branches added before the sigmoid (the paper) or multiplied (the official code)")
    channel_gate: bool = Field(True, description="the channel gate (or branch)")
    spatial_gate: bool = Field(True, description="the spatial gate (or branch)")


ATTENTION = AttentionType(BAM, site="stage", options=BAMOptions, components=("channel_gate", "spatial_gate"),
                          summary="BAM (Park et al.) after the placed stages or blocks")
