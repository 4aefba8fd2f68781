"""Identity-CBAM (Oh, Kim, Kim, Gwak, "Face Emotion Recognition using ResNet with Identity-CBAM", KIPS).

A bottleneck residual branch (1x1 C->C/4, 3x3, 1x1 C/4->C, each with BN; the bottleneck of
Zagoruyko & Komodakis' Wide ResNets) refined by CBAM, added to the identity skip of the module's
input, then ReLU. The paper gives no equations; this composition follows its Fig. 2 and text.
`bottleneck`, `skip`, `channel_gate` and `spatial_gate` switch a component off (removing exactly
its parameters) for the component ablation.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from ablation.models.resnet import conv1x1, conv3x3

from ablation.models.cbam import CBAM


class _NoSkip(nn.Module):
    """The skip switched off: contributes nothing to the sum."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(())


def _bottleneck(channels: int, ratio: int) -> nn.Sequential:
    mid = channels // ratio
    return nn.Sequential(OrderedDict(
        conv1=conv1x1(channels, mid), bn1=nn.BatchNorm2d(mid), relu1=nn.ReLU(inplace=True),
        conv2=conv3x3(mid, mid), bn2=nn.BatchNorm2d(mid), relu2=nn.ReLU(inplace=True),
        conv3=conv1x1(mid, channels), bn3=nn.BatchNorm2d(channels),
    ))


class IdentityCBAM(nn.Module):
    """x -> ReLU(x + CBAM(bottleneck(x))); keeps the shape, so it can sit after any stage."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7, pooling: str = "avg+max",
                 gates: str = "channel+spatial", channel_gate: bool = True, spatial_gate: bool = True,
                 bottleneck: bool = True, skip: bool = True, bottleneck_ratio: int = 4) -> None:
        super().__init__()
        self.branch = _bottleneck(channels, bottleneck_ratio) if bottleneck else nn.Identity()
        self.cbam = CBAM(channels, reduction, kernel_size, pooling, gates, channel_gate, spatial_gate)
        self.shortcut = nn.Identity() if skip else _NoSkip()
        self.relu = nn.ReLU(inplace=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torchvision's ResNet initialises its own convs this way; the modules we add should match.
        for m in self.branch.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def zero_init_last(self) -> None:
        """Start as the identity on post-ReLU inputs: the branch outputs zeros, so ReLU(x + 0) = x."""
        if isinstance(self.branch, nn.Sequential):
            nn.init.zeros_(self.branch.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.cbam(self.branch(x)) + self.shortcut(x))
