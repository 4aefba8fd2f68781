import re
from pathlib import Path

import pytest
import yaml

from ablation.core import (
    ModelSpec,
    SpecError,
    StudySpec,
    Trial,
    load_spec,
    load_study,
    parse_override,
)
from ablation.core.sites import Site, parse_placement

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, **sections) -> Path:
    spec = {"name": "t", "model": {"arch": "resnet18"}, "search": {"space": {"model.placement": ["none", "all"]}}}
    spec.update(sections)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_shipped_studies_have_the_arms_their_comments_promise():
    anywhere = ["data.dataset=synthetic", "data.root=null"]  # paper.yaml reads AI-HUB from ./aihub
    arms = {path.stem: len(load_study(path, anywhere).arms) for path in (ROOT / "search_spaces").glob("*.yaml")}
    assert arms == {"quickstart": 6, "placement": 16, "count": 17, "reduction": 17, "components": 8,
                    "baselines": 6, "paper": 4, "placement_race": 16, "race_quick": 6, "stage_effects": 8,
                    "stage_effects_full": 16}


def test_the_placement_study_covers_all_sixteen_stage_subsets_over_three_seeds():
    spec = load_spec(ROOT / "search_spaces" / "placement.yaml")
    subsets = {parse_placement(p) for p in spec.search.space["model.placement"]}
    assert len(subsets) == 16 and spec.search.seeds == [0, 1, 2] and spec.model.arch == "resnet50"


def test_placement_strings():
    assert parse_placement("none") == ()
    assert parse_placement("all") == tuple(Site(s) for s in ("layer1", "layer2", "layer3", "layer4"))
    assert parse_placement("layer3+layer1") == (Site("layer1"), Site("layer3"))
    # Blocks and stages mix freely; in network order a block comes before its stage's end.
    assert parse_placement("layer3+layer1.1+layer3.2") == (Site("layer1", 1), Site("layer3", 2), Site("layer3"))
    assert ModelSpec(placement="layer3+layer1+layer3.0").placement == "layer1+layer3.0+layer3"
    assert ModelSpec(placement="layer4+layer3+layer2+layer1").placement == "all"
    for bad in ("layer5", "layer1+layer1", "", "layer1,layer2", "layer2.x", "layer2.", "layer1.0+layer1.0"):
        with pytest.raises(ValueError, match="placement|twice"):
            parse_placement(bad)


def test_a_block_index_past_the_stage_is_an_error_naming_the_trial(tmp_path):
    path = write(tmp_path, search={"space": {"model.arch": ["resnet50", "resnet18"],
                                             "model.placement": ["layer3.4"]}})
    with pytest.raises(SpecError, match=r"model.arch=resnet18, model.placement=layer3.4.*resnet18 layer3 has 2 blocks"):
        load_spec(path)


