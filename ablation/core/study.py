"""A study, built once: its spec, its arms and every trial they expand to, its baseline and its
race settings (or its two-level design: each arm's coding, the aliases), as one immutable value that
`run`, `plan`, `report` and the race searcher receive and never re-expand. It is also the API a
notebook uses (`ablation.load_study`), and it loads without torch, MLflow or Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablation.core import design
from ablation.core.design import Trial
from ablation.core.factorial import Factorial
from ablation.core.loading import read_sections, read_spec
from ablation.core.model_spec import ModelSpec, SpecError
from ablation.core.schema import DataSpec, StudySpec


@dataclass(frozen=True)
class Study:
    """A validated study spec and its design, expanded once."""

    spec: StudySpec
    arms: tuple[tuple[str, dict[str, Any]], ...]  # (label, overrides of the spec), in the design's order
    every_trial: tuple[Trial, ...]  # every arm at every seed (a race runs only those it needs)
    baseline: str | None  # the arm a race decides the others against; None without a race
    path: Path | None = None  # the spec file, when it came from one
    # A factorial or fractional design: its factors, each arm's ±1 coding (`runs`, in `arms`' order), its
    # generators and alias table; None for the other designs.
    factorial: Factorial | None = None
    _by_arm_seed: dict[tuple[str, int], Trial] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_arm_seed", {(t.arm, t.seed): t for t in self.every_trial})

    @classmethod
    def from_spec(cls, spec: StudySpec, *, path: Path | None = None, data_on_disk: bool = True) -> Study:
        """Expand `spec`: every arm at every seed must be a valid trial (e.g. a reduction for each placement)."""
        two_level = design.two_level_design(spec)
        arms = design.arms(spec, data_on_disk=data_on_disk, two_level=two_level)
        every = design.expand(spec, arms, spec.search.seeds, data_on_disk=data_on_disk)
        baseline = design.race_baseline(spec, every) if spec.search.race else None
        return cls(spec, tuple(arms), tuple(every), baseline, path, two_level)

    @classmethod
    def load(cls, path: Path | str, overrides: list[str] | tuple[str, ...] = (), *, data_on_disk: bool = True) -> Study:
        """Read, override, validate and expand a spec file; SpecError naming the file, key or --set.

        `data_on_disk=False` prices a study whose dataset is on another machine (`ablate plan`)."""
        path = Path(path)
        spec = read_spec(path, overrides, data_on_disk=data_on_disk)
        try:
            return cls.from_spec(spec, path=path, data_on_disk=data_on_disk)
        except SpecError as err:
            raise SpecError(f"{path}: {err}") from None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def trials(self) -> tuple[Trial, ...]:
        """The trials a run starts with: every arm at every seed, or at a race's first `start` seeds."""
        race = self.spec.search.race
        if race is None:
            return self.every_trial
        first = set(self.spec.search.seeds[:race.start])
        return tuple(t for t in self.every_trial if t.seed in first)

    @property
    def arm_names(self) -> list[str]:
        return [arm for arm, _ in self.arms]

    @property
    def axes(self) -> list[str]:
        """What tells configurations apart in a table: a grid's axes, else the arm."""
        return design.axes(self.spec)

    def trial(self, arm: str, seed: int) -> Trial:
        """The trial of one arm at one seed (a race adds them one by one)."""
        return self._by_arm_seed[arm, seed]


def load_study(path: Path | str, overrides: list[str] | tuple[str, ...] = (), *, data_on_disk: bool = True) -> Study:
    """A study spec file as a `Study`, like `optuna.create_study()`: `ablation.load_study("spec.yaml")`."""
    return Study.load(path, overrides, data_on_disk=data_on_disk)


def load_spec(path: Path | str, overrides: list[str] | tuple[str, ...] = ()) -> StudySpec:
    """A study spec file, validated with every trial it expands to."""
    return Study.load(path, overrides).spec


def load_model_and_data(path: Path | str | None, overrides: list[str] | tuple[str, ...] = ()) -> tuple[ModelSpec, DataSpec]:
    """The model and data sections of a spec, or of the defaults when there is no spec file."""
    if path is None:
        return read_sections(overrides)
    spec = load_spec(path, overrides)
    return spec.model, spec.data
