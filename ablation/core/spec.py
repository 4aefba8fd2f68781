"""The study spec: the one schema every name in `ablate` comes from.

A study spec is a YAML file with the sections below. Its dotted paths (`model.placement`,
`train.lr`, ...) are at once the `--set` keys, the `search.space` axes, the trial params in
Ray Tune and the param names in MLflow. Validation happens here, before Ray starts or any
MLflow run exists, and every error names the file and the key.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (BaseModel, ConfigDict, Field, StrictInt, ValidationError, ValidationInfo, create_model,
                      field_validator, model_validator)
from pydantic_core import PydanticCustomError

from ablation import data, models
from ablation.core import sites
from ablation.core import catalog
from ablation.core.sites import Site, format_placement, parse_placement

# The choices below come from the registries, where each entry describes itself.
STAGES = sites.STAGES
ARCHITECTURES = models.ARCHITECTURES
ATTENTIONS = models.ATTENTIONS
DATASETS = data.DATASETS
EMOTIONS = data.EMOTIONS
METRICS = ("val_macro_f1", "val_accuracy", "val_loss")

# Off while a spec is only priced (`ablate plan`): a dataset on another machine need not be on this one.
_DATA_ON_DISK: ContextVar[bool] = ContextVar("data_on_disk", default=True)


@contextmanager
def data_elsewhere() -> Iterator[None]:
    """Within this block, a spec's `data.root` need not exist here."""
    token = _DATA_ON_DISK.set(False)
    try:
        yield
    finally:
        _DATA_ON_DISK.reset(token)


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


class _Section(BaseModel):
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
# Settings that take one value for every stage or a mapping {stage: value}.
PER_STAGE = ("count", *(o for o, (_, info) in _OPTIONS.items() if catalog.per_stage_bounds(info)))
# Switches a leave-one-component-out study may turn off, over all types (each type has its own).
COMPONENTS = tuple(dict.fromkeys(c for _, kind in ATTENTIONS.items() for c in kind.components))
# `model.*` keys a type no longer takes -> what to write instead (BAM's combine -> variant).
RETIRED = {f"model.{key}": hint for _, kind in ATTENTIONS.items() for key, hint in kind.options.retired.items()}


class _ModelCore(_Section):
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
        everywhere = _everywhere(info.data.get("attention"))
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
        return tuple(s for s in parse_placement(self.placement, everywhere=_everywhere(self.attention))
                     if self.count_at(s.stage))


def _everywhere(attention: str | None) -> tuple[str, ...]:
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
    stages = dict.fromkeys(site.stage for site in parse_placement(placement, everywhere=_everywhere(attention)))
    if isinstance(count, int):
        return list(stages) if count else []
    return [s for s in stages if count is None or count.get(s, 0)]


class AugmentSpec(_Section):
    """Training-time augmentation; validation and test images are never augmented."""

    flip: bool = Field(True, description="random horizontal flip")
    rotation: float = Field(0, ge=0, le=45, description="random rotation up to this many degrees")
    crop: float = Field(1.0, gt=0, le=1, description="random resized crop keeping at least this share of the area")
    color_jitter: float = Field(0, ge=0, le=1, description="random brightness, contrast and saturation change")


