"""Each kind of dataset on disk trains a trial end to end: read, decode into the cache, fit.

The datasets are written here from generated faces in each format's own layout, a few images per
class, so these tests exercise the real readers and the real image cache.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from ablation import engine
from ablation.cli.main import app
from ablation.data import aihub_layout, build_splits, read_index
from ablation.data.synthetic import generate
from ablation.core import DataSpec, Study, load_spec

FER_NAMES = {"happy": 3, "anger": 0, "unrest": 2, "wound": 1, "sad": 4, "neutral": 6}  # FER2013's label numbers
RAF_NAMES = {"happy": 4, "anger": 6, "unrest": 2, "wound": 3, "sad": 5, "neutral": 7}  # RAF-DB's, 1-based


def faces(n_per_class: int, size: int, seed: int):
    arrays = generate(n_per_class, size, seed)
    classes = ("happy", "anger", "unrest", "wound", "sad", "neutral")
    return [(Image.fromarray(image), classes[label]) for image, label in zip(arrays.images, arrays.labels)]


def write_fer2013(root: Path) -> Path:
    rows = ["emotion,pixels,Usage"]
    for usage, seed in (("Training", 0), ("PublicTest", 1), ("PrivateTest", 2)):
        for image, name in faces(3, 48, seed):
            pixels = " ".join(map(str, np.asarray(image.convert("L")).ravel()))
            rows.append(f"{FER_NAMES[name]},{pixels},{usage}")
    rows.append("3,1 2 3,Training")  # a malformed row: reported, not fatal
    root.mkdir()
    (root / "fer2013.csv").write_text("\n".join(rows) + "\n")
    return root


def write_rafdb(root: Path) -> Path:
    (root / "EmoLabel").mkdir(parents=True)
    (root / "Image" / "aligned").mkdir(parents=True)
    lines = []
    for split, seed in (("train", 0), ("test", 1)):
        for i, (image, name) in enumerate(faces(10 if split == "train" else 2, 100, seed), 1):
            stem = f"{split}_{i:05d}" if split == "train" else f"{split}_{i:04d}"
            image.save(root / "Image" / "aligned" / f"{stem}_aligned.jpg")
            lines.append(f"{stem}.jpg {RAF_NAMES[name]}")
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


def write_folders(root: Path) -> Path:
    for split, seed in (("train", 0), ("val", 1), ("test", 2)):
        for i, (image, name) in enumerate(faces(2, 64, seed)):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            image.save(root / split / name / f"{i}.png")
    return root


def write_aihub(root: Path) -> Path:
    aihub_layout.write(root, per_class=3, valid_per_class=6, image_size=(160, 120), face_size=48, seed=0)
    return root


WRITERS = {"aihub": write_aihub, "fer2013": write_fer2013, "rafdb": write_rafdb, "folder": write_folders}


@pytest.mark.parametrize("dataset", list(WRITERS))
def test_a_trial_trains_on_each_kind_of_dataset(dataset, tiny_spec, tmp_path):
    root = WRITERS[dataset](tmp_path / dataset)
    spec = load_spec(tiny_spec, [f"data.dataset={dataset}", f"data.root={root}", "data.train_per_class=null",
                                 "data.val_per_class=null", "data.test_per_class=null"])
    splits = build_splits(spec.data)
    assert len(splits.train) >= 6 and len(splits.val) >= 1 and len(splits.test) >= 1
    image, _ = splits.train[0]
    assert image.shape == (3, 32, 32)
    trial = Study.from_spec(spec).trials[1]
    final = engine.fit(trial.spec, trial.seed, on_epoch=lambda metrics, checkpoint: None)
    assert 0 <= final["test_accuracy"] <= 1


@pytest.mark.slow
def test_a_study_on_the_papers_dataset_logs_what_it_skipped(tiny_spec, tmp_path, shared_ray):
    root = write_aihub(tmp_path / "aihub")  # with 당황, which the paper does not use
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = CliRunner().invoke(app, ["run", str(tiny_spec), "--tracking-uri", uri, "--storage",
                                      str(tmp_path / "runs"), "--set", "data.dataset=aihub", "--set",
                                      f"data.root={root}", "--set", "search.space.model.placement=[layer4]"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "9 input(s) skipped" in said and "9 class not used: 당황 (left out on purpose" in said
    client = MlflowClient(uri)
    parent = next(r for r in client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
                  if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.tags["ablate.data_skipped"] == "9"
    assert "data_skipped.json" in [a.path for a in client.list_artifacts(parent.info.run_id)]


def test_data_summary_counts_what_generate_wrote_and_verify_finds_a_broken_photo(tmp_path):
    root = tmp_path / "aihub"
    written = CliRunner().invoke(app, ["data", "generate", "--root", str(root), "--per-class", "3",
                                       "--valid-per-class", "4", "--width", "160", "--height", "120"])
    assert written.exit_code == 0, written.output
    photo = next((root / "Training").rglob("*기쁨*.jpg"))
    photo.write_bytes(photo.read_bytes()[:300])  # truncated, as by an interrupted copy

    result = CliRunner().invoke(app, ["data", "summary", "--dataset", "aihub", "--root", str(root), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    index = read_index(DataSpec(dataset="aihub", root=root))
    assert summary["counts"] == index.counts()
    assert sum(summary["counts"]["train"].values()) + sum(
        1 for s in summary["skipped"] if "Training" in s["path"]) == 7 * 3  # every photo is counted somewhere
    assert {s["reason"].split(":")[0] for s in summary["skipped"]} == {"class not used"}  # 당황, no decoding

    verified = CliRunner().invoke(app, ["data", "summary", "--dataset", "aihub", "--root", str(root), "--json",
                                        "--verify"])
    broken = [s for s in json.loads(verified.output)["skipped"] if s["path"] == str(photo)]
    assert len(broken) == 1 and broken[0]["reason"].startswith("corrupt or truncated image")


def test_data_commands_refuse_bad_input_with_exit_2(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    for args in (["summary", "--dataset", "aihub", "--root", str(tmp_path / "missing")],
                 ["summary", "--dataset", "aihub", "--root", str(tmp_path)],  # not the layout
                 ["summary", "--dataset", "imagenet", "--root", str(tmp_path)],
                 ["generate", "--root", str(tmp_path / "full")]):
        result = CliRunner().invoke(app, ["data", *args])
        assert result.exit_code == 2 and "error:" in result.output, args


@pytest.mark.slow
def test_a_rerun_or_resume_over_changed_image_folders_is_refused_naming_the_change(tiny_spec, tmp_path, shared_ray):
    """Before, `ablate resume` after a class folder was added and images removed trained new seeds on 3 classes
    beside finished 2-class ones, and the in-flight trial failed on `size mismatch for fc.bias`."""
    root = write_folders(tmp_path / "faces")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ["--tracking-uri", uri, "--storage", str(tmp_path / "runs"), "--set", "data.dataset=folder",
              "--set", f"data.root={root}", "--set", "search.space.model.placement=[layer4]", "--set",
              "search.seeds=[0]"] + [f"--set=data.{split}_per_class=null" for split in ("train", "val", "test")]
    first = CliRunner().invoke(app, ["run", str(tiny_spec), *common])
    assert first.exit_code == 0, first.output
    unchanged = CliRunner().invoke(app, ["run", str(tiny_spec), *common])  # same data: nothing to run again
    assert unchanged.exit_code == 0, unchanged.output

    (root / "train" / "happy" / "0.png").unlink()
    (root / "train" / "surprise").mkdir()
    for i in range(2):
        faces(1, 64, 9)[0][0].save(root / "train" / "surprise" / f"{i}.png")
    for split in ("val", "test"):
        (root / split / "surprise").mkdir()
        faces(1, 64, 9)[0][0].save(root / split / "surprise" / "0.png")
    rerun = CliRunner().invoke(app, ["run", str(tiny_spec), *common, "--set", "search.seeds=[0,1]"])
    resumed = CliRunner().invoke(app, ["resume", str(tmp_path / "runs" / "tiny")])
    for refused in (rerun, resumed):
        said = " ".join(refused.output.split())
        assert refused.exit_code == 2, refused.output
        assert "changed since its trials trained on it" in said and "class surprise added" in said, said
        assert "train 12 -> 13 images" in said and "--set name=tiny-2" in said, said
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert sum(r.data.tags.get("ablate.kind") == "trial" for r in runs) == 1  # nothing started on the new data
