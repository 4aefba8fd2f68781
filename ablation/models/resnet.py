"""torchvision's ResNets with attention modules after chosen stages or blocks, or inside blocks.

The backbone is torchvision's own `ResNet` with its state-dict names (`conv1`, `layer1`..`layer4`,
`fc`) intact, so torchvision weights load unchanged; added modules get new names. Two kinds of site:
- after: modules after a stage, under `attention.<stage>` — the paper's Fig. 2 (the precedent is
  BAM, which sits between stages in the official attention-module code) — or after one block,
  under `<stage>.<i>.after`;
- inside: a module on the residual branch of every block of a stage (or of one block), after the
  last BN and before the shortcut addition, under `<stage>.<i>.attention` — where CBAM (Woo et
  al.), SE and timm put it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn
from torchvision.models import resnet as tv

from ablation.core.catalog import ARCHITECTURES
from ablation.core.sites import STAGES, Site

# torchvision's ResNet family.


class _AttentionSlots:
    """Gives a torchvision block an `attention` module before its addition and an `after` module
    after its final ReLU, both the identity by default."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.attention: nn.Module = nn.Identity()
        self.after: nn.Module = nn.Identity()


class BasicBlock(_AttentionSlots, tv.BasicBlock):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.attention(self.bn2(self.conv2(out)))
        return self.after(self.relu(out + identity))


class Bottleneck(_AttentionSlots, tv.Bottleneck):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.attention(self.bn3(self.conv3(out)))
        return self.after(self.relu(out + identity))


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(tv.ResNet):
    """A torchvision ResNet with `attention[site](width)` at each site, after it or `inside` its blocks."""

    def __init__(
        self,
        arch: str,
        *,
        num_classes: int,
        attention: Mapping[Site, Callable[[int], nn.Module]] | None = None,
        inside: bool = False,
    ) -> None:
        spec = ARCHITECTURES.get(arch)
        super().__init__(BLOCKS[spec.block], list(spec.layers), num_classes=num_classes)
        # Sites without attention hold nn.Identity, so forward is one straight line.
        after = {stage: nn.Identity() for stage in STAGES}
        for site, make in (attention or {}).items():
            if site.stage not in STAGES:
                raise ValueError(f"unknown stage {site.stage!r}; expected one of {', '.join(STAGES)}")
            blocks = getattr(self, site.stage)
            if site.block is not None and site.block >= len(blocks):
                raise ValueError(f"{site}: {arch} {site.stage} has {len(blocks)} blocks")
            width = spec.width(site.stage)
            if inside:
                for block in blocks if site.block is None else [blocks[site.block]]:
                    block.attention = make(width)
            elif site.block is None:
                after[site.stage] = make(width)
            else:
                blocks[site.block].after = make(width)
        self.attention = nn.ModuleDict(after)

    def _forward_impl(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in STAGES:
            x = self.attention[stage](getattr(self, stage)(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)
