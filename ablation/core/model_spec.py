"""The model section of a study spec: a torchvision ResNet and which attention modules sit where,
built how. Its choices and every attention type's options come from `core.catalog`, where each
entry describes itself, so nothing is declared twice."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator
from pydantic_core import PydanticCustomError

from ablation.core import attentions  # noqa: F401  (registers the attention types)
from ablation.core import catalog
from ablation.core.catalog import ARCHITECTURES, ATTENTIONS
from ablation.core.sites import STAGES, Site, format_placement, parse_placement


class SpecError(ValueError):
    """A study spec that cannot run; the message names the file and the key."""


def _per_stage(value: Any, low: int, high: int | None) -> int | dict[str, int]:
    """An int in [low, high], or a mapping {stage: int in [low, high]} in network order."""

    def check(v: Any, where: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < low or (high is not None and v > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"{where}expected an integer {bound}, got {v!r}")
        return v

    if isinstance(value, dict):
        unknown = [k for k in value if k not in STAGES]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a stage; a per-stage mapping has keys among {', '.join(STAGES)}")
        return {s: check(value[s], f"{s}: ") for s in STAGES if s in value}
    return check(value, "")


_NUMBERS = {int: ("an integer", "integers"), float: ("a number", "numbers")}


def _number_expected(annotation: Any, value: Any) -> str | None:
    """What a numeric setting expects, in words, when `value` gives it a boolean instead; else None."""
    options = set(get_args(annotation)) - {type(None)} if get_origin(annotation) in (Union, UnionType) else {annotation}
    if len(options) != 1:  # e.g. int | dict: the per-stage settings check their values themselves
        return None
    (kind,) = options
    if kind in _NUMBERS and isinstance(value, bool):
        return _NUMBERS[kind][0]
    if get_origin(kind) is list and get_args(kind)[0] in _NUMBERS and isinstance(value, list) \
            and any(isinstance(v, bool) for v in value):
        return _NUMBERS[get_args(kind)[0]][1]
    return None


class Section(BaseModel):
    """A section of a spec: an unknown key is an error, values are frozen, a boolean is never a number."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads true as 1, so `epochs: true` would quietly train one epoch.
        expected = _number_expected(cls.model_fields[info.field_name].annotation, value)
        if expected:
            raise PydanticCustomError("bool_for_number", "expected {expected}, got {got}",
                                      {"expected": expected, "got": json.dumps(value, default=str)})
        return value


_CORE = ("arch", "attention", "placement", "count", "zero_init", "pretrained")


def _attention_options() -> dict[str, tuple[Any, Any]]:
    """Every attention type's options as `model.*` fields: one field per name, which each type that
    takes it must declare alike (the spec has one `model.reduction`, whoever reads it)."""
    fields: dict[str, Any] = {}
    users: dict[str, list[str]] = {}
    for name, kind in ATTENTIONS.items():
        for option, info in kind.options.model_fields.items():
            if option in _CORE:
                raise TypeError(f"attention type {name!r}: option {option!r} is a model setting of its own")
            known = fields.setdefault(option, info)
            if (known.annotation, known.default, known.json_schema_extra) != \
                    (info.annotation, info.default, info.json_schema_extra):
                raise TypeError(f"attention type {name!r} declares model.{option} unlike {users[option][0]!r} does; "
                                "an option shared by types must have one type, default and bounds")
            users.setdefault(option, []).append(name)
    return {option: (info.annotation, Field(info.default, description=f"{info.description} ({', '.join(users[option])})",
                                            json_schema_extra=info.json_schema_extra))
            for option, info in fields.items()}


_OPTIONS = _attention_options()
ATTENTION_OPTIONS = frozenset(_OPTIONS)


def options_of(types: Iterable[str]) -> set[str]:
    """The `model.*` options these attention types take (Identity-CBAM's reduction, BAM's dilation, ...)."""
    return {option for name in types for option in ATTENTIONS.get(name).options.model_fields}


# Settings that take one value for every stage or a mapping {stage: value}.
PER_STAGE = ("count", *(o for o, (_, info) in _OPTIONS.items() if catalog.per_stage_bounds(info)))
# Switches a leave-one-component-out study may turn off, over all types (each type has its own).
COMPONENTS = tuple(dict.fromkeys(c for _, kind in ATTENTIONS.items() for c in kind.components))
# `model.*` keys a type no longer takes -> what to write instead (BAM's combine -> variant).
RETIRED = {f"model.{key}": hint for _, kind in ATTENTIONS.items() for key, hint in kind.options.retired.items()}


