"""Squeeze-and-Excitation (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018).

Global average pooling, a bottleneck MLP C -> C/r -> C with ReLU, a sigmoid gate per channel. As
in the paper, it sits on the residual branch of every block, before the addition.
"""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if channels % reduction:
            raise ValueError(f"reduction {reduction} does not divide {channels} channels")
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels, channels // reduction),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels),
        )
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.mlp(x.mean(dim=(2, 3))))[:, :, None, None]
