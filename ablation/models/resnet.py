"""ResNets in torchvision's shape, with attention modules after chosen stages or blocks, or inside blocks.

The network is torchvision's `resnet.py` (He et al.), written out here rather than imported: importing
torchvision loads its detection ops, which load `torch._dynamo`, sympy and triton, 160 MB and 2 s in
every trial's worker for code a trial never runs. Layers are built in torchvision's order and
initialised as it does, so a seed draws the same weights, and its state-dict names (`conv1`,
`layer1`..`layer4`, `fc`) are kept, so torchvision weights load unchanged (tests/test_models.py
checks both against torchvision itself). Added modules get new names. Two kinds of site:
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

from ablation.core.catalog import ARCHITECTURES
from ablation.core.sites import STAGES, Site


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class _Block(nn.Module):
    """A residual block with slots for attention: `attention` on the branch before the addition and
    `after` the final ReLU, both the identity unless a module is placed there. Subclasses register
    their layers in torchvision's order: the init pass walks modules in that order, drawing weights."""

    expansion = 1

    def _slots(self, downsample: nn.Module | None) -> None:
        self.downsample = downsample
        self.attention: nn.Module = nn.Identity()
        self.after: nn.Module = nn.Identity()

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.after(self.relu(self.attention(self.branch(x)) + identity))


class BasicBlock(_Block):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv3x3(inplanes, planes, stride), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self._slots(downsample)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))


class Bottleneck(_Block):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv1x1(inplanes, planes), nn.BatchNorm2d(planes)
        # The stride sits on the 3x3 conv (ResNet v1.5), as in torchvision.
        self.conv2, self.bn2 = conv3x3(planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = conv1x1(planes, planes * self.expansion), nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self._slots(downsample)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn3(self.conv3(self.relu(self.bn2(self.conv2(out)))))


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """A ResNet with `attention[site](width)` at each site, after it or `inside` its blocks."""

    def __init__(
        self,
        arch: str,
        *,
        num_classes: int,
        attention: Mapping[Site, Callable[[int], nn.Module]] | None = None,
        inside: bool = False,
    ) -> None:
        super().__init__()
        spec = ARCHITECTURES.get(arch)
        block = BLOCKS[spec.block]
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, (stage, blocks) in enumerate(zip(STAGES, spec.layers)):
            setattr(self, stage, self._make_layer(block, 64 * 2**i, blocks, stride=1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        self.attention = nn.ModuleDict(self._place(arch, attention or {}, inside))

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int,
                    stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _place(self, arch: str, attention: Mapping[Site, Callable[[int], nn.Module]],
               inside: bool) -> dict[str, nn.Module]:
        """Builds each site's module where it goes; returns the modules after stages, the identity
        where none is placed, so forward is one straight line."""
        spec = ARCHITECTURES.get(arch)
        after: dict[str, nn.Module] = {stage: nn.Identity() for stage in STAGES}
        for site, make in attention.items():
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
        return after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in STAGES:
            x = self.attention[stage](getattr(self, stage)(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))
