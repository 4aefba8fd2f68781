"""Two-level factorial designs: a fraction has the resolution it was asked for, its alias table is what
its design matrix confounds, its arms are the placements its runs code for, and a bad factor or a race
is refused before anything runs, naming the key."""

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ablation.cli.main import app
from ablation.core import SearchSpec, SpecError, load_study
from ablation.core.factorial import Factorial, build, name, parse_generators

ROOT = Path(__file__).resolve().parents[1]
STAGES = [f"model.placement.layer{i}" for i in range(1, 5)]
# Two-level keys enough for an eight-factor design; the design alone is built, no arm is trained.
KEYS = [*STAGES, "model.zero_init", "data.augment.flip", "train.optimizer", "train.schedule"]


def design(k: int, **fraction) -> Factorial:
    return build(SearchSpec(design="fractional", space={key: [False, True] for key in KEYS[:k]}, **fraction))


def words_of(d: Factorial) -> set[tuple[frozenset, int]]:
    """Brute force: every set of columns whose product is the same in every run, with that sign."""
    found = set()
    for r in range(1, d.k + 1):
        for combo in itertools.combinations(range(d.k), r):
            column = {math.prod(run[i] for i in combo) for run in d.runs}
            if len(column) == 1:
                found.add((frozenset(combo), column.pop()))
    return found


# (factors, resolution) -> the fewest runs that reach it (Montgomery, Design and Analysis of Experiments,
# Table 8.14; NIST/SEMATECH e-Handbook 5.3.3.4.7).
FEWEST_RUNS = {(4, 3): 8, (4, 4): 8, (5, 4): 16, (5, 5): 16, (6, 4): 16, (7, 3): 8, (7, 4): 16, (8, 4): 16, (8, 5): 64}


@pytest.mark.parametrize("k, resolution", list(FEWEST_RUNS))
def test_a_fraction_at_a_resolution_has_no_shorter_word_in_its_defining_relation(k, resolution):
    d = design(k, resolution=resolution)
    assert len(d.runs) == FEWEST_RUNS[k, resolution] == 2 ** (k - len(d.generators))
    assert len(set(d.runs)) == len(d.runs)
    assert set(d.words) == words_of(d) and len(d.words) == 2 ** len(d.generators) - 1
    assert min(len(word) for word, _ in d.words) == d.resolution >= resolution


def test_the_stage_fraction_is_the_half_with_an_even_number_of_stages():
    d = design(4, resolution="IV")
    assert [str(g) for g in d.generators] == ["D = ABC"] and [name(*w) for w in d.words] == ["ABCD"]
    assert all(math.prod(run) == 1 for run in d.runs) and len(d.runs) == 8


@pytest.mark.parametrize("fraction", [{"resolution": 3}, {"resolution": 4}, {"resolution": 5},
                                      {"generators": ["E = ABC", "F = -BCD"]}, {"generators": ["F = ABCDE"]}])
def test_the_alias_table_is_what_the_design_matrix_confounds(fraction):
    d = design(6, **fraction)
    effects = [frozenset(c) for size in (1, 2) for c in itertools.combinations(range(d.k), size)]
    column = {e: tuple(math.prod(run[i] for i in e) for run in d.runs) for e in effects}
    listed = set()
    for effect, aliases in d.alias_table(order=2):
        assert effect not in listed
        listed |= {effect, *(e for e, _ in aliases)}
        confounded = {(e, sign) for e in effects if e != effect for sign in (1, -1)
                      if column[e] == tuple(sign * x for x in column[effect])}
        assert set(aliases) == confounded, name(effect)
    assert listed == set(effects)


def test_generators_choose_the_fraction_and_a_minus_sign_the_other_half():
    half = design(4, generators=["D = ABC"])
    other = design(4, generators=["D = -ABC"])
    assert set(half.runs) | set(other.runs) == set(itertools.product((-1, 1), repeat=4))
    assert not set(half.runs) & set(other.runs) and [name(*w) for w in other.words] == ["-ABCD"]
    # Generators are products of base factors, named in the space's order, whatever their place.
    b = design(5, generators=["B = ACDE"])
    assert b.resolution == 5 and all(run[1] == run[0] * run[2] * run[3] * run[4] for run in b.runs)