class DataSpec(_Section):
    dataset: Literal[DATASETS.names()] = Field(  # type: ignore[valid-type]
        "synthetic", description="; ".join(f"{name}: {kind.summary}" for name, kind in DATASETS.items()))
    root: Path | None = Field(None, validate_default=True,
                              description="the dataset as extracted (a folder; for fer2013 the CSV or its folder)")
    image_size: int = Field(64, ge=16, le=1024)
    train_per_class: int | None = Field(None, ge=1, description="at most this many per class; default all (generated: 200)")
    val_per_class: int | None = Field(None, ge=1, description="default all (generated: 100)")
    test_per_class: int | None = Field(None, ge=1, description="default all (generated: 100)")
    seed: int = Field(0, ge=0, description="seed of the data (generation, subsampling, AI-HUB's val/test split)")
    label_from: Literal["majority", "uploader"] = Field(
        "majority", description="AI-HUB: the annotators' majority (the uploader's label when all three differ), "
                                "or always the uploader's")
    label_map: dict[str, str | None] | None = Field(
        None, description="FER2013/RAF-DB: source label -> one of the six classes, or null to drop it")
    augment: AugmentSpec = AugmentSpec()
    workers: int | None = Field(None, ge=0, description="data-loader processes; default fitted to the trial's CPUs")

    @field_validator("root")
    @classmethod
    def _root_exists(cls, root: Path | None, info: ValidationInfo) -> Path | None:
        if root is None:
            dataset = info.data.get("dataset")
            if dataset is not None and DATASETS.get(dataset).read is not None:
                raise ValueError(f"dataset {info.data['dataset']} needs data.root: the folder it was extracted to")
            return None
        if not root.exists():
            if not _DATA_ON_DISK.get():
                return root.absolute()
            raise ValueError(f"no such file or folder: {root}")
        return root.resolve()  # trials run in their own working directories

    @field_validator("label_map")
    @classmethod
    def _maps_onto_the_six_classes(cls, mapping: dict[str, str | None] | None) -> dict[str, str | None] | None:
        for source, target in (mapping or {}).items():
            if target is not None and target not in EMOTIONS:
                raise ValueError(f"{source!r} -> {target!r}: expected one of {', '.join(EMOTIONS)}, or null to drop")
        return mapping

    def per_class(self, split: str) -> int | None:
        """How many images of each class `split` takes at most (None: all there are)."""
        given = getattr(self, f"{split}_per_class")
        return DATASETS.get(self.dataset).default_per_class.get(split) if given is None else given


class TrainSpec(_Section):
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(64, ge=2, description="images per step; at least 2, since BatchNorm cannot train on one")
    lr: float = Field(0.01, gt=0)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="on a GPU: mixed precision (auto: bf16 where supported, else fp16); the CPU uses fp32")
    channels_last: bool = Field(True, description="on a GPU: channels-last memory layout, faster with mixed precision")


class RaceSpec(_Section):
    """Seeds go where the answer is still open: every arm starts with `start` seeds, then only the arms
    not yet decided against the baseline get more, up to all of `search.seeds`."""

    start: int = Field(3, ge=2, description="seeds every arm runs before any is decided")
    margin: float = Field(gt=0, allow_inf_nan=False, description="an arm whose sequentially valid interval for its difference from "
                                            "the baseline lies inside ±margin is practically equivalent to it")
    alpha: float = Field(0.05, gt=0, lt=0.5, description=(
        "two separate bounds, each over the whole race and all its looks, for Gaussian paired differences: the "
        "chance that some arm with no true difference is declared better or worse, and the chance that some arm "
        "at least `margin` away is declared equivalent (not the chance of any wrong decision: the two can add up); "
        "in mode best, the chance that the best arm is dropped (with tied arms some arm can be dropped more often)"))
    mode: Literal["baseline", "best"] = Field(
        "baseline", description="baseline: each arm is decided against the baseline (better, worse, equivalent); "
                                "best: arms drop out once worse than the current leader")
    baseline: str | None = Field(None, description="the arm to compare with, by its label; default: the first arm "
                                                   "without attention modules")


