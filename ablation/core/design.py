"""A study's design expanded: its arms (grid, one factor at a time, leave one component out, a two-level
factorial or a fraction of one), each a set of overrides of the spec, and its trials, one per arm and
seed, each validated and named by the content of its settings.

`data_on_disk=False` validates as `ablate plan` needs: a dataset kept on another machine need not
exist on this one. It is passed down, never read from a global.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ablation.core import factorial
from ablation.core.catalog import ATTENTIONS
from ablation.core.factorial import Factorial
from ablation.core.model_spec import COMPONENTS, SpecError
from ablation.core.schema import MAX_TRIALS, StudySpec, describe, validation_context
from ablation.core.spec_tree import set_key


def label(point: dict[str, Any]) -> str:
    """`{"model.skip": False, "train.lr": 0.1}` -> `skip=false,lr=0.1`, values spelled as in a spec."""
    return ",".join(f"{_short(k)}={json.dumps(v) if isinstance(v, bool) else v}" for k, v in point.items())


def _named(spec: StudySpec, point: dict[str, Any]) -> str:
    """An arm's label, its stage switches spelled as the one placement they make of the spec's
    (`placement=layer1+layer3`)."""
    switches = [k for k in point if _switches_a_stage(k)]
    if not switches:
        return label(point)
    tree = {"model": {"placement": point.get("model.placement", spec.model.placement),
                      "attention": point.get("model.attention", spec.model.attention)}}
    for key in switches:
        set_key(tree, key, point[key])
    first = list(point).index(switches[0])
    rest = [(k, v) for k, v in point.items() if k not in switches and k != "model.placement"]
    return label(dict(rest[:first] + [("model.placement", tree["model"]["placement"])] + rest[first:]))


def _switches_a_stage(key: str) -> bool:
    return key.startswith("model.placement.")


def _short(key: str) -> str:
    """`model.placement` -> `placement`; `model.count.layer3` -> `count.layer3`."""
    return key.split(".", 1)[1]


def apply(spec: StudySpec, overrides: dict[str, Any], origin: str, *, data_on_disk: bool = True) -> StudySpec:
    """`spec` with `overrides` (dotted keys) set, validated; SpecError naming `origin` and the values."""
    tree = spec.model_dump(mode="json")
    # Stage switches last: they switch a stage of the placement (and attention type) the other overrides set.
    for key, value in sorted(overrides.items(), key=lambda item: _switches_a_stage(item[0])):
        set_key(tree, key, value)
    try:
        return StudySpec.model_validate(tree, context=validation_context(data_on_disk))
    except ValidationError as err:
        combo = ", ".join(f"{k}={v}" for k, v in overrides.items())
        raise SpecError(f"{origin} ({combo}): {describe(err)}") from None


@dataclass(frozen=True)
class Trial:
    """One configuration and seed: what a Ray Tune trial trains and an MLflow child run records."""

    id: str
    arm: str  # the configuration's label within the study design
    overrides: dict[str, Any]  # the study spec's settings this arm changes, and the seed
    spec: StudySpec  # the study spec with the overrides applied
    seed: int

    @classmethod
    def create(cls, study: StudySpec, overrides: dict[str, Any], arm: str | None = None, *,
               data_on_disk: bool = True) -> Trial:
        axes = {k: v for k, v in overrides.items() if k != "seed"}
        spec = apply(study, axes, origin="search" if arm else "overrides", data_on_disk=data_on_disk)
        return cls.of(spec, label(axes) if arm is None else arm, overrides)

    @classmethod
    def of(cls, spec: StudySpec, arm: str, overrides: dict[str, Any]) -> Trial:
        """The trial of an arm whose spec is validated already (every seed of an arm shares it)."""
        params = spec.params() | {"seed": overrides["seed"]}
        digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
        return cls(id=digest, arm=arm, overrides=dict(overrides), spec=spec, seed=overrides["seed"])

    @property
    def name(self) -> str:
        return f"{self.arm},seed={self.seed}" if self.arm else f"seed={self.seed}"

    def params(self) -> dict[str, Any]:
        """The trial's settings as flat dotted keys, plus its arm, per-stage axes and seed: the MLflow params."""
        axes = {k: v for k, v in self.overrides.items() if k.count(".") == 2}  # e.g. model.count.layer3
        return self.spec.logged_params() | axes | {"arm": self.arm, "seed": self.seed}