@pytest.mark.parametrize("generators, says", [
    (["D = AD"], "at least two other distinct factors"), (["D = A"], "at least two"),
    (["E = ABC"], "E names no factor"), (["D = ABC", "D = AB"], "D is generated twice"),
    (["C = AB", "D = ABC"], "C is generated too"), (["D = A+B"], "expected a factor = a product")])
def test_a_bad_generator_is_refused_saying_what_is_wrong(generators, says):
    with pytest.raises(ValueError, match=says):
        parse_generators(generators, 4)


def write(tmp_path: Path, search: dict, **sections) -> Path:
    spec = {"name": "f", "model": {"arch": "resnet18", "placement": "none"}, "search": search, **sections}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def stages(resolution="IV", **extra) -> dict:
    return {"design": "fractional", "resolution": resolution, "space": {key: [False, True] for key in STAGES} | extra}


@pytest.mark.parametrize("search, says", [
    (stages(**{"model.reduction": [8]}), "search.space: 'model.reduction' has 1 level ([8]); a factor of design "
                                         "fractional has two, [low, high]"),
    (stages(**{"model.reduction": [8, 16, 32]}), "'model.reduction' has 3 levels"),
    (stages(**{STAGES[0]: [False]}), f"'{STAGES[0]}' has 1 level ([off]);"),  # as the spec wrote it, not [False]
    (stages(**{"model.depth": [1, 2]}), "'model.depth' is not a setting"),
    (stages(**{"model.placement.layer5": [False, True]}), "'model.placement.layer5' is not a setting"),
    (stages(**{"model.attention": ["identity_cbam", "sknet"]}), "model.attention: Input should be 'none', "
                                                                "'identity_cbam'"),
    (stages(**{"train.optimizer": ["sgd", "rmsprop"]}), "train.optimizer: Input should be 'sgd' or 'adamw'"),
    (stages(**{"model.placement.layer3": ["off", "maybe"]}), "model.placement.layer3: expected on or off"),
    (stages(**{"model.reduction": [8, 7]}), "reduction 7 does not divide"),
    (stages(resolution=5), "search.resolution: resolution V is out of reach of 4 factors"),
    (stages(resolution=None), "design fractional takes a resolution (III, IV or V) or generators"),
    ({**stages(), "generators": ["D = ABC"]}, "both were given"),
    ({**stages(resolution=None), "generators": ["D = AB", "C = AB"]}, "search.generators: ['D = AB', 'C = AB']: "
                                                                      "resolution II confounds two main effects"),
    ({**stages(resolution=None), "generators": ["D = AD"]}, "search.generators: 'D = AD': a generator is"),
    ({**stages(resolution=None), "generators": []}, "search.generators: no generators"),
    ({"design": "factorial", "resolution": 4, "space": {STAGES[0]: [False, True]}}, "search.resolution: only "
                                                                                    "design fractional"),
    ({"design": "grid", "generators": ["C = AB"], "space": {STAGES[0]: [False, True]}}, "search.generators: only "
                                                                                        "design fractional"),
    ({**stages(), "race": {"margin": 0.1}}, "search.race: a race decides arms one by one"),
    ({**stages(), "scheduler": "asha"}, "search.design: design fractional estimates effects"),
])
def test_a_bad_factorial_spec_exits_2_naming_the_key_before_anything_is_priced(tmp_path, search, says):
    result = CliRunner().invoke(app, ["plan", str(write(tmp_path, search))])
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split())


def test_race_and_a_fraction_are_refused_together_naming_both_keys(tmp_path):
    with pytest.raises(SpecError, match=r"search\.race: .*search\.design fractional .*remove search\.race"):
        load_study(write(tmp_path, {**stages(), "seeds": {"start": 3, "max": 8}, "race": {"margin": 0.1}}))