class SearchSpec(_Section):
    method: Literal["grid", "random", "optuna"] = Field(
        "grid", description="grid: every arm of the design, once per seed; random, optuna (TPE): num_samples "
                            "trials drawn from the space, each with one of the seeds")
    num_samples: int = Field(10, ge=1, description="random/optuna: how many trials to draw")
    max_concurrent: int | None = Field(None, ge=1, description="optuna: how many trials it suggests at once")
    scheduler: Literal["fifo", "asha", "hyperband"] = Field(
        "fifo", description="fifo runs every trial to the end (an ablation's default: early stopping is biased "
                            "against slow starters); asha and hyperband stop the weaker trials early")
    grace_period: int = Field(1, ge=1, description="asha: epochs every trial gets before it may be stopped")
    reduction_factor: int = Field(3, ge=2, description="asha/hyperband: 1/this of the trials go on at each rung")
    design: Literal["grid", "ofat", "loco"] = Field(
        "grid", description="grid: every combination of the space; ofat: one factor at a time around the baseline; "
                            "loco: the module, the module without each component in turn, and the baseline")
    space: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values")
    baseline: dict[str, Any] = Field(
        default_factory=dict, description="dotted key -> value: ofat's centre (default: the spec as written), "
                                          "loco's reference arm (default: model.attention=none)")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1,
                             description="the seeds each arm runs; with race, {start: 3, max: 20} means seeds 0 to "
                                         "19, the first 3 for every arm")
    race: RaceSpec | None = Field(None, description="decide arms as seeds arrive, giving seeds only to open ones")

    @model_validator(mode="before")
    @classmethod
    def _seed_budget(cls, tree: Any) -> Any:
        # `seeds: {start, max}` is the race's budget, spelled where the seeds are: it becomes the seed
        # list and race.start, so the stored spec reads back as written.
        if isinstance(tree, dict) and isinstance(tree.get("seeds"), dict):
            budget = dict(tree["seeds"])
            unknown = set(budget) - {"start", "max"}
            if unknown or not isinstance(budget.get("max"), int) or isinstance(budget.get("max"), bool):
                raise ValueError(f"seeds: expected a list of seeds or {{start: N, max: M}}, got {budget!r}")
            race = tree.get("race")
            if not isinstance(race, dict):
                raise ValueError("seeds: {start, max} is a race's budget; add race: {margin: ...}")
            tree = {**tree, "seeds": list(range(budget["max"])),
                    "race": {**race, **({"start": budget["start"]} if "start" in budget else {})}}
        return tree

    @field_validator("design")
    @classmethod
    def _sampling_needs_a_grid(cls, design: str, info: ValidationInfo) -> str:
        if design != "grid" and info.data.get("method", "grid") != "grid":
            raise ValueError(f"design {design} lists its arms; method {info.data['method']} samples a grid space, "
                             "so use design: grid with it (or method: grid with this design)")
        return design

    @field_validator("space", mode="before")
    @classmethod
    def _expand_subsets(cls, space: Any) -> Any:
        helper = space.get("model.placement") if isinstance(space, dict) else None
        if isinstance(helper, dict):
            if "subsets_of" not in helper or set(helper) - {"subsets_of", "size"}:
                raise ValueError("model.placement: expected a list of placements or {subsets_of: [sites], size: "
                                 f"[sizes]}}, got {helper!r}")
            try:
                space = {**space, "model.placement": placement_subsets(**helper)}
            except ValueError as err:
                raise ValueError(f"model.placement: {err}") from None
        return space

    @field_validator("space")
    @classmethod
    def _axes_are_settings(cls, space: dict[str, list[Any]], info: ValidationInfo) -> dict[str, list[Any]]:
        if not space and info.data.get("design") != "loco":  # loco's arms come from the module's components
            raise ValueError("the search space is empty; give at least one axis, e.g. model.placement: [none, all]")
        for key, values in space.items():
            _check_setting(key)
            if not values:
                raise ValueError(f"{key!r} has no values")
            if len({json.dumps(v, sort_keys=True, default=str) for v in values}) != len(values):
                raise ValueError(f"{key!r} lists a value twice")
        return space

    @field_validator("baseline")
    @classmethod
    def _baseline_keys_are_settings(cls, baseline: dict[str, Any]) -> dict[str, Any]:
        for key in baseline:
            _check_setting(key)
        return baseline

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds

    @field_validator("race")
    @classmethod
    def _race_needs_a_budget(cls, race: RaceSpec | None, info: ValidationInfo) -> RaceSpec | None:
        if race is None:
            return None
        if info.data.get("method", "grid") != "grid":
            raise ValueError(f"race decides the arms of a design; method {info.data['method']} draws its trials")
        if info.data.get("scheduler", "fifo") != "fifo":
            raise ValueError("race compares finished seeds; a scheduler that stops trials early leaves none to compare "
                             "(use scheduler: fifo)")
        seeds = info.data.get("seeds") or []
        if race.start > len(seeds):
            raise ValueError(f"race.start is {race.start} but search.seeds has only {len(seeds)}; "
                             "give at least start seeds (e.g. seeds: {start: 3, max: 20})")
        return race


