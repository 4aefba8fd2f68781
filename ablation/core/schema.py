"""The study spec: the one schema every name in `ablate` comes from.

A study spec is a YAML file with the sections below. Its dotted paths (`model.placement`,
`train.lr`, ...) are at once the `--set` keys, the `search.space` axes, the trial params in
Ray Tune and the param names in MLflow. Validation happens here, before Ray starts or any
MLflow run exists, and every error names the file and the key.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, ValidationInfo, field_validator, model_validator

from ablation.core import factorial
from ablation.core.datasets import DATASETS
from ablation.core.emotions import EMOTIONS
from ablation.core.model_spec import ATTENTION_OPTIONS, PER_STAGE, RETIRED, ModelSpec, Section, all_stages, options_of
from ablation.core.sites import STAGES, parse_placement, placement_subsets
from ablation.core.spec_errors import describe, each_error  # noqa: F401  (the schema's errors, read from here too)

METRICS = ("val_macro_f1", "val_accuracy", "val_loss")
# The validation context's switch: False while a spec is only priced (`ablate plan`), where a dataset
# kept on another machine need not be on this one.
DATA_ON_DISK = "data_on_disk"


def validation_context(data_on_disk: bool = True) -> dict[str, bool]:
    """What `StudySpec.model_validate(..., context=)` is given: validation behaviour as an argument."""
    return {DATA_ON_DISK: data_on_disk}


class AugmentSpec(Section):
    """Training-time augmentation; validation and test images are never augmented."""

    flip: bool = Field(True, description="random horizontal flip")
    rotation: float = Field(0, ge=0, le=45, description="random rotation up to this many degrees")
    crop: float = Field(1.0, gt=0, le=1, description="random resized crop keeping at least this share of the area")
    color_jitter: float = Field(0, ge=0, le=1, description="random brightness, contrast and saturation change")


class DataSpec(Section):
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
            if dataset is not None and DATASETS.get(dataset).on_disk:
                raise ValueError(f"dataset {info.data['dataset']} needs data.root: the folder it was extracted to")
            return None
        if not root.exists():
            if not (info.context or {}).get(DATA_ON_DISK, True):
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


class TrainSpec(Section):
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


class RaceSpec(Section):
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


# Bounds on a study's size: past them `plan` would list more than anyone reads, and expanding the design
# alone would take minutes (a spec asking for a million seeds went silent for ten).
MAX_SEEDS = 1000
MAX_TRIALS = 100_000


class SearchSpec(Section):
    method: Literal["grid", "random", "optuna"] = Field(
        "grid", description="grid: every arm of the design, once per seed; random, optuna (TPE): num_samples "
                            "trials drawn from the space, each with one of the seeds")
    num_samples: int = Field(10, ge=1, le=MAX_TRIALS, description="random/optuna: how many trials to draw")
    max_concurrent: int | None = Field(None, ge=1, description="optuna: how many trials it suggests at once")
    scheduler: Literal["fifo", "asha", "hyperband"] = Field(
        "fifo", description="fifo runs every trial to the end (an ablation's default: early stopping is biased "
                            "against slow starters); asha and hyperband stop the weaker trials early")
    grace_period: int = Field(1, ge=1, description="asha: epochs every trial gets before it may be stopped")
    reduction_factor: int = Field(3, ge=2, description="asha/hyperband: 1/this of the trials go on at each rung")
    design: Literal["grid", "ofat", "loco", *factorial.DESIGNS] = Field(  # type: ignore[valid-type]
        "grid", description="grid: every combination of the space; ofat: one factor at a time around the baseline; loco: "
                            "the module, the module without each component in turn, and the baseline; factorial: every "
                            "combination of two levels, [low, high], of each key; fractional: a fraction of those")
    space: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values")
    generators: list[str] | None = Field(None, description="fractional: each generated factor as a product of the "
                                         "others, e.g. [D = ABC]; A, B, C, ... name the space's keys in order")
    resolution: Literal[3, 4, 5, "III", "IV", "V"] | None = Field(None, validate_default=True, description=(
        "fractional: the fewest arms with no main effect confounded with another (III), nor with a two-factor "
        "interaction (IV), nor two such interactions with each other (V)"))
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
            if not 1 <= budget["max"] <= MAX_SEEDS:
                raise ValueError(f"seeds: max is {budget['max']}; a race runs 1 to {MAX_SEEDS} seeds of each arm")
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
        if design in factorial.DESIGNS and info.data.get("scheduler", "fifo") != "fifo":
            raise ValueError(f"design {design} estimates effects from every arm's final score; a scheduler that stops "
                             "trials early leaves some without one (use scheduler: fifo)")
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
            check_setting(key)
            if not values:
                raise ValueError(f"{key!r} has no values")
            if len({json.dumps(v, sort_keys=True, default=str) for v in values}) != len(values):
                raise ValueError(f"{key!r} lists a value twice")
        if info.data.get("design") in factorial.DESIGNS:
            factorial.check_factors(space, info.data["design"])
        return space

    @field_validator("generators")
    @classmethod
    def _generators_of_the_factors(cls, generators: list[str] | None, info: ValidationInfo) -> list[str] | None:
        return factorial.check_generators(info.data, generators)

    @field_validator("resolution")
    @classmethod
    def _a_fraction_says_which(cls, resolution: int | str | None, info: ValidationInfo) -> int | None:
        return factorial.check_fraction(info.data, resolution)

    @field_validator("baseline")
    @classmethod
    def _baseline_keys_are_settings(cls, baseline: dict[str, Any]) -> dict[str, Any]:
        for key in baseline:
            check_setting(key)
        return baseline

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int], info: ValidationInfo) -> list[int]:
        if len(seeds) > MAX_SEEDS:
            raise ValueError(f"{len(seeds):,} seeds; a study runs at most {MAX_SEEDS:,} of each arm")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        space = info.data.get("space") or {}
        every_combination = info.data.get("design", "grid") in ("grid", "factorial")
        if info.data.get("method", "grid") == "grid" and every_combination and space:
            arms = math.prod(len(values) for values in space.values())
            if arms * len(seeds) > MAX_TRIALS:
                raise ValueError(f"{arms:,} arms x {len(seeds):,} seeds = {arms * len(seeds):,} trials; one study runs at "
                                 f"most {MAX_TRIALS:,}: split the space over studies, or draw from it "
                                 "(method: random or optuna)")
        return seeds

    @field_validator("race")
    @classmethod
    def _race_needs_a_budget(cls, race: RaceSpec | None, info: ValidationInfo) -> RaceSpec | None:
        if race is None:
            return None
        if info.data.get("method", "grid") != "grid":
            raise ValueError(f"race decides the arms of a design; method {info.data['method']} draws its trials")
        if info.data.get("design") in factorial.DESIGNS:
            raise ValueError(f"a race decides arms one by one and stops giving seeds to those decided, but "
                             f"search.design {info.data['design']} estimates effects from every arm at every seed: "
                             "remove search.race")
        if info.data.get("scheduler", "fifo") != "fifo":
            raise ValueError("race compares finished seeds; a scheduler that stops trials early leaves none to compare "
                             "(use scheduler: fifo)")
        seeds = info.data.get("seeds") or []
        if race.start > len(seeds):
            raise ValueError(f"race.start is {race.start} but search.seeds has only {len(seeds)}; "
                             "give at least start seeds (e.g. seeds: {start: 3, max: 20})")
        return race


class ResourcesSpec(Section):
    cpu: float = Field(1, gt=0, description="CPUs per trial")
    gpu: float = Field(0, ge=0, description="GPUs per trial; fractions share a device")
    max_failures: int = Field(2, ge=0, description="restarts of a failed trial from its last checkpoint")


class StudySpec(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100,
                      description="MLflow experiment name; it also names the study's folder and files")
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

    def logged_params(self, attentions: Iterable[str] = ()) -> dict[str, Any]:
        """`params()` as MLflow gets them: without the options that neither this spec's attention type nor
        any of `attentions` takes (BAM's dilation in an Identity-CBAM study would read as a setting that
        mattered). A trial's id stays the digest of all of `params()`."""
        unused = {f"model.{option}" for option in ATTENTION_OPTIONS - options_of({self.model.attention, *attentions})}
        return {k: v for k, v in self.params().items() if k not in unused}

    def get(self, key: str) -> Any:
        """The value at a dotted key (`model.reduction`, or `model.reduction.layer3` of a per-stage setting)."""
        section, leaf, *stage = key.split(".")
        value = getattr(getattr(self, section), leaf)
        if stage and key.startswith("model.placement."):  # a stage factor: does the placement hold that stage?
            return stage[0] in {s.stage for s in parse_placement(value, everywhere=all_stages(self.model.attention))}
        if stage and isinstance(value, dict):
            return value.get(stage[0])
        return value


def json_schema() -> dict[str, Any]:
    """The study spec as a JSON Schema, read from the same registries as its validation."""
    return StudySpec.model_json_schema(mode="validation")


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


def check_setting(key: str) -> None:
    """A key a search may set: a leaf of model/data/train or of a subsection, or one stage of a per-stage setting."""
    parent, _, leaf = key.rpartition(".")
    if key in _leaf_keys() and leaf not in _SUBSECTIONS.get(parent, ()):
        return
    if parent in {f"model.{k}" for k in (*PER_STAGE, "placement")} and leaf in STAGES:
        return
    if parent == "data.augment" and leaf in AugmentSpec.model_fields:
        return
    if key in RETIRED:
        raise ValueError(f"{key!r}: {RETIRED[key]}")
    raise ValueError(f"{key!r} is not a setting; keys are leaves of {', '.join(SWEEPABLE)} (e.g. model.placement, "
                     "data.augment.rotation), model.count.<stage> / model.reduction.<stage>, or "
                     "model.placement.<stage> (on or off)")
