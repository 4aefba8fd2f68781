"""The study spec: the one schema every name in `ablate` comes from.

A study spec is a YAML file with the sections below. Its dotted paths (`model.placement`,
`train.lr`, ...) are at once the `--set` keys, the `search.space` axes, the trial params in
Ray Tune and the param names in MLflow. Validation happens here, before Ray starts or any
MLflow run exists, and every error names the file and the key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

STAGES = ("layer1", "layer2", "layer3", "layer4")


class Architecture(NamedTuple):
    block: Literal["basic", "bottleneck"]
    layers: tuple[int, int, int, int]
    expansion: int

    def width(self, stage: str) -> int:
        """Channels a stage puts out: torchvision's 64 * 2**i planes times the block expansion."""
        return 64 * 2 ** STAGES.index(stage) * self.expansion


# torchvision's ResNet family; the models package builds exactly these.
ARCHITECTURES = {
    "resnet18": Architecture("basic", (2, 2, 2, 2), 1),
    "resnet34": Architecture("basic", (3, 4, 6, 3), 1),
    "resnet50": Architecture("bottleneck", (3, 4, 6, 3), 4),
    "resnet101": Architecture("bottleneck", (3, 4, 23, 3), 4),
    "resnet152": Architecture("bottleneck", (3, 8, 36, 3), 4),
}


class Attention(NamedTuple):
    site: Literal["stage", "block"] | None  # after the placed stages, or in every block of them
    options: tuple[str, ...]  # the `model.*` settings its module is built with


_CBAM_OPTIONS = ("reduction", "kernel_size", "pooling", "gates")
ATTENTIONS = {
    "none": Attention(None, ()),
    "identity_cbam": Attention("stage", (*_CBAM_OPTIONS, "bottleneck", "skip")),
    "cbam": Attention("block", _CBAM_OPTIONS),
    "se": Attention("block", ("reduction",)),
    "eca": Attention("block", ()),
}
DATASETS = ("synthetic",)
METRICS = ("val_macro_f1", "val_accuracy", "val_loss")


class SpecError(ValueError):
    """A study spec that cannot run; the message names the file and the key."""