def placement_subsets(subsets_of: list[str], size: int | list[int] | None = None) -> list[str]:
    """`{subsets_of: [layer1, layer2, layer3], size: [1, 2]}` -> every placement of that many of those sites."""
    if not isinstance(subsets_of, list) or not subsets_of:
        raise ValueError("subsets_of: expected a list of sites, e.g. [layer1, layer2, layer3, layer4]")
    sites = parse_placement("+".join(str(s) for s in subsets_of))
    sizes = range(1, len(sites) + 1) if size is None else [size] if isinstance(size, int) else size
    if any(isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= len(sites) for k in sizes):
        raise ValueError(f"size: expected subset sizes between 0 and {len(sites)}, got {size!r}")
    # Spelled out, never `all`: what `all` stands for depends on the attention type, which the model
    # section's validation knows (and which spells every placement canonically for it).
    return list(dict.fromkeys(format_placement(c, spell_all=False) for k in sizes
                              for c in itertools.combinations(sites, k)))


class ResourcesSpec(_Section):
    cpu: float = Field(1, gt=0, description="CPUs per trial")
    gpu: float = Field(0, ge=0, description="GPUs per trial; fractions share a device")
    max_failures: int = Field(2, ge=0, description="restarts of a failed trial from its last checkpoint")


class StudySpec(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="MLflow experiment name")
    description: str | None = Field(
        None, description="what the study asks, in a sentence or a few (Markdown): the MLflow experiment's "
                          "description, and its parent run's")
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    search: SearchSpec
    resources: ResourcesSpec = ResourcesSpec()
    reference: Literal["paper"] | None = Field(
        None, description="published results the report prints beside the study's (paper: Oh et al.'s Tables 1 and 2)")
    metric: Literal[METRICS] = "val_macro_f1"  # type: ignore[valid-type]
    mode: Literal["max", "min"] = "max"
    keep_models: Literal["best", "all", "none"] | Annotated[StrictInt, Field(ge=1)] = Field(
        "best", description="whose trained weights each run keeps for `ablate explain`: best (the best seed of "
                                  "each arm, by `metric`), all, none, or a number k (the k best seeds of each arm)")

    @property
    def models_kept_per_arm(self) -> int | None:
        """How many seeds of each arm keep their weights; None for all."""
        return {"best": 1, "all": None, "none": 0}.get(self.keep_models, self.keep_models)

    def params(self) -> dict[str, Any]:
        """The trainable settings as flat dotted keys (`model.placement`, `train.lr`, ...), each a scalar."""
        flat = self.model_dump(mode="json", include=set(SWEEPABLE))
        params: dict[str, Any] = {}
        for s, section in flat.items():
            for k, v in section.items():
                if k in _SUBSECTIONS.get(s, ()):  # data.augment -> data.augment.flip, ...
                    params |= {f"{s}.{k}.{leaf}": value for leaf, value in v.items()}
                else:
                    params[f"{s}.{k}"] = json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else v
        return params

    def trials(self, *, every_seed: bool = False) -> list[Trial]:
        """Every arm of the design, times each seed (a race's first `start`, unless `every_seed`);
        two arms that build the same trial are an error."""
        seeds = self.search.seeds if every_seed or not self.search.race else self.search.seeds[:self.search.race.start]
        trials = [Trial.create(self, overrides | {"seed": seed}, arm=arm)
                  for arm, overrides in self.arms() for seed in seeds]
        seen: dict[str, Trial] = {}
        for trial in trials:
            if trial.id in seen:
                raise SpecError(f"search: arms {seen[trial.id].arm!r} and {trial.arm!r} are the same configuration")
            seen[trial.id] = trial
        return trials

    def trial(self, arm: str, seed: int) -> Trial:
        """The trial of one arm at one seed (a race adds them one by one)."""
        overrides = dict(self.arms())[arm]
        return Trial.create(self, overrides | {"seed": seed}, arm=arm)

    def race_baseline(self) -> str:
        """The arm a race compares the others with: race.baseline, else the first arm without attention."""
        arms = dict(self.arms())
        named = self.search.race.baseline if self.search.race else None
        if named is not None:
            if named not in arms:
                raise SpecError(f"search.race.baseline: {named!r} is not an arm; the arms are {', '.join(arms)}")
            return named
        for arm, overrides in arms.items():
            if not _apply(self, overrides, origin="search").model.sites:
                return arm
        raise SpecError("search.race: no arm is without attention modules to compare with; "
                        "name one with search.race.baseline")

    def arms(self) -> list[tuple[str, dict[str, Any]]]:
        """The configurations the design asks for, as (label, overrides of this spec)."""
        grid = [dict(zip(self.search.space, point)) for point in itertools.product(*self.search.space.values())]
        if self.search.design == "grid":
            return [(label(point), point) for point in grid]
        if self.search.design == "ofat":
            centre = _apply(self, self.search.baseline, origin="search.baseline")
            at_centre = {key: centre.get(key) for key in self.search.space}
            arms = [("baseline", self.search.baseline | at_centre)]
            for key, values in self.search.space.items():
                arms += [(label({key: v}), self.search.baseline | at_centre | {key: v})
                         for v in values if v != at_centre[key]]
            return arms
        components = ATTENTIONS.get(self.model.attention).components
        if not components:
            raise SpecError(f"search.design: loco leaves out components of the attention module, and "
                            f"model.attention={self.model.attention} has none ({', '.join(COMPONENTS)})")
        baseline = self.search.baseline or {"model.attention": "none"}
        arms = []
        for point in grid:
            where = f" at {label(point)}" if point else ""
            arms.append((f"full{where}", point))
            arms += [(f"no {c}{where}", point | {f"model.{c}": False}) for c in components]
            arms.append((f"baseline{where}", point | baseline))
        return arms

    def axes(self) -> list[str]:
        """What tells configurations apart in a table: a grid's axes, else the arm (ofat and loco
        arms each change one thing, which their labels name)."""
        return list(self.search.space) if self.search.design == "grid" else ["arm"]

    def get(self, key: str) -> Any:
        """The value at a dotted key (`model.reduction`, or `model.reduction.layer3` of a per-stage setting)."""
        section, leaf, *stage = key.split(".")
        value = getattr(getattr(self, section), leaf)
        if stage and isinstance(value, dict):
            return value.get(stage[0])
        return value


