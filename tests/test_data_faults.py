"""A dataset a study cannot train on is refused before Ray starts, with one line naming the dataset
and the split at fault; the counts `ablate data summary --verify` shows are those a study would use,
a file whose name is not UTF-8 among them; and training never fails on the size of its last batch.

Every dataset is written here, in tmp_path, in its real on-disk layout; nothing is mocked.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import ray
from mlflow.tracking import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from ablation import engine
from ablation.cli.main import app
from ablation.data import aihub_layout, build_splits, check_trainable, read_index
from ablation.data.digest import data_digest
from ablation.data.records import CORRUPT, MALFORMED, MISSING_FILE, UNUSED_CLASS, DataError, Skipped, describe_skipped
from ablation.driver.prepare import prepare_data
from ablation.core import DataSpec, Study, load_spec

runner = CliRunner()


def _jpeg(seed: int, size: int = 48) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def images(root: Path, files: list[str], *, truncated: tuple[str, ...] = ()) -> Path:
    """An image-folder dataset: a JPEG at each path under root (empty folders for paths ending in
    '/', a text file for .txt); the paths in `truncated` are cut short, as by an interrupted copy."""
    for i, name in enumerate(files):
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".txt"):
            path.write_text("notes")
        else:
            data = _jpeg(i)
            path.write_bytes(data[:300] if name in truncated else data)
    return root


def two_of_each(split: str, classes=("happy", "sad")) -> list[str]:
    return [f"{split}/{name}/{i}.jpg" for name in classes for i in range(2)]


GOOD = two_of_each("train") + two_of_each("val") + two_of_each("test")


# ---------------------------------------------------------------- refused before Ray starts


def _empty_class_folders(tmp_path):
    root = images(tmp_path / "faces", ["train/happy/", "train/sad/", "val/happy/", "test/sad/"])
    return root, ["no usable images"]


def _aihub_without_images(tmp_path):
    root = tmp_path / "aihub"
    aihub_layout.write(root, per_class=2, valid_per_class=2, image_size=(96, 72), face_size=32, seed=0)
    for photo in root.rglob("*.jpg"):
        photo.unlink()  # the label JSON stays: every record names a file that is not there
    return root, ["no usable images", "record without its image file"]


def _aihub_without_its_layout(tmp_path):
    root = tmp_path / "aihub"
    (root / "photos").mkdir(parents=True)
    return root, ["is not an AI-HUB root", "no Training folder"]


def _val_empty_after_skipping(tmp_path):
    root = images(tmp_path / "faces", two_of_each("train") + ["val/happy/readme.txt"] + two_of_each("test"))
    return root, ["the val split has no usable images", "1 not an image file"]


def _one_class(tmp_path):
    root = images(tmp_path / "faces", two_of_each("train", ["happy"]) + two_of_each("val", ["happy"])
                  + two_of_each("test", ["happy"]))
    return root, ["the train split", "one class (happy)", "at least two classes"]


def _one_training_image(tmp_path):
    root = images(tmp_path / "faces", ["train/happy/0.jpg"] + two_of_each("val") + two_of_each("test"))
    return root, ["the train split", "1 usable image", "at least two classes"]


def _only_corrupt_images(tmp_path):
    root = images(tmp_path / "faces", GOOD, truncated=tuple(GOOD))
    return root, ["no usable images", f"12 {CORRUPT}"]


def _val_only_corrupt(tmp_path):
    val = tuple(two_of_each("val"))
    root = images(tmp_path / "faces", GOOD, truncated=val)
    return root, ["the val split has no usable images", f"all 4 of its images were skipped (4 {CORRUPT})"]


# A name whose bytes are not UTF-8 (Latin-1's "café", say), as Python reads it from the disk: os.fsdecode
# turns the odd byte into a lone surrogate, which no UTF-8 console, JSON file or MLflow key can hold.
CAFE = os.fsdecode(b"caf\xe9")


def _class_folder_not_utf8(tmp_path):
    root = images(tmp_path / "faces", GOOD + [f"train/{CAFE}/0.jpg", f"test/{CAFE}/0.jpg"])
    return root, [f"class folder {root}/train/caf\\xe9/ is not UTF-8", "test_f1_<class>", "rename the folder"]


def _class_folder_mlflow_cannot_name(tmp_path):
    root = images(tmp_path / "faces", GOOD + ["train/happy+sad/0.jpg", "test/happy+sad/0.jpg"])
    return root, [f"class folder {root}/train/happy+sad/ holds a character MLflow refuses", "rename the folder"]


@pytest.fixture
def run_refused(tiny_spec, tmp_path, own_ray):
    """`ablate run` of the tiny study on a dataset, with the store and storage it would create."""
    store, runs = tmp_path / "store", tmp_path / "runs"

    def run(dataset: str, root: Path):
        return runner.invoke(app, ["run", str(tiny_spec), "--tracking-uri", str(store), "--storage", str(runs),
                                   "--set", f"data.dataset={dataset}", "--set", f"data.root={root}"])

    run.created = lambda: [p for p in (store, runs, Path("mlruns"), Path("ablate_runs")) if p.exists()]
    return run


@pytest.mark.parametrize(("make", "dataset"), [
    (_empty_class_folders, "folder"),
    (_aihub_without_images, "aihub"),
    (_aihub_without_its_layout, "aihub"),
    (_val_empty_after_skipping, "folder"),
    (_one_class, "folder"),
    (_one_training_image, "folder"),
    (_only_corrupt_images, "folder"),
    (_val_only_corrupt, "folder"),
    (_class_folder_not_utf8, "folder"),
    (_class_folder_mlflow_cannot_name, "folder"),
], ids=lambda v: getattr(v, "__name__", v).strip("_"))
def test_a_dataset_a_study_cannot_train_on_exits_2_in_one_line_before_ray_starts(make, dataset, tmp_path,
                                                                                 tiny_spec, run_refused):
    root, expected = make(tmp_path)
    result = run_refused(dataset, root)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert errors[0].startswith(f"error: {tiny_spec}: data: {root}"), errors[0]
    for words in expected:
        assert words in errors[0], errors[0]
    assert "Traceback" not in result.output
    assert not ray.is_initialized()
    assert run_refused.created() == []


# ---------------------------------------------------------------- data summary --verify


def test_data_summary_verify_counts_only_the_images_that_decode(tmp_path):
    broken = "train/happy/1.jpg"
    root = images(tmp_path / "faces", GOOD, truncated=(broken,))
    base = ["data", "summary", "--dataset", "folder", "--root", str(root)]

    listed = json.loads(runner.invoke(app, [*base, "--json"]).output)
    assert listed["counts"]["train"] == {"happy": 2, "sad": 2}  # without --verify nothing is decoded

    result = runner.invoke(app, [*base, "--json", "--verify"])
    assert result.exit_code == 0, result.output
    verified = json.loads(result.output)
    assert [s["path"] for s in verified["skipped"]] == [str(root / broken)]
    assert verified["counts"] == {"train": {"happy": 1, "sad": 2}, "val": {"happy": 2, "sad": 2},
                                  "test": {"happy": 2, "sad": 2}}

    table = runner.invoke(app, [*base, "--verify"])
    assert table.exit_code == 0, table.output
    assert _row(table.output, "happy") == ["1", "2", "2"]
    assert _row(table.output, "all") == ["3", "4", "4"]


def _row(table: str, name: str) -> list[str]:
    """The train, val and test cells of the table row whose first cell is `name`."""
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells and cells[0] == name:
            return cells[1:]
    raise AssertionError(f"no row {name!r} in\n{table}")


def test_a_file_whose_name_is_not_utf8_is_counted_read_and_trained_like_any_other(tmp_path, tiny_spec):
    root = images(tmp_path / "faces", GOOD + [f"train/happy/{CAFE}.jpg"])
    odd = str(root / "train" / "happy" / f"{CAFE}.jpg")
    assert b"caf\xe9.jpg" in os.listdir(os.fsencode(root / "train" / "happy"))  # on disk, the byte 0xe9 as it is
    spec = load_spec(tiny_spec, ["data.dataset=folder", f"data.root={root}"])

    summary = runner.invoke(app, ["data", "summary", "--dataset", "folder", "--root", str(root), "--verify", "--json"])
    assert summary.exit_code == 0, summary.output
    assert json.loads(summary.output)["counts"]["train"] == {"happy": 3, "sad": 2}
    # Training uses what the summary counted: the odd name is chosen, decoded and trained on.
    chosen = read_index(spec.data).split("train", None, spec.data.seed)
    assert odd in [item.source for item in chosen]
    splits = build_splits(spec.data)
    assert (len(splits.train), len(splits.val), len(splits.test), splits.skipped) == (5, 4, 4, ())
    check_trainable(spec.data, splits)
    assert data_digest(spec.data).profile["train"] == 5  # what the study's MLflow dataset input records
    final = engine.fit(spec, seed=0, on_epoch=lambda m, c: None)
    assert 0 <= final["test_accuracy"] <= 1


def test_a_name_that_is_not_utf8_joins_a_split_without_moving_the_others(tmp_path):
    """A split is chosen by a hash of each file's name: the odd name hashes too, adding it moves no other
    file, and UTF-8 names are hashed as they always were, so a study run before keeps its split."""
    spec = DataSpec(dataset="folder", root=images(tmp_path / "faces", [f"train/happy/{i}.jpg" for i in range(8)]
                                                  + ["train/sad/0.jpg"]))
    happy = [item.source for item in read_index(spec).split("train", None, 0) if "/happy/" in item.source]
    assert happy == sorted(happy, key=lambda source: hashlib.sha1(f"0/{source}".encode()).digest())
    odd = str(images(spec.root, [f"train/happy/{CAFE}.jpg"]) / "train" / "happy" / f"{CAFE}.jpg")
    after = [item.source for item in read_index(spec).split("train", None, 0) if "/happy/" in item.source]
    assert odd in after and [source for source in after if source != odd] == happy


def test_a_skipped_file_whose_name_is_not_utf8_is_listed_with_its_bytes_escaped(tmp_path):
    root = images(tmp_path / "faces", GOOD + [f"train/happy/{CAFE}.jpg", f"train/sad/{CAFE}.txt"],
                  truncated=(f"train/happy/{CAFE}.jpg",))
    result = runner.invoke(app, ["data", "summary", "--dataset", "folder", "--root", str(root), "--verify"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"{root}/train/happy/caf\\xe9.jpg" in text and f"{root}/train/sad/caf\\xe9.txt" in text


# ---------------------------------------------------------------- what PIL only warns of


def test_an_image_pil_only_warns_of_as_a_decompression_bomb_is_decoded_without_the_warning(tmp_path, monkeypatch):
    """PIL warns of an image past MAX_IMAGE_PIXELS and refuses one past twice that. The refused one is
    skipped and counted; the other decodes like any image, so its warning would be noise on the terminal."""
    root = images(tmp_path / "faces", GOOD)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 48 * 48 - 1)  # each 48 x 48 image: warned of, not refused
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = runner.invoke(app, ["data", "summary", "--dataset", "folder", "--root", str(root), "--verify",
                                      "--json"])
        splits = build_splits(DataSpec(dataset="folder", root=root, image_size=32))
    assert summary.exit_code == 0, summary.output
    assert json.loads(summary.output)["skipped"] == [] and len(splits.train) == 4 and splits.skipped == ()
    assert [w.message for w in caught if issubclass(w.category, Image.DecompressionBombWarning)] == []


# ---------------------------------------------------------------- skipped files at real scale


def test_skipped_files_are_counted_by_reason_with_a_few_listed_and_an_unused_class_only_counted():
    skipped = ([Skipped(f"/aihub/당황/{i}.jpg", f"{UNUSED_CLASS}: 당황") for i in range(4000)]
               + [Skipped(f"/aihub/기쁨/{i}.jpg", MISSING_FILE) for i in range(5)]
               + [Skipped("/aihub/x.json", f"{MALFORMED}: /aihub/x.json: Expecting value")])
    lines = describe_skipped(skipped)
    assert lines == [f"  5 {MISSING_FILE}:", "    /aihub/기쁨/0.jpg", "    /aihub/기쁨/1.jpg", "    /aihub/기쁨/2.jpg",
                     "    ... and 2 more",
                     f"  1 {MALFORMED}:", "    /aihub/x.json (Expecting value)",
                     f"  4,000 {UNUSED_CLASS}: 당황 (left out on purpose: counted, not listed)"]


@pytest.fixture
def aihub_with_faults(tmp_path):
    """A generated AI-HUB tree (with its 당황 photos) where five records have lost their photos."""
    root = tmp_path / "aihub"
    aihub_layout.write(root, per_class=4, valid_per_class=4, image_size=(96, 72), face_size=32, seed=0)
    for photo in [p for p in sorted(root.rglob("*.jpg")) if "당황" not in p.name][:5]:
        photo.unlink()
    return root


def test_data_summary_groups_skipped_files_by_reason_and_lists_every_one_only_in_json(aihub_with_faults):
    base = ["data", "summary", "--dataset", "aihub", "--root", str(aihub_with_faults)]
    result = runner.invoke(app, base)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "13 skipped, by reason (--json lists every file):" in text
    assert "5 record without its image file:" in text and "... and 2 more" in text
    assert "8 class not used: 당황 (left out on purpose: counted, not listed)" in text
    assert "당황_" not in result.output  # no 당황 photo is named
    listed = json.loads(runner.invoke(app, [*base, "--json"]).output)["skipped"]
    assert len(listed) == 13 and sum("당황_" in s["path"] for s in listed) == 8


def test_a_study_prints_what_its_data_skipped_grouped_by_reason(aihub_with_faults, tiny_spec):
    from rich.console import Console

    spec = load_spec(tiny_spec, ["data.dataset=aihub", f"data.root={aihub_with_faults}"])
    console = Console(record=True, width=100)
    skipped = prepare_data(list(Study.from_spec(spec).trials), console)
    assert len(skipped) == 13
    text = " ".join(console.export_text().split())
    assert "13 input(s) skipped, by reason; the study's parent run lists every one in its artifact " \
           "data_skipped.json:" in text
    assert "5 record without its image file:" in text and "... and 2 more" in text
    assert "8 class not used: 당황 (left out on purpose" in text and "당황_" not in text


# ---------------------------------------------------------------- the last training batch


@pytest.fixture
def odd_batches(tiny_spec):
    """24 training images of 32 px in batches of 23: the last batch would hold one image, and at 32 px
    layer4's BatchNorm sees a single value per channel."""
    return load_spec(tiny_spec, ["model.placement=layer4", "data.train_per_class=4", "train.batch_size=23",
                                 "train.epochs=2"])