def parse_placement(placement: str) -> tuple[str, ...]:
    """`none` -> (), `all` -> every stage, `layer1+layer3` -> those stages in network order."""
    if placement == "none":
        return ()
    if placement == "all":
        return STAGES
    stages = placement.split("+")
    unknown = [s for s in stages if s not in STAGES]
    if unknown or len(set(stages)) != len(stages):
        raise ValueError(
            f"{placement!r} is not a placement; expected 'none', 'all' or distinct stages among "
            f"{', '.join(STAGES)} joined by '+' (e.g. 'layer1+layer3')"
        )
    return tuple(s for s in STAGES if s in stages)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Section):
    arch: Literal[tuple(ARCHITECTURES)] = "resnet50"  # type: ignore[valid-type]
    attention: Literal[tuple(ATTENTIONS)] = "identity_cbam"  # type: ignore[valid-type]
    placement: str = Field("all", description="none, all, or stages joined by '+': where modules go")
    count: int = Field(1, ge=0, le=4, description="modules stacked at each placed stage")
    reduction: int = Field(16, ge=1, description="channel-gate MLP ratio C -> C/r -> C")
    kernel_size: Literal[3, 5, 7] = Field(7, description="spatial-gate convolution size")
    pooling: Literal["avg", "max", "avg+max"] = Field("avg+max", description="channel-gate descriptors")
    gates: Literal["channel+spatial", "spatial+channel", "channel", "spatial"] = Field(
        "channel+spatial", description="which CBAM gates, in which order")
    bottleneck: bool = Field(True, description="Identity-CBAM's residual branch (off: CBAM on the input)")
    skip: bool = Field(True, description="Identity-CBAM's identity connection")
    zero_init: bool = Field(False, description="start each module as the identity (last branch BN at 0)")

    @field_validator("placement")
    @classmethod
    def _known_stages(cls, placement: str) -> str:
        parse_placement(placement)
        return placement

    @field_validator("reduction")
    @classmethod
    def _reduction_divides_channels(cls, reduction: int, info: ValidationInfo) -> int:
        # Fields validate in declaration order, so arch and placement are known here (when valid).
        attention = ATTENTIONS.get(info.data.get("attention"))
        if not {"arch", "placement"} <= info.data.keys() or not attention or "reduction" not in attention.options:
            return reduction
        arch = ARCHITECTURES[info.data["arch"]]
        for stage in parse_placement(info.data["placement"]) if info.data.get("count") else ():
            if arch.width(stage) % reduction:
                raise ValueError(
                    f"reduction {reduction} does not divide the {arch.width(stage)} channels of "
                    f"{info.data['arch']} {stage}; use a divisor of {arch.width(stage)}"
                )
        return reduction

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages that receive attention modules."""
        if self.attention == "none" or self.count == 0:
            return ()
        return parse_placement(self.placement)


class DataSpec(_Section):
    dataset: Literal[DATASETS] = "synthetic"  # type: ignore[valid-type]
    root: Path | None = Field(None, description="dataset folder; unused by the generated dataset")
    image_size: int = Field(64, ge=16, le=1024)
    train_per_class: int = Field(200, ge=1)
    val_per_class: int = Field(100, ge=1)
    test_per_class: int = Field(100, ge=1)
    seed: int = Field(0, ge=0, description="seed of the generated data: fixed, so trial seeds vary training only")


class TrainSpec(_Section):
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.01, gt=0)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"


class SearchSpec(_Section):
    method: Literal["grid"] = "grid"
    space: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)

    @field_validator("space")
    @classmethod
    def _axes_are_settings(cls, space: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not space:
            raise ValueError("the search space is empty; give at least one axis, e.g. model.placement: [none, all]")
        for key, values in space.items():
            section = key.split(".", 1)[0]
            if section not in SWEEPABLE or key not in _leaf_keys():
                raise ValueError(f"{key!r} is not a setting; axes are keys of {', '.join(SWEEPABLE)}")
            if not values:
                raise ValueError(f"{key!r} has no values")
            if len({json.dumps(v, sort_keys=True, default=str) for v in values}) != len(values):
                raise ValueError(f"{key!r} lists a value twice")
        return space

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds


class ResourcesSpec(_Section):
    cpu: float = Field(1, gt=0, description="CPUs per trial")
    gpu: float = Field(0, ge=0, description="GPUs per trial; fractions share a device")


class StudySpec(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="MLflow experiment name")
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    search: SearchSpec
    resources: ResourcesSpec = ResourcesSpec()
    metric: Literal[METRICS] = "val_macro_f1"  # type: ignore[valid-type]
    mode: Literal["max", "min"] = "max"

    def params(self) -> dict[str, Any]:
        """The trainable settings as flat dotted keys (`model.placement`, `train.lr`, ...)."""
        flat = self.model_dump(mode="json", include=set(SWEEPABLE))
        return {f"{s}.{k}": v for s, section in flat.items() for k, v in section.items()}

    def trials(self) -> list[Trial]:
        """One trial per point of the grid over `search.space`, times each seed."""
        axes = list(self.search.space)
        grid = itertools.product(*self.search.space.values())
        return [
            Trial.create(self, {**dict(zip(axes, point)), "seed": seed})
            for point in grid
            for seed in self.search.seeds
        ]


# Sections whose settings a trial may vary; `search` and `resources` describe the study itself.
SWEEPABLE = ("model", "data", "train")


def _leaf_keys() -> set[str]:
    return {
        f"{section}.{field}"
        for section in SWEEPABLE
        for field in StudySpec.model_fields[section].annotation.model_fields
    }


@dataclass(frozen=True)
class Trial:
    """One configuration and seed: what a Ray Tune trial trains and an MLflow child run records."""

    id: str
    overrides: dict[str, Any]  # the axis values and the seed: what sets this trial apart
    spec: StudySpec  # the study spec with the overrides applied
    seed: int

    @classmethod
    def create(cls, study: StudySpec, overrides: dict[str, Any]) -> Trial:
        axes = {k: v for k, v in overrides.items() if k != "seed"}
        spec = _apply(study, axes, origin="search.space")
        params = spec.params() | {"seed": overrides["seed"]}
        digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
        return cls(id=digest, overrides=dict(overrides), spec=spec, seed=overrides["seed"])

    @property
    def name(self) -> str:
        return ",".join(f"{k.split('.')[-1]}={v}" for k, v in self.overrides.items())

    def params(self) -> dict[str, Any]:
        """The trial's settings as flat dotted keys: the MLflow params and report columns."""
        return self.spec.params() | {"seed": self.seed}