class _ModelCore(Section):
    arch: Literal[ARCHITECTURES.names()] = "resnet50"  # type: ignore[valid-type]
    attention: Literal[ATTENTIONS.names()] = Field(  # type: ignore[valid-type]
        "identity_cbam", description="; ".join(f"{name}: {kind.summary}" for name, kind in ATTENTIONS.items()))
    placement: str = Field("all", description="none, all (the attention type's own sites: every stage, BAM's "
                                              "layer1-3), or sites joined by '+': stages (layer3) or blocks (layer3.2)")
    count: int | dict[str, int] = catalog.per_stage(1, low=0, high=4,
                                                    description="modules stacked at each site (0-4), or {stage: count}")
    zero_init: bool = Field(False, description="start each module that can as the identity (Identity-CBAM: its "
                                               "last branch BN at 0)")
    pretrained: Path | None = Field(None, description="a torchvision ResNet state-dict file to start from")

    @field_validator("placement")
    @classmethod
    def _known_sites(cls, placement: str, info: ValidationInfo) -> str:
        arch = info.data.get("arch")
        layers = ARCHITECTURES.get(arch).layers if arch else None
        everywhere = all_stages(info.data.get("attention"))
        sites = parse_placement(placement, layers, arch or "", everywhere)
        # `all` stays `all`: each type's own sites, whichever type an arm switches to. Sites spelled out
        # become `all` only for a type whose `all` is every stage (not BAM, whose `all` is layer1-3).
        return "all" if placement == "all" else format_placement(sites, spell_all=everywhere == STAGES)

    @field_validator("pretrained")
    @classmethod
    def _weights_file_exists(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"no such file: {path} (a torchvision ResNet state dict saved with torch.save)")
        # Absolute, because trials run in their own working directories.
        return None if path is None else path.resolve()

    def at(self, name: str, stage: str) -> Any:
        """A per-stage setting's value at `stage` (0 for a count the mapping leaves out)."""
        value = getattr(self, name)
        return value.get(stage, 0) if isinstance(value, dict) else value

    def count_at(self, stage: str) -> int:
        return self.at("count", stage)

    def reduction_at(self, stage: str) -> int:
        return self.at("reduction", stage)

    @property
    def sites(self) -> tuple[Site, ...]:
        """The sites that receive attention modules (count above zero)."""
        if ATTENTIONS.get(self.attention).site is None:
            return ()
        return tuple(s for s in parse_placement(self.placement, everywhere=all_stages(self.attention))
                     if self.count_at(s.stage))


def all_stages(attention: str | None) -> tuple[str, ...]:
    """The stages placement `all` stands for with this attention type (every stage if it is unknown)."""
    return ATTENTIONS.get(attention).all_stages if attention in ATTENTIONS else STAGES


def _per_stage_setting(cls, value: Any, info: ValidationInfo) -> int | dict[str, int]:
    """A per-stage setting within its bounds, with an entry for every stage the placement fills."""
    low, high = catalog.per_stage_bounds(cls.model_fields[info.field_name])
    value = _per_stage(value, low, high)
    if isinstance(value, dict) and "placement" in info.data:
        count = info.data.get("count") if info.field_name != "count" else None
        missing = [s for s in _placed_stages(info.data["placement"], count, info.data.get("attention"))
                   if s not in value]
        if missing:
            raise ValueError(f"the placement puts modules in {missing[0]}, but the {info.field_name} mapping "
                             "has no entry for it")
    return value


def _divides_channels(cls, value: Any, info: ValidationInfo) -> Any:
    """A reduction must divide the channels of every stage that holds a module that uses it."""
    attention = info.data.get("attention")
    if not {"arch", "placement", "count"} <= info.data.keys() or attention is None \
            or info.field_name not in ATTENTIONS.get(attention).options.model_fields:
        return value
    arch = ARCHITECTURES.get(info.data["arch"])
    for stage in _placed_stages(info.data["placement"], info.data["count"], attention):
        ratio = value[stage] if isinstance(value, dict) else value
        if arch.width(stage) % ratio:
            raise ValueError(f"{info.field_name} {ratio} does not divide the {arch.width(stage)} channels of "
                             f"{info.data['arch']} {stage}; use a divisor of {arch.width(stage)}")
    return value


# The model section: the core settings and every registered attention type's options. Fields are
# validated in declaration order, so arch, attention, placement and count are known to the options.
ModelSpec = create_model(
    "ModelSpec", __base__=_ModelCore, __module__=__name__,
    __validators__={
        "_per_stage_settings": field_validator(*PER_STAGE, mode="before")(_per_stage_setting),
        "_divides_channels": field_validator(*(o for o, (_, info) in _OPTIONS.items()
                                               if catalog.divides_channels(info)))(_divides_channels),
    },
    **_OPTIONS,
)
ModelSpec.__doc__ = "The network: a torchvision ResNet, and which attention modules sit where, built how."


def _placed_stages(placement: str, count: int | dict[str, int] | None = None,
                   attention: str | None = None) -> list[str]:
    stages = dict.fromkeys(site.stage for site in parse_placement(placement, everywhere=all_stages(attention)))
    if isinstance(count, int):
        return list(stages) if count else []
    return [s for s in stages if count is None or count.get(s, 0)]