def test_count_and_reduction_take_a_mapping_per_stage(tmp_path):
    model = ModelSpec(arch="resnet18", placement="all", count={"layer1": 2, "layer2": 0, "layer3": 1, "layer4": 1},
                      reduction={"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 64})
    assert [str(s) for s in model.sites] == ["layer1", "layer3", "layer4"]
    assert (model.count_at("layer1"), model.reduction_at("layer4")) == (2, 64)
    with pytest.raises(ValueError, match="puts modules in layer2, but the count mapping has no entry"):
        ModelSpec(arch="resnet18", placement="layer1+layer2", count={"layer1": 1})
    with pytest.raises(ValueError, match="reduction 48 does not divide the 64 channels of resnet18 layer1"):
        ModelSpec(arch="resnet18", placement="layer1", reduction={"layer1": 48})
    with pytest.raises(ValueError, match="layer1: expected an integer between 0 and 4"):
        ModelSpec(arch="resnet18", placement="layer1", count={"layer1": 5})


def test_one_stage_of_a_per_stage_setting_is_an_axis(tmp_path):
    trials = load_study(write(tmp_path, search={"space": {"model.count.layer3": [0, 2]}})).trials
    assert trials[1].spec.model.count == {"layer1": 1, "layer2": 1, "layer3": 2, "layer4": 1}
    assert trials[1].params()["model.count.layer3"] == 2
    assert trials[1].params()["model.count"] == '{"layer1":1,"layer2":1,"layer3":2,"layer4":1}'


def test_augmentation_settings_are_keys_and_params_of_their_own(tmp_path):
    study = load_study(write(tmp_path, search={"space": {"data.augment.rotation": [0, 10]}}))
    params = study.trials[1].params()
    assert params["data.augment.rotation"] == 10 and params["data.augment.flip"] is True
    assert "data.augment" not in params


def test_subsets_of_expands_into_distinct_placements(tmp_path):
    helper = {"subsets_of": ["layer1", "layer2", "layer3", "layer4"], "size": [1, 2]}
    spec = load_spec(write(tmp_path, search={"space": {"model.placement": helper}}))
    placements = spec.search.space["model.placement"]
    assert len(placements) == 4 + 6 == len(set(placements)) and "layer2+layer4" in placements
    every = load_spec(write(tmp_path, search={"space": {"model.placement": {"subsets_of": ["layer1", "layer2"],
                                                                            "size": [0, 1, 2]}}}))
    assert every.search.space["model.placement"] == ["none", "layer1", "layer2", "layer1+layer2"]
    with pytest.raises(SpecError, match="model.placement: size"):
        load_spec(write(tmp_path, search={"space": {"model.placement": {"subsets_of": ["layer1"], "size": 3}}}))


def test_ofat_varies_one_factor_at_a_time_around_the_baseline(tmp_path):
    spec = load_study(write(tmp_path, search={
        "design": "ofat", "baseline": {"model.placement": "layer4"},
        "space": {"model.reduction": [8, 16, 32], "model.count": [1, 2]}}))
    arms = dict(spec.arms)
    assert list(arms) == ["baseline", "count=2", "reduction=8", "reduction=32"]  # axes in file order
    assert arms["count=2"] == {"model.placement": "layer4", "model.reduction": 16, "model.count": 2}
    assert [t.name for t in spec.trials][:2] == ["baseline,seed=0", "count=2,seed=0"]
    assert spec.axes == ["arm"]


def test_loco_leaves_out_each_component_of_the_module_in_turn(tmp_path):
    spec = load_study(write(tmp_path, search={"design": "loco", "space": {}}))
    arms = dict(spec.arms)
    assert list(arms) == ["full", "no bottleneck", "no skip", "no channel_gate", "no spatial_gate", "baseline"]
    assert arms["no skip"] == {"model.skip": False} and arms["baseline"] == {"model.attention": "none"}
    assert spec.axes == ["arm"]
    cbam = load_study(write(tmp_path, search={"design": "loco", "space": {"model.placement": ["layer3"]}}),
                     ["model.attention=cbam"])
    assert [arm for arm, _ in cbam.arms] == ["full at placement=layer3", "no channel_gate at placement=layer3",
                                               "no spatial_gate at placement=layer3", "baseline at placement=layer3"]
    with pytest.raises(SpecError, match="model.attention=se has none"):
        load_spec(write(tmp_path, search={"design": "loco"}), ["model.attention=se"])


def test_two_arms_that_build_the_same_trial_are_an_error(tmp_path):
    with pytest.raises(SpecError, match="same configuration"):
        load_spec(write(tmp_path, search={"space": {"model.placement": ["layer1+layer2", "layer2+layer1"]}}))


def test_pretrained_weights_must_exist(tmp_path):
    with pytest.raises(SpecError, match=r"model.pretrained: no such file: .*missing.pt"):
        load_spec(write(tmp_path), ["model.pretrained=missing.pt"])


def test_trials_are_the_grid_times_the_seeds_with_ids_from_their_config(tmp_path):
    spec = load_study(write(tmp_path, search={"space": {"model.placement": ["none", "layer1"],
                                                       "model.reduction": [8, 16]}, "seeds": [0, 1]}))
    trials = spec.trials
    assert len(trials) == 8 and len({t.id for t in trials}) == 8
    first = trials[0]
    assert first.overrides == {"model.placement": "none", "model.reduction": 8, "seed": 0}
    assert first.spec.model.reduction == 8 and first.params()["seed"] == 0
    assert Trial.create(spec.spec, first.overrides).id == first.id


def test_overrides_are_typed_and_reach_any_key(tmp_path):
    spec = load_spec(write(tmp_path), ["train.epochs=1", "data.image_size=32", "search.space.model.count=[1, 2]"])
    assert spec.train.epochs == 1 and spec.data.image_size == 32
    assert spec.search.space["model.count"] == [1, 2]


@pytest.mark.parametrize(
    ("sections", "overrides", "key"),
    [
        ({"model": {"arch": "resnet18", "colour": 1}}, [], "model.colour: unknown key"),
        ({"model": {"arch": "resnet18", "placement": "layer9"}}, [], "model.placement"),
        ({"model": {"arch": "resnet18", "reduction": 3}}, [], "model.reduction"),
        ({"search": {"space": {}}}, [], "search.space"),
        ({"search": {"space": {"model.reduction": [8, 48]}}}, [], "model.reduction"),
        ({"search": {"space": {"model.nonsense": [1]}}}, [], "search.space"),
        ({"search": {"space": {"model.placement": []}}}, [], "search.space"),
        ({"model": {"arch": "resnet19"}}, [], "model.arch"),
        ({"search": {"space": {"model.count.layer9": [1]}}}, [], "search.space"),
        ({"search": {"space": {"model.placement": {"subsets": ["layer1"]}}}}, [], "search.space"),
        ({"search": {"design": "ofat", "space": {"model.skip": [False]}, "baseline": {"model.bogus": 1}}}, [],
         "search.baseline"),
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


@pytest.mark.parametrize(
    ("overrides", "blamed", "key"),
    [
        (["train.epochs=five"], "--set train.epochs=five: ", "train.epochs"),
        (["metric=accuracy"], "--set metric=accuracy: ", "metric"),
        (["model.kernel_size=4"], "--set model.kernel_size=4: ", "model.kernel_size"),
        (["model.gates=diagonal"], "--set model.gates=diagonal: ", "model.gates"),
        (["model.count={layer5: 1}"], "--set model.count={layer5: 1}: ", "model.count"),
        (["model.attention=se", "model.reduction=3"], "--set model.reduction=3: ", "model.reduction"),
        (["train.epochs=true"], "--set train.epochs=true: ", "train.epochs: expected an integer, got true"),
        (["bogus.key=1"], "--set bogus.key=1: ", "bogus: unknown key"),
        (["model.arch.depth=1"], "--set model.arch.depth=1: ", "'arch' is not a section"),
    ],
)
def test_a_bad_override_is_blamed_rather_than_the_file(tmp_path, overrides, blamed, key):
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path), overrides)
    message = str(err.value)
    assert message.startswith(blamed) and key in message and "\n" not in message


def test_a_fault_in_the_file_is_still_blamed_on_the_file_when_overrides_are_given(tmp_path):
    path = write(tmp_path, train={"epochs": 0})
    with pytest.raises(SpecError) as err:
        load_spec(path, ["train.lr=0.1"])
    assert str(err.value).startswith(f"{path}: train.epochs")


def test_a_key_given_twice_is_refused_naming_the_file_the_key_and_both_lines(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("name: t\n"
                    "search:\n"
                    "  space: {model.placement: [none, all]}\n"
                    "train:\n"
                    "  epochs: 1\n"
                    "model:\n"
                    "  arch: resnet18\n"
                    "train:\n"
                    "  epochs: 50\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value) == f"{path}: key 'train' appears twice (lines 4 and 8); keep one"
    path.write_text("name: t\nsearch:\n  space: {model.placement: [none, all]}\nmodel:\n  arch: resnet18\n  arch: resnet50\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value) == f"{path}: key 'arch' appears twice (lines 5 and 6); keep one"


def test_a_merge_key_may_repeat_what_it_merges(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("name: t\nsearch: {space: {model.placement: [none, all]}}\n"
                    "train: &fast {epochs: 1, lr: 0.1}\n"
                    "model: {arch: resnet18, <<: {reduction: 8, count: 2}, reduction: 4}\n")
    assert load_spec(path).model.reduction == 4


def test_a_key_given_twice_inside_an_override_is_refused_naming_the_override():
    with pytest.raises(SpecError) as err:
        parse_override("search.space={a: [1], a: [2]}")
    assert str(err.value).startswith("--set search.space={a: [1], a: [2]}: key 'a' appears twice")


def test_a_spec_that_is_not_utf8_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_bytes("name: t\nmodel: {arch: resnet18}\n# caf\u00e9\n".encode("latin-1"))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value).startswith(f"{path}: expected UTF-8 text") and "byte 37" in str(err.value)


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"train": {"epochs": True}}, "train.epochs: expected an integer, got true"),
        ({"train": {"lr": True}}, "train.lr: expected a number, got true"),
        ({"data": {"image_size": False}}, "data.image_size: expected an integer, got false"),
        ({"data": {"train_per_class": True}}, "data.train_per_class: expected an integer, got true"),
        ({"data": {"augment": {"rotation": True}}}, "data.augment.rotation: expected a number, got true"),
        ({"search": {"space": {"model.placement": ["none"]}, "num_samples": True}},
         "search.num_samples: expected an integer, got true"),
        ({"search": {"space": {"model.placement": ["none"]}, "seeds": [0, True]}},
         "search.seeds: expected integers, got [0, true]"),
        ({"resources": {"cpu": True}}, "resources.cpu: expected a number, got true"),
        ({"search": {"space": {"train.epochs": [1, True]}}}, "train.epochs: expected an integer, got true"),
    ],
)
def test_a_yaml_boolean_is_not_a_number(tmp_path, sections, message):
    path = write(tmp_path, **sections)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_booleans_still_set_the_switches(tmp_path):
    spec = load_spec(write(tmp_path, model={"arch": "resnet18", "skip": False}, data={"augment": {"flip": False}}))
    assert spec.model.skip is False and spec.data.augment.flip is False


def test_an_empty_override_is_refused_naming_the_override():
    with pytest.raises(SpecError) as err:
        parse_override("train.epochs=")
    assert str(err.value).startswith("--set train.epochs=: ") and "null" in str(err.value)
    assert parse_override("data.root=null") == ("data.root", None)


@pytest.mark.parametrize("text", ["....=1", ".train=1", "train.=1", "train..epochs=1", "train. epochs=1"])
def test_an_override_key_must_be_a_dotted_path(text):
    with pytest.raises(SpecError) as err:
        parse_override(text)
    assert str(err.value).startswith(f"--set {text}: ") and "train.epochs" in str(err.value)


RACE = {"space": {"model.placement": ["layer3", "none", "all"]}, "seeds": {"start": 3, "max": 8},
        "race": {"margin": 0.01}}


def test_a_race_budget_starts_every_arm_with_the_same_seeds_and_keeps_the_rest_in_reserve(tmp_path):
    study = load_study(write(tmp_path, search=RACE))
    spec = study.spec
    assert spec.search.seeds == list(range(8)) and spec.search.race.start == 3
    assert sorted({t.seed for t in study.trials}) == [0, 1, 2] and len(study.trials) == 9
    assert len(study.every_trial) == 24
    assert study.baseline == "placement=none"  # the first arm without attention
    assert study.trial("placement=all", 5).seed == 5
    # Stored and read back (MLflow's spec.yaml, the study state), it is the same race.
    again = StudySpec.model_validate(yaml.safe_load(yaml.safe_dump(spec.model_dump(mode="json"))))
    assert again.search == spec.search


@pytest.mark.parametrize(("change", "message"), [
    ({"method": "optuna"}, "method optuna draws its trials"),
    ({"scheduler": "asha"}, "use scheduler: fifo"),
    ({"seeds": [0, 1]}, "race.start is 3 but search.seeds has only 2"),
    ({"seeds": {"start": 3, "most": 9}}, "expected a list of seeds or {start: N, max: M}"),
    ({"race": {"margin": 0.01, "baseline": "placement=layer9"}}, "'placement=layer9' is not an arm"),
    ({"space": {"model.placement": ["layer3", "all"]}}, "no arm is without attention modules"),
    ({"race": {"margin": 0}}, "search.race.margin"),
])
def test_a_race_that_cannot_run_is_refused_naming_the_key(tmp_path, change, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(write(tmp_path, search=RACE | change))
