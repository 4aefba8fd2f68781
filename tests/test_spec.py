from pathlib import Path

import pytest
import yaml

from ablation.spec import SpecError, Trial, load_spec, parse_placement

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, **sections) -> Path:
    spec = {"name": "t", "model": {"arch": "resnet18"}, "search": {"space": {"model.placement": ["none", "all"]}}}
    spec.update(sections)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("name", ["quickstart", "placement"])
def test_shipped_specs_are_valid(name):
    spec = load_spec(ROOT / "search_spaces" / f"{name}.yaml")
    assert len(spec.trials()) == len(spec.search.space["model.placement"]) * len(spec.search.seeds)


def test_the_placement_study_covers_all_sixteen_stage_subsets_over_three_seeds():
    spec = load_spec(ROOT / "search_spaces" / "placement.yaml")
    subsets = {parse_placement(p) for p in spec.search.space["model.placement"]}
    assert len(subsets) == 16 and spec.search.seeds == [0, 1, 2] and spec.model.arch == "resnet50"


def test_placement_strings():
    assert parse_placement("none") == ()
    assert parse_placement("all") == ("layer1", "layer2", "layer3", "layer4")
    assert parse_placement("layer3+layer1") == ("layer1", "layer3")
    for bad in ("layer5", "layer1+layer1", "", "layer1,layer2"):
        with pytest.raises(ValueError, match="placement"):
            parse_placement(bad)


def test_trials_are_the_grid_times_the_seeds_with_ids_from_their_config(tmp_path):
    spec = load_spec(write(tmp_path, search={"space": {"model.placement": ["none", "layer1"],
                                                       "model.reduction": [8, 16]}, "seeds": [0, 1]}))
    trials = spec.trials()
    assert len(trials) == 8 and len({t.id for t in trials}) == 8
    first = trials[0]
    assert first.overrides == {"model.placement": "none", "model.reduction": 8, "seed": 0}
    assert first.spec.model.reduction == 8 and first.params()["seed"] == 0
    assert Trial.create(spec, first.overrides).id == first.id


def test_overrides_are_typed_and_reach_any_key(tmp_path):
    spec = load_spec(write(tmp_path), ["train.epochs=1", "data.image_size=32", "search.space.model.count=[1, 2]"])
    assert spec.train.epochs == 1 and spec.data.image_size == 32
    assert spec.search.space["model.count"] == [1, 2]


@pytest.mark.parametrize(
    ("sections", "overrides", "key"),
    [
        ({"model": {"arch": "resnet18", "colour": 1}}, [], "model.colour: unknown key"),
        ({}, ["train.epochs=five"], "train.epochs"),
        ({"model": {"arch": "resnet18", "placement": "layer9"}}, [], "model.placement"),
        ({"model": {"arch": "resnet18", "reduction": 3}}, [], "model.reduction"),
        ({"search": {"space": {}}}, [], "search.space"),
        ({"search": {"space": {"model.reduction": [8, 48]}}}, [], "model.reduction"),
        ({"search": {"space": {"model.nonsense": [1]}}}, [], "search.space"),
        ({"search": {"space": {"model.placement": []}}}, [], "search.space"),
        ({"model": {"arch": "resnet19"}}, [], "model.arch"),
        ({}, ["metric=accuracy"], "metric"),
        ({}, ["model.kernel_size=4"], "model.kernel_size"),
        ({}, ["model.gates=parallel"], "model.gates"),
        ({}, ["model.attention=se", "model.reduction=3"], "model.reduction"),
    ],
)
def test_bad_specs_name_the_file_and_the_key(tmp_path, sections, overrides, key):
    path = write(tmp_path, **sections)
    with pytest.raises(SpecError) as err:
        load_spec(path, overrides)
    message = str(err.value)
    assert message.startswith(str(path)) and key in message and "\n" not in message


def test_a_reduction_only_has_to_divide_the_channels_where_it_is_used(tmp_path):
    spec = load_spec(write(tmp_path), ["model.attention=eca", "model.reduction=7"])
    assert spec.model.reduction == 7