def json_schema() -> dict[str, Any]:
    """The study spec as a JSON Schema, read from the same registries as its validation."""
    return StudySpec.model_json_schema(mode="validation")


def label(point: dict[str, Any]) -> str:
    """`{"model.skip": False, "train.lr": 0.1}` -> `skip=false,lr=0.1`, values spelled as in a spec."""
    return ",".join(f"{_short(k)}={json.dumps(v) if isinstance(v, bool) else v}" for k, v in point.items())


def _short(key: str) -> str:
    """`model.placement` -> `placement`; `model.count.layer3` -> `count.layer3`."""
    return key.split(".", 1)[1]


# Sections whose settings a trial may vary; `search` and `resources` describe the study itself.
SWEEPABLE = ("model", "data", "train")


def _leaf_keys() -> set[str]:
    return {
        f"{section}.{field}"
        for section in SWEEPABLE
        for field in StudySpec.model_fields[section].annotation.model_fields
    }


# Settings that are sections of their own; their leaves are keys (`data.augment.rotation`).
_SUBSECTIONS = {"data": ("augment",)}


def _check_setting(key: str) -> None:
    """A key a search may set: a leaf of model/data/train or of a subsection, or one stage of a per-stage setting."""
    parent, _, leaf = key.rpartition(".")
    if key in _leaf_keys() and leaf not in _SUBSECTIONS.get(parent, ()):
        return
    if parent in {f"model.{k}" for k in PER_STAGE} and leaf in STAGES:
        return
    if parent == "data.augment" and leaf in AugmentSpec.model_fields:
        return
    if key in RETIRED:
        raise ValueError(f"{key!r}: {RETIRED[key]}")
    raise ValueError(f"{key!r} is not a setting; keys are leaves of {', '.join(SWEEPABLE)} "
                     f"(e.g. model.placement, data.augment.rotation), or model.count.<stage> / model.reduction.<stage>")


