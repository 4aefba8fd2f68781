"""Efficient Channel Attention (Wang et al., "ECA-Net", CVPR 2020).

Global average pooling, then a 1-D convolution across neighbouring channels (no dimensionality
reduction: that is the paper's point), a sigmoid gate per channel. The kernel size follows the
paper's adaptive rule k = |log2(C)/gamma + b/gamma|, rounded to the nearest odd number.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def adaptive_kernel_size(channels: int, gamma: int = 2, beta: int = 1) -> int:
    k = int(abs(math.log2(channels) / gamma + beta / gamma))
    return k if k % 2 else k + 1


class EfficientChannelAttention(nn.Module):
    def __init__(self, channels: int, gamma: int = 2, beta: int = 1) -> None:
        super().__init__()
        k = adaptive_kernel_size(channels, gamma, beta)
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=k // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.mean(dim=(2, 3))[:, None, :])[:, 0, :]
        return x * self.sigmoid(y)[:, :, None, None]