def _set(tree: dict[str, Any], key: str, value: Any) -> None:
    if key.startswith("search.space."):
        tree.setdefault("search", {}).setdefault("space", {})[key.removeprefix("search.space.")] = value
        return
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SpecError(f"{key}: {part!r} is not a section")
        node = child
    node[leaf] = value


def _apply(study: StudySpec, overrides: dict[str, Any], origin: str) -> StudySpec:
    tree = study.model_dump(mode="json")
    for key, value in overrides.items():
        _set(tree, key, value)
    try:
        return StudySpec.model_validate(tree)
    except ValidationError as err:
        combo = ", ".join(f"{k}={v}" for k, v in overrides.items())
        raise SpecError(f"{origin} ({combo}): {_describe(err)}") from None


def _describe(err: ValidationError) -> str:
    """pydantic's errors as `key: what was expected`, on one line."""
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            parts.append(f"{key}: unknown key")
        elif e["type"] == "missing":
            parts.append(f"{key}: required key is missing")
        else:
            message = e["msg"].removeprefix("Value error, ")
            value = repr(e.get("input"))
            got = "" if isinstance(e.get("input"), dict) or value in message else f" (got {value})"
            parts.append(f"{key}: {message}{got}")
    return "; ".join(parts)


def parse_override(text: str) -> tuple[str, Any]:
    """`train.epochs=1` -> ("train.epochs", 1); the value is read as YAML, so types are checked."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.epochs=1")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise SpecError(f"--set {key}: value {raw!r} is not valid YAML ({err})") from None


def load_spec(path: Path | str, overrides: list[str] | tuple[str, ...] = ()) -> StudySpec:
    """Read, override and validate a study spec, including every trial it expands to."""
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise SpecError(f"{path}: cannot read the spec ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(tree, dict):
        raise SpecError(f"{path}: expected a mapping of sections (name, model, data, train, search, ...)")
    for text in overrides:
        _set(tree, *parse_override(text))
    try:
        spec = StudySpec.model_validate(tree)
        spec.trials()  # every combination must be valid too (e.g. a reduction for each placement)
    except ValidationError as err:
        raise SpecError(f"{path}: {_describe(err)}") from None
    except SpecError as err:
        raise SpecError(f"{path}: {err}") from None
    return spec


class _ModelAndData(_Section):
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()


def load_model_and_data(path: Path | str | None, overrides: list[str] | tuple[str, ...] = ()) -> tuple[ModelSpec, DataSpec]:
    """The model and data sections of a spec, or of the defaults when there is no spec file."""
    if path is not None:
        spec = load_spec(path, overrides)
        return spec.model, spec.data
    tree: dict[str, Any] = {}
    for text in overrides:
        _set(tree, *parse_override(text))
    try:
        sections = _ModelAndData.model_validate(tree)
    except ValidationError as err:
        raise SpecError(f"--set: {_describe(err)} (without a spec, only model.* and data.* apply)") from None
    return sections.model, sections.data