@dataclass(frozen=True)
class Trial:
    """One configuration and seed: what a Ray Tune trial trains and an MLflow child run records."""

    id: str
    arm: str  # the configuration's label within the study design
    overrides: dict[str, Any]  # the study spec's settings this arm changes, and the seed
    spec: StudySpec  # the study spec with the overrides applied
    seed: int

    @classmethod
    def create(cls, study: StudySpec, overrides: dict[str, Any], arm: str | None = None) -> Trial:
        axes = {k: v for k, v in overrides.items() if k != "seed"}
        spec = _apply(study, axes, origin="search" if arm else "overrides")
        params = spec.params() | {"seed": overrides["seed"]}
        digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
        arm = label(axes) if arm is None else arm
        return cls(id=digest, arm=arm, overrides=dict(overrides), spec=spec, seed=overrides["seed"])

    @property
    def name(self) -> str:
        return f"{self.arm},seed={self.seed}" if self.arm else f"seed={self.seed}"

    def params(self) -> dict[str, Any]:
        """The trial's settings as flat dotted keys, plus its arm, per-stage axes and seed: the MLflow params."""
        axes = {k: v for k, v in self.overrides.items() if k.count(".") == 2}  # e.g. model.count.layer3
        return self.spec.params() | axes | {"arm": self.arm, "seed": self.seed}


def _parts(key: str) -> tuple[str, ...]:
    """Where a dotted key sits in the spec tree; the keys of search.space and search.baseline are dotted themselves."""
    for mapping in ("space", "baseline"):
        if key.startswith(f"search.{mapping}."):
            return "search", mapping, key.removeprefix(f"search.{mapping}.")
    return tuple(key.split("."))


def _set(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = _parts(key)
    node = tree
    for depth, part in enumerate(parents):
        if depth == 1 and parents[0] == "model" and part in PER_STAGE and not isinstance(node.get(part), dict):
            # One stage of a setting given for all stages: spell the setting out per stage first.
            everywhere = node.get(part, ModelSpec.model_fields[part].default)
            node[part] = dict.fromkeys(STAGES, everywhere)
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
    return "; ".join(part for _, part in _each_error(err))


def _each_error(err: ValidationError) -> list[tuple[tuple[str, ...], str]]:
    """pydantic's errors as (where, `key: what was expected`)."""
    parts = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        key = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            parts.append((loc, f"{key}: {RETIRED.get(key, 'unknown key')}"))
        elif e["type"] == "missing":
            parts.append((loc, f"{key}: required key is missing"))
        elif e["type"] == "bool_for_number":  # its message says what it got, spelled as in YAML
            parts.append((loc, f"{key}: {e['msg']}"))
        else:
            message = e["msg"].removeprefix("Value error, ")
            value = repr(e.get("input"))
            got = "" if isinstance(e.get("input"), dict) or value in message else f" (got {value})"
            parts.append((loc, f"{key}: {message}{got}"))
    return parts


def _blame(err: ValidationError, path: Path, file_tree: dict[str, Any], given: list[tuple[tuple[str, ...], str]]) -> str:
    """One line naming what to fix: each error under the --set it comes from, the others under the file."""
    by_origin: dict[str, list[str]] = {}
    for loc, part in _each_error(err):
        by_origin.setdefault(_origin(loc, path, file_tree, given), []).append(part)
    return "; ".join(f"{origin}: {'; '.join(parts)}" for origin, parts in by_origin.items())


def _origin(loc: tuple[str, ...], path: Path, file_tree: dict[str, Any], given: list[tuple[tuple[str, ...], str]]) -> str:
    """The --set that put the value at `loc` (at or above it, or creating it), else the file."""
    for parts, text in reversed(given):  # a later --set of the same key replaced the earlier ones
        if loc[:len(parts)] == parts or (parts[:len(loc)] == loc and not _in_tree(file_tree, loc)):
            return f"--set {text}"
    return str(path)


def _in_tree(tree: Any, loc: tuple[str, ...]) -> bool:
    for part in loc:
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: int, second: int) -> None:
        super().__init__(f"key {key!r} appears twice (lines {first} and {second}); keep one")
        self.key = key


