"""What the models offer, described without building anything (like torchvision's weights `meta`):
the architectures (stage widths and blocks) and the attention types (site, options, components).
The study schema reads its choices, its `model.*` settings and their validation from here, so
nothing is declared twice. The builders live in `ablation.models` and register against these names;
adding an attention type is its description in `core/attentions.py` and its module in `models/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from ablation.core.registry import Registry
from ablation.core.sites import STAGES


@dataclass(frozen=True)
class Architecture:
    """A torchvision ResNet: its block kind, blocks per stage and the block's channel expansion."""

    block: Literal["basic", "bottleneck"]
    layers: tuple[int, int, int, int]
    expansion: int

    def width(self, stage: str) -> int:
        """Channels a stage puts out: torchvision's 64 * 2**i planes times the block expansion."""
        return 64 * 2 ** STAGES.index(stage) * self.expansion


ARCHITECTURES: Registry[Architecture] = Registry("architecture")
ARCHITECTURES.register("resnet18", Architecture("basic", (2, 2, 2, 2), 1))
ARCHITECTURES.register("resnet34", Architecture("basic", (3, 4, 6, 3), 1))
ARCHITECTURES.register("resnet50", Architecture("bottleneck", (3, 4, 6, 3), 4))
ARCHITECTURES.register("resnet101", Architecture("bottleneck", (3, 4, 23, 3), 4))
ARCHITECTURES.register("resnet152", Architecture("bottleneck", (3, 8, 36, 3), 4))


class Options(BaseModel):
    """The `model.*` settings an attention type is built with: one field per keyword of its builder,
    with its default, bounds and description. Types that share an option declare it alike."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Keys the type no longer takes -> what to write instead, which a spec that uses one is told.
    retired: ClassVar[dict[str, str]] = {}


def per_stage(default: int, *, low: int, high: int | None = None, description: str,
              divides_channels: bool = False) -> Any:
    """An option given once for every stage or as {stage: value}; `divides_channels` asks that each
    stage's value divide that stage's width (a channel MLP's reduction)."""
    return Field(default, description=description,
                 json_schema_extra={"per_stage": {"low": low, "high": high}, "divides_channels": divides_channels})


def reduction() -> Any:
    """The channel MLP's reduction C -> C/r -> C, shared by every type with such an MLP."""
    return per_stage(16, low=1, description="channel MLP ratio C -> C/r -> C, or {stage: r}", divides_channels=True)


def per_stage_bounds(info) -> tuple[int, int | None] | None:
    """(low, high) of a per-stage option's FieldInfo, or None if it is not one."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    bounds = extra.get("per_stage")
    return None if bounds is None else (bounds["low"], bounds["high"])


def divides_channels(info) -> bool:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return bool(extra.get("divides_channels"))


@dataclass(frozen=True)
class AttentionType:
    """An attention module as a study can ask for it; `ablation.models` builds it from its options."""

    site: Literal["stage", "block"] | None  # after the placed stages (or blocks), inside every block; None: no module
    options: type[Options] = Options
    # Boolean options, each switching one part of the module off: what a leave-one-out design removes.
    components: tuple[str, ...] = field(default=())
    summary: str = ""
    # What placement `all` stands for: the stages its authors put the module at (BAM: layer1-3).
    all_stages: tuple[str, ...] = STAGES

    def __post_init__(self) -> None:
        if not self.all_stages or self.all_stages != tuple(s for s in STAGES if s in self.all_stages):
            raise ValueError(f"all_stages {self.all_stages!r}: expected stages among {', '.join(STAGES)}, in order")
        for name in self.components:
            if self.options.model_fields.get(name) is None or self.options.model_fields[name].annotation is not bool:
                raise ValueError(f"component {name!r} must be a boolean option of {self.options.__name__}")


ATTENTIONS: Registry[AttentionType] = Registry("attention type")
ATTENTIONS.register("none", AttentionType(site=None, summary="the plain ResNet"))