def test_a_last_training_batch_of_one_image_does_not_fail_training(odd_batches):
    epochs = []
    final = engine.fit(odd_batches, seed=0, on_epoch=lambda m, c: epochs.append(m))
    assert [m["epoch"] for m in epochs] == [1, 2]
    assert 0 <= final["test_accuracy"] <= 1


def test_the_lone_image_left_out_of_an_epoch_changes_from_epoch_to_epoch(odd_batches):
    s = engine.setup(odd_batches, seed=0)
    epochs = [list(s.train_loader.batch_sampler) for _ in range(6)]  # what each epoch draws, in order
    assert all([len(batch) for batch in epoch] == [23] for epoch in epochs)
    left_out = [set(range(24)) - set(epoch[0]) for epoch in epochs]
    assert len(set(map(frozenset, left_out))) > 1


@pytest.mark.parametrize(("batch_size", "batches"), [(22, [22, 2]), (24, [24]), (5, [5, 5, 5, 5, 4])])
def test_a_last_batch_of_two_or_more_images_is_kept(odd_batches, batch_size, batches):
    spec = odd_batches.model_copy(update={"train": odd_batches.train.model_copy(update={"batch_size": batch_size})})
    s = engine.setup(spec, seed=0)
    assert [len(batch) for batch in s.train_loader.batch_sampler] == batches


def test_fit_refuses_a_training_split_of_one_image(tiny_spec, tmp_path):
    root = images(tmp_path / "faces", ["train/happy/0.jpg"] + two_of_each("val") + two_of_each("test"))
    spec = load_spec(tiny_spec, ["data.dataset=folder", f"data.root={root}", "model.placement=layer4"])
    with pytest.raises(DataError, match=r"the train split has 1 usable image"):
        engine.fit(spec, seed=0, on_epoch=lambda m, c: None)


@pytest.mark.slow
def test_a_study_whose_last_batch_holds_one_image_finishes_every_trial_at_the_first_attempt(tiny_spec, tmp_path,
                                                                                            shared_ray):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = runner.invoke(app, ["run", str(tiny_spec), "--tracking-uri", uri, "--storage", str(tmp_path / "runs"),
                                 "--set", "data.train_per_class=4", "--set", "train.batch_size=23"])
    assert result.exit_code == 0, result.output
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["ablate.attempts"] == "1"