class _SpecLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, refusing a key given twice in one mapping: PyYAML would keep the
    last one silently, so a second `train:` section would replace the first unnoticed."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` may give keys again: the mapping's own keys override merged ones
            key = self.construct_object(key_node, deep=True)
            try:
                if key in lines:
                    raise _DuplicateKey(key, lines[key], key_node.start_mark.line + 1)
                lines[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key, which construct_mapping reports
                pass
        return super().construct_mapping(node, deep)


# Dotted names, e.g. train.epochs or search.space.model.placement.
_KEY = re.compile(r"[^.\s]+(?:\.[^.\s]+)*")


def parse_override(text: str) -> tuple[str, Any]:
    """`train.epochs=1` -> ("train.epochs", 1); the value is read as YAML, so types are checked."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.epochs=1")
    key = key.strip()
    if not _KEY.fullmatch(key):
        raise SpecError(f"--set {text}: {key!r} is not a key; a key is names joined by dots, e.g. train.epochs "
                        "or search.space.model.placement")
    if not raw.strip():  # YAML would read it as null, which then looks like a fault of the spec file
        raise SpecError(f"--set {text}: the value is empty; give one, or write null for none")
    try:
        return key, yaml.load(raw, Loader=_SpecLoader)
    except _DuplicateKey as err:
        raise SpecError(f"--set {text}: key {err.key!r} appears twice; keep one") from None
    except yaml.YAMLError as err:
        raise SpecError(f"--set {key}: value {raw!r} is not valid YAML ({' '.join(str(err).split())})") from None


def load_spec(path: Path | str, overrides: list[str] | tuple[str, ...] = ()) -> StudySpec:
    """Read, override and validate a study spec, including every trial it expands to."""
    path = Path(path)
    try:
        tree = yaml.load(path.read_text(encoding="utf-8"), Loader=_SpecLoader)
    except OSError as err:
        raise SpecError(f"{path}: cannot read the spec ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: expected UTF-8 text, but byte {err.start} (0x{err.object[err.start]:02x}) is not "
                        "UTF-8; save the file as UTF-8") from None
    except _DuplicateKey as err:
        raise SpecError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(tree, dict):
        raise SpecError(f"{path}: expected a mapping of sections (name, model, data, train, search, ...)")
    file_tree = copy.deepcopy(tree)
    given = []  # (where in the tree, the --set text) of each override, so an error there names it, not the file
    for text in overrides:
        key, value = parse_override(text)
        try:
            _set(tree, key, value)
        except SpecError as err:
            raise SpecError(f"--set {text}: {err}") from None
        given.append((_parts(key), text))
    try:
        spec = StudySpec.model_validate(tree)
        spec.trials(every_seed=True)  # every combination must be valid too (e.g. a reduction for each placement)
        if spec.search.race:
            spec.race_baseline()
    except ValidationError as err:
        raise SpecError(_blame(err, path, file_tree, given)) from None
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
        other_section = any(e["type"] == "extra_forbidden" and len(e["loc"]) == 1 for e in err.errors())
        hint = " (without a spec, only model.* and data.* apply)" if other_section else ""
        raise SpecError(f"--set: {_describe(err)}{hint}") from None
    return sections.model, sections.data