def two_level_design(spec: StudySpec) -> Factorial | None:
    """The two-level design of a factorial or fractional study (its runs, generators and aliases); else None."""
    return factorial.build(spec.search) if spec.search.design in factorial.DESIGNS else None


def arms(spec: StudySpec, *, data_on_disk: bool = True,
         two_level: Factorial | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The configurations the design asks for, as (label, overrides of the spec). A factorial design's are
    `two_level`'s runs, in its order (built from the spec when not given)."""
    search = spec.search
    if search.design in factorial.DESIGNS:
        points = (two_level or factorial.build(search)).points()
        if len(points) * len(search.seeds) > MAX_TRIALS:
            raise SpecError(f"search: {len(points):,} arms x {len(search.seeds):,} seeds; one study runs at most "
                            f"{MAX_TRIALS:,} trials")
        return [(_named(spec, point), point) for point in points]
    grid = [dict(zip(search.space, point)) for point in itertools.product(*search.space.values())]
    if search.design == "grid":
        return [(_named(spec, point), point) for point in grid]
    if search.design == "ofat":
        centre = apply(spec, search.baseline, origin="search.baseline", data_on_disk=data_on_disk)
        at_centre = {key: centre.get(key) for key in search.space}
        found = [("baseline", search.baseline | at_centre)]
        for key, values in search.space.items():
            found += [(label({key: v}), search.baseline | at_centre | {key: v}) for v in values if v != at_centre[key]]
        return found
    components = ATTENTIONS.get(spec.model.attention).components
    if not components:
        raise SpecError(f"search.design: loco leaves out components of the attention module, and "
                        f"model.attention={spec.model.attention} has none ({', '.join(COMPONENTS)})")
    baseline = search.baseline or {"model.attention": "none"}
    found = []
    for point in grid:
        where = f" at {label(point)}" if point else ""
        found.append((f"full{where}", point))
        found += [(f"no {c}{where}", point | {f"model.{c}": False}) for c in components]
        found.append((f"baseline{where}", point | baseline))
    return found


def axes(spec: StudySpec) -> list[str]:
    """What tells configurations apart in a table: a grid's axes, else the arm (ofat and loco arms
    each change one thing, which their labels name)."""
    return list(spec.search.space) if spec.search.design == "grid" else ["arm"]


def expand(spec: StudySpec, arm_list: list[tuple[str, dict[str, Any]]], seeds: list[int], *,
           data_on_disk: bool = True) -> list[Trial]:
    """Every arm times each seed; two arms that build the same trial are an error. An arm's spec is
    validated once, not once per seed: the seed is no setting of the spec."""
    trials = []
    for arm, overrides in arm_list:
        arm_spec = apply(spec, overrides, origin="search", data_on_disk=data_on_disk)
        trials += [Trial.of(arm_spec, arm, overrides | {"seed": seed}) for seed in seeds]
    seen: dict[str, Trial] = {}
    for trial in trials:
        if trial.id in seen:
            raise SpecError(f"search: arms {seen[trial.id].arm!r} and {trial.arm!r} are the same configuration")
        seen[trial.id] = trial
    return trials


def race_baseline(spec: StudySpec, trials: list[Trial]) -> str:
    """The arm a race compares the others with: race.baseline, else the first arm without attention."""
    arm_names = list(dict.fromkeys(t.arm for t in trials))
    named = spec.search.race.baseline if spec.search.race else None
    if named is not None:
        if named not in arm_names:
            raise SpecError(f"search.race.baseline: {named!r} is not an arm; the arms are {', '.join(arm_names)}")
        return named
    for trial in trials:
        if not trial.spec.model.sites:
            return trial.arm
    raise SpecError("search.race: no arm is without attention modules to compare with; "
                    "name one with search.race.baseline")
