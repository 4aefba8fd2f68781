"""Models: ResNets with attention modules, built by name from the registries below."""

from __future__ import annotations

from functools import partial

from torch import nn

from ..registry import Registry
from ..spec import ATTENTIONS, ModelSpec
from .cbam import CBAM, SpatialGate
from .eca import EfficientChannelAttention
from .identity_cbam import IdentityCBAM
from .resnet import ResNet
from .se import SqueezeExcite

# Each attention type takes the channels first and keyword options after (timm's convention).
ATTENTION: Registry = Registry("attention type")
ATTENTION.register("identity_cbam")(IdentityCBAM)
ATTENTION.register("se")(SqueezeExcite)
ATTENTION.register("eca")(EfficientChannelAttention)


@ATTENTION.register("cbam")
def official_cbam(channels: int, **options) -> CBAM:
    """CBAM as the official ResNet-CBAM builds it: the spatial gate's BN starts at zero (gate 0.5)."""
    module = CBAM(channels, **options)
    if isinstance(module.spatial_gate, SpatialGate):
        nn.init.zeros_(module.spatial_gate.bn.weight)
    return module


def build_model(spec: ModelSpec, num_classes: int) -> ResNet:
    """The network a model spec describes, freshly initialised."""
    kind = ATTENTIONS[spec.attention]
    options = {name: getattr(spec, name) for name in kind.options}
    attention = None if kind.site is None else partial(ATTENTION.get(spec.attention), **options)
    model = ResNet(spec.arch, num_classes=num_classes, attention=attention, stages=spec.stages, count=spec.count,
                   site=kind.site or "stage")
    if spec.zero_init:
        for module in model.modules():
            if hasattr(module, "zero_init_last"):
                module.zero_init_last()
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["ATTENTION", "IdentityCBAM", "ResNet", "build_model", "count_parameters"]
