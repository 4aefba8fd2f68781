"""CBAM's channel and spatial gates (Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018).

Follows the official code (Jongchan/attention-module, MODELS/cbam.py): a shared MLP with biases
over average- and max-pooled descriptors, then a 7x7 conv + BN over the channel-wise max and mean
maps, each gate a sigmoid multiplied onto the features. Gates use `nn.ReLU` modules so captum's
guided methods can hook them.
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelGate(nn.Module):
    """Which channels matter: sigmoid(MLP(avgpool(x)) + MLP(maxpool(x))) * x."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if channels % reduction:
            raise ValueError(f"reduction {reduction} does not divide {channels} channels")
        hidden = channels // reduction
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
        )
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3)))
        peak = self.mlp(x.amax(dim=(2, 3)))
        return x * self.sigmoid(avg + peak)[:, :, None, None]


class SpatialGate(nn.Module):
    """Where the features matter: sigmoid(BN(conv([max_c(x), mean_c(x)]))) * x."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        # The official code's BN settings (momentum 0.01), kept for fidelity.
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * self.sigmoid(self.bn(self.conv(pooled)))


class CBAM(nn.Module):
    """Channel gate, then spatial gate, as in the CBAM paper's best ordering."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel_gate = ChannelGate(channels, reduction)
        self.spatial_gate = SpatialGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial_gate(self.channel_gate(x))