def test_the_shipped_fraction_runs_half_the_full_factorials_trials_at_their_placements():
    fraction = load_study(ROOT / "search_spaces" / "stage_effects.yaml")
    full = load_study(ROOT / "search_spaces" / "stage_effects_full.yaml")
    assert (len(fraction.arms), len(fraction.trials), len(full.arms), len(full.trials)) == (8, 24, 16, 48)
    placements = {arm: fraction.trial(arm, 0).spec.model.placement for arm in fraction.arm_names}
    assert placements == {"placement=none": "none", "placement=layer3+layer4": "layer3+layer4",
                          "placement=layer2+layer4": "layer2+layer4", "placement=layer2+layer3": "layer2+layer3",
                          "placement=layer1+layer4": "layer1+layer4", "placement=layer1+layer3": "layer1+layer3",
                          "placement=layer1+layer2": "layer1+layer2", "placement=all": "all"}
    # The same question: each trial of the fraction is the full factorial's trial of that configuration.
    assert {t.id for t in fraction.every_trial} < {t.id for t in full.every_trial}
    assert full.factorial.generators == () and full.factorial.resolution is None


def test_plan_json_gives_the_design_its_factors_and_aliases():
    result = CliRunner().invoke(app, ["plan", str(ROOT / "search_spaces" / "stage_effects.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    design = json.loads(result.output)["design"]
    assert (design["arms"], design["full_factorial"], design["resolution"]) == (8, 16, 4)
    assert design["generators"] == ["D = ABC"] and design["defining_relation"] == ["ABCD"]
    assert design["factors"][3] == {"letter": "D", "key": STAGES[3], "low": False, "high": True}
    assert design["aliases"][4] == {"effect": "AB", "aliased_with": ["CD"], "in_words": [
        "placement.layer1 x placement.layer2", "placement.layer3 x placement.layer4"]}
    assert len(design["aliases"]) == 4 + 3  # main effects, then each pair of aliased interactions once


def test_each_arm_carries_its_coding_for_the_effects_model(tmp_path):
    study = load_study(write(tmp_path, {"design": "fractional", "generators": ["C = AB"],
                                        "space": {STAGES[2]: [False, True], STAGES[3]: [False, True],
                                                  "model.reduction": [8, 32]}}))
    d = study.factorial
    assert [tuple(d.code(overrides).values()) for _, overrides in study.arms] == list(d.runs)
    assert d.code(study.arms[1][1]) == {STAGES[2]: -1, STAGES[3]: 1, "model.reduction": -1}
    assert study.arm_names == ["placement=none,reduction=32", "placement=layer4,reduction=8",
                               "placement=layer3,reduction=8", "placement=layer3+layer4,reduction=32"]
    trial = study.trial("placement=layer4,reduction=8", 0)
    assert trial.spec.model.reduction == 8 and trial.spec.model.placement == "layer4"
    # The factors are MLflow params of every run, as the spec spells them.
    assert trial.params() | {"model.placement.layer3": False, "model.placement.layer4": True,
                             "model.reduction": 8} == trial.params()
    with pytest.raises(ValueError, match=r"model.reduction=16 is neither of its levels, 8 \(-1\) and 32 \(\+1\)"):
        d.code({STAGES[2]: False, STAGES[3]: True, "model.reduction": 16})


def test_a_stage_switch_composes_with_the_placement_the_spec_has(tmp_path):
    grid = load_study(write(tmp_path, {"space": {"model.placement.layer3": [False, True]}},
                            model={"arch": "resnet18", "placement": "layer1.0"}))
    assert [(arm, grid.trial(arm, 0).spec.model.placement) for arm in grid.arm_names] == [
        ("placement=layer1.0", "layer1.0"), ("placement=layer1.0+layer3", "layer1.0+layer3")]
    off = load_study(write(tmp_path, {"space": {"model.reduction": [16]}}, model={"arch": "resnet18"}),
                     ["model.placement.layer2=off"])
    assert off.trials[0].spec.model.placement == "layer1+layer3+layer4"
    ofat = load_study(write(tmp_path, {"design": "ofat", "space": {"model.placement.layer4": [False, True]}},
                            model={"arch": "resnet18", "placement": "all"}))
    assert ofat.arm_names == ["baseline", "placement.layer4=false"]


def test_the_spec_and_a_full_factorial_load_without_pydoe():
    """pydoe loads scipy: only a fraction needs it, so `ablate --help`, `schema` and other designs stay light."""
    code = ("import sys, ablation; from ablation.core import json_schema; json_schema(); "
            "ablation.load_study('search_spaces/stage_effects_full.yaml'); assert 'pydoe' not in sys.modules; "
            "ablation.load_study('search_spaces/stage_effects.yaml'); assert 'pydoe' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
