"""torchvision's ResNets with attention modules inserted after chosen stages.

The backbone is torchvision's own `ResNet` with its state-dict names (`conv1`, `layer1`..`layer4`,
`fc`) intact, so torchvision weights load unchanged; the added modules live under `attention.*`.
Stage-level placement after every stage is the paper's Fig. 2 (the precedent is BAM, which sits
between stages in the official attention-module code).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torchvision.models import resnet as tv

from ..spec import ARCHITECTURES, STAGES

BLOCKS: dict[str, type[tv.BasicBlock] | type[tv.Bottleneck]] = {"basic": tv.BasicBlock, "bottleneck": tv.Bottleneck}


class ResNet(tv.ResNet):
    """A torchvision ResNet whose stage `s` is followed by `count` modules `attention(width_s)`."""

    def __init__(
        self,
        arch: str,
        *,
        num_classes: int,
        attention: Callable[[int], nn.Module] | None = None,
        stages: Sequence[str] = (),
        count: int = 1,
    ) -> None:
        spec = ARCHITECTURES[arch]
        super().__init__(BLOCKS[spec.block], list(spec.layers), num_classes=num_classes)
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}; expected among {', '.join(STAGES)}")
        if stages and attention is None:
            raise ValueError("stages were given without an attention module to place there")
        # Stages without attention get nn.Identity, so forward is one straight line.
        self.attention = nn.ModuleDict(
            {
                stage: nn.Sequential(*(attention(spec.width(stage)) for _ in range(count)))
                if stage in stages
                else nn.Identity()
                for stage in STAGES
            }
        )

    def _forward_impl(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in STAGES:
            x = self.attention[stage](getattr(self, stage)(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)
