"""torchvision's ResNets with attention modules after chosen stages or inside their blocks.

The backbone is torchvision's own `ResNet` with its state-dict names (`conv1`, `layer1`..`layer4`,
`fc`) intact, so torchvision weights load unchanged; added modules get new names. Two sites:
- `stage`: modules after a stage, under `attention.<stage>` — the paper's Fig. 2 (the precedent is
  BAM, which sits between stages in the official attention-module code);
- `block`: a module on the residual branch of every block of a stage, after the last BN and before
  the shortcut addition, under `<stage>.<i>.attention` — where CBAM (Woo et al.), SE and timm put it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn
from torchvision.models import resnet as tv

from ..spec import ARCHITECTURES, STAGES


class _AttentionSlot:
    """Gives a torchvision block an `attention` module before its addition, the identity by default."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.attention: nn.Module = nn.Identity()


class BasicBlock(_AttentionSlot, tv.BasicBlock):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.attention(self.bn2(self.conv2(out)))
        return self.relu(out + identity)


class Bottleneck(_AttentionSlot, tv.Bottleneck):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.attention(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def _stack(attention: Callable[[int], nn.Module], channels: int, count: int) -> nn.Module:
    return nn.Sequential(*(attention(channels) for _ in range(count)))


class ResNet(tv.ResNet):
    """A torchvision ResNet with `count` modules `attention(width)` at `site` in each of `stages`."""

    def __init__(
        self,
        arch: str,
        *,
        num_classes: int,
        attention: Callable[[int], nn.Module] | None = None,
        stages: Sequence[str] = (),
        count: int = 1,
        site: Literal["stage", "block"] = "stage",
    ) -> None:
        spec = ARCHITECTURES[arch]
        super().__init__(BLOCKS[spec.block], list(spec.layers), num_classes=num_classes)
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}; expected among {', '.join(STAGES)}")
        if site not in ("stage", "block"):
            raise ValueError(f"unknown attention site {site!r}; expected 'stage' or 'block'")
        if stages and attention is None:
            raise ValueError("stages were given without an attention module to place there")
        # Sites without attention hold nn.Identity, so forward is one straight line.
        after = {stage: nn.Identity() for stage in STAGES}
        for stage in stages:
            if site == "stage":
                after[stage] = _stack(attention, spec.width(stage), count)
            else:
                for block in getattr(self, stage):
                    block.attention = _stack(attention, spec.width(stage), count)
        self.attention = nn.ModuleDict(after)

    def _forward_impl(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in STAGES:
            x = self.attention[stage](getattr(self, stage)(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)
