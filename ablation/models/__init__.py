"""Models: ResNets with attention modules, built by name from the descriptions in `ablation.core`
(`catalog`, `attentions`), one builder registered per attention type."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from ablation.core import attentions  # noqa: F401  (registers the attention types' descriptions)
from ablation.core.catalog import ARCHITECTURES, ATTENTIONS, Architecture, AttentionType, per_stage_bounds
from ablation.core.sites import STAGES, Site, format_placement, parse_placement
from ablation.models.bam import BAM
from ablation.models.cbam import official_cbam
from ablation.models.eca import EfficientChannelAttention
from ablation.models.identity_cbam import IdentityCBAM
from ablation.models.resnet import ResNet
from ablation.models.se import SqueezeExcite

class ModelSettings(Protocol):
    """What building a network reads of the spec's model section (`core.schema.ModelSpec` has it all, plus
    each attention type's options as attributes); the models never import the spec."""

    arch: str
    attention: str
    zero_init: bool
    pretrained: Path | None

    @property
    def sites(self) -> tuple[Site, ...]: ...

    def count_at(self, stage: str) -> int: ...


# Each attention type's builder, (channels, **options) -> module, by the name `core.attentions`
# describes it under; `none` builds nothing.
BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "identity_cbam": IdentityCBAM, "cbam": official_cbam, "se": SqueezeExcite,
    "eca": EfficientChannelAttention, "bam": BAM,
}
if set(BUILDERS) != {name for name, kind in ATTENTIONS.items() if kind.site is not None}:
    raise TypeError(f"attention types without a builder, or builders without a description: "
                    f"{sorted(set(BUILDERS) ^ {n for n, k in ATTENTIONS.items() if k.site is not None})}")


def build_model(spec: ModelSettings, num_classes: int) -> ResNet:
    """The network a model spec describes: freshly initialised, or from `spec.pretrained`'s backbone."""
    kind = ATTENTIONS.get(spec.attention)
    modules = {site: _stacked(spec, kind, site.stage) for site in spec.sites}
    model = ResNet(spec.arch, num_classes=num_classes, attention=modules, inside=kind.site == "block")
    if spec.zero_init:
        for module in model.modules():
            if hasattr(module, "zero_init_last"):
                module.zero_init_last()
    if spec.pretrained is not None:
        load_backbone(model, spec.pretrained)
    return model


def _stacked(spec: ModelSettings, kind: AttentionType, stage: str) -> Callable[[int], nn.Module]:
    """`count_at(stage)` attention modules in a row, built with the stage's options."""
    options = {}
    for name, info in kind.options.model_fields.items():
        value = getattr(spec, name)
        options[name] = value[stage] if per_stage_bounds(info) and isinstance(value, dict) else value
    make = partial(BUILDERS[spec.attention], **options)
    return lambda channels: nn.Sequential(*(make(channels) for _ in range(spec.count_at(stage))))


class WeightsError(ValueError):
    """A pretrained-weights file that is missing or does not fit the network."""


def load_backbone(model: ResNet, path: Path) -> None:
    """Load a torchvision ResNet state dict into `model`, leaving the attention modules as initialised.

    The classifier is kept only if its shape fits (ImageNet's 1000 classes rarely do). Anything
    else that does not match is an error naming the file: the wrong depth, or not a state dict.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weights file") from None
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a file that is not a state dict
        raise WeightsError(f"{path}: not a torch state dict ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a state dict (parameter name -> tensor), as torch.save(model.state_dict())")
    own = model.state_dict()
    if any(own[k].shape != state[k].shape for k in ("fc.weight", "fc.bias") if k in state and k in own):
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    vanilla = {k for k in own if ".attention." not in f".{k}" and ".after." not in k}
    missing = sorted(vanilla - state.keys() - {"fc.weight", "fc.bias"})
    unexpected = sorted(state.keys() - own.keys())
    mismatched = sorted(k for k in state.keys() & own.keys() if state[k].shape != own[k].shape)
    if missing or unexpected or mismatched:
        problems = [f"{what} {keys[0]}" + (f" and {len(keys) - 1} more" if len(keys) > 1 else "")
                    for what, keys in (("missing", missing), ("unexpected", unexpected),
                                       ("wrong shape for", mismatched)) if keys]
        raise WeightsError(f"{path}: does not fit this {type(model).__name__} ({'; '.join(problems)}); "
                           "expected a torchvision ResNet state dict of the same depth")
    model.load_state_dict(state, strict=False)


def check_weights(arch: str, path: Path) -> None:
    """Fail now, not in every trial, if a weights file does not fit `arch`."""
    load_backbone(ResNet(arch, num_classes=1000), path)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["ARCHITECTURES", "ATTENTIONS", "STAGES", "Architecture", "AttentionType", "IdentityCBAM", "Site",
           "format_placement", "parse_placement", "ResNet", "WeightsError", "build_model", "check_weights", "count_parameters", "load_backbone"]
