"""What a study logs to MLflow, worked out without a store (test_mlflow_provenance.py checks that it is
logged): the parent run's params, which name the values a study sweeps rather than the defaults they
replace, and only the options its attention types take; the digest that tells one dataset from another;
the link that opens a study in the MLflow UI; and the description a spec gives its experiment."""

import json
from pathlib import Path

import yaml

from ablation import tracking
from ablation.core import DataSpec, Study, StudySpec, load_spec
from ablation.data.digest import data_digest


# ------------------------------------------------------------------------------------ the parent's params

def test_the_parent_run_logs_no_default_of_a_swept_key_but_the_values_swept(tiny_spec):
    spec = load_spec(tiny_spec)
    params = tracking.study_params(spec, Study.from_spec(spec).arms)
    assert "model.placement" not in params
    assert json.loads(params["search.space.model.placement"]) == ["none", "layer4"]
    assert params["model.arch"] == "resnet18"


def test_options_no_attention_type_of_the_study_takes_are_not_logged():
    """BAM's dilation in an Identity-CBAM study would read as a setting that mattered; a study that also
    runs BAM logs it on the parent, and on its BAM trials only."""
    own = StudySpec.model_validate({"name": "cbam", "model": {"attention": "identity_cbam"},
                                    "search": {"space": {"model.placement": ["none", "layer4"]}}})
    parent = tracking.study_params(own, Study.from_spec(own).arms)
    assert "model.reduction" in parent and "model.dilation" not in parent and "model.variant" not in parent
    both = StudySpec.model_validate({"name": "both", "model": {"attention": "identity_cbam", "placement": "layer3"},
                                     "search": {"space": {"model.attention": ["identity_cbam", "bam"]}}})
    study = Study.from_spec(both)
    assert "model.dilation" in tracking.study_params(both, study.arms)
    logged = {t.spec.model.attention: t.params() for t in study.trials}
    assert "model.dilation" in logged["bam"] and "model.dilation" not in logged["identity_cbam"]
    # A trial's id still digests every setting, so ids (and finished trials) stay as they were.
    assert "model.dilation" in study.trials[0].spec.params()


def test_an_ofat_parent_logs_the_values_its_arms_take_and_its_centre_as_a_setting():
    spec = StudySpec.model_validate({
        "name": "ofat", "model": {"attention": "identity_cbam", "placement": "all", "reduction": 16},
        "search": {"design": "ofat", "space": {"model.placement": ["layer3", "layer4"], "train.lr": [0.1]},
                   "baseline": {"model.placement": "layer4", "train.lr": 0.01}}})
    params = tracking.study_params(spec, Study.from_spec(spec).arms)
    assert json.loads(params["search.space.model.placement"]) == ["layer4", "layer3"]  # the centre first
    assert json.loads(params["search.space.train.lr"]) == [0.01, 0.1]
    assert "model.placement" not in params and "train.lr" not in params
    assert params["model.reduction"] == 16


def test_a_loco_parent_logs_the_components_its_arms_switch_off():
    spec = StudySpec.model_validate({"name": "loco", "model": {"attention": "identity_cbam", "placement": "layer4"},
                                     "search": {"design": "loco", "space": {}}})
    params = tracking.study_params(spec, Study.from_spec(spec).arms)
    assert json.loads(params["search.space.model.attention"]) == ["identity_cbam", "none"]
    assert json.loads(params["search.space.model.skip"]) == [True, False]
    assert "model.skip" not in params and "model.attention" not in params


# ------------------------------------------------------------------------------------ the dataset digest

def _folder_dataset(root: Path, moved: str | None = None) -> Path:
    for split in ("train", "val", "test"):
        for name in ("happy", "sad"):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(3):
                (root / split / name / f"{split}{name}{i}.png").write_bytes(b"")  # the index reads no pixels
    if moved:
        (root / "train" / "happy" / moved).rename(root / "train" / "sad" / moved)
    return root


def test_the_dataset_digest_tells_different_data_apart_and_not_the_same_data_elsewhere(tmp_path):
    def dataset_input(data: DataSpec):
        return tracking.dataset_input(data_digest(data))

    synthetic = dataset_input(DataSpec(train_per_class=4, val_per_class=2, test_per_class=2)).dataset
    assert json.loads(synthetic.profile) == {"train": 24, "val": 12, "test": 12, "image_size": 64,
                                             "classes": ["happy", "anger", "unrest", "wound", "sad", "neutral"]}
    other_seed = dataset_input(DataSpec(train_per_class=4, val_per_class=2, test_per_class=2, seed=1))
    flipless = dataset_input(DataSpec(train_per_class=4, val_per_class=2, test_per_class=2, augment={"flip": False}))
    assert other_seed.dataset.digest != synthetic.digest
    assert flipless.dataset.digest == synthetic.digest  # augmentation is training, not data

    here = dataset_input(DataSpec(dataset="folder", root=_folder_dataset(tmp_path / "a"))).dataset
    copy = dataset_input(DataSpec(dataset="folder", root=_folder_dataset(tmp_path / "b"))).dataset
    relabelled = dataset_input(DataSpec(dataset="folder", root=_folder_dataset(
        tmp_path / "c", moved="trainhappy0.png"))).dataset
    assert here.digest == copy.digest != relabelled.digest
    assert json.loads(here.profile)["train"] == 6 and here.source_type == "local"


# ------------------------------------------------------------------------------------ the link

def test_the_link_opens_the_studys_runs_in_the_model_training_view_with_its_saved_view():
    link = tracking.study_link("http://127.0.0.1:5000", "7")
    assert link == ("http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
                    "&viewStateShareKey=ablate")
    assert tracking.ui_address("http://mlflow:8080/") == "http://mlflow:8080"
    assert tracking.ui_address("sqlite:////x.db", host="0.0.0.0", port=5001) == "http://127.0.0.1:5001"


# ------------------------------------------------------------------------------------ the description

def test_the_spec_takes_a_description(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "description": "Does it help?",
                                    "search": {"space": {"model.placement": ["none", "all"]}}}))
    assert load_spec(path).description == "Does it help?"
    assert load_spec(path, ["description=Something else"]).description == "Something else"
