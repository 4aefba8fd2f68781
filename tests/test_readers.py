"""Dataset readers (FER2013, RAF-DB, image folders): what they index, what they skip and why, and how
they refuse a root that is not their layout. Every fixture is generated here, in tmp_path."""

from __future__ import annotations

import hashlib
import io
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ablation.data import fer2013, folder, rafdb
from ablation.data.records import (
    EMOTIONS,
    Index,
    MALFORMED,
    MISSING_FILE,
    NO_RECORD,
    UNKNOWN_LABEL,
    UNUSED_CLASS,
)
from ablation.core import DataSpec

# ---------------------------------------------------------------- FER2013

ANGRY, DISGUST, FEAR, HAPPY, SAD, SURPRISE, NEUTRAL = range(7)


def _pixels(seed: int, n: int = 2304) -> str:
    return " ".join(str(v) for v in np.random.default_rng(seed).integers(0, 256, n))


def _fer_csv(path: Path, rows: list[tuple], header: str = "emotion,pixels,Usage") -> Path:
    """rows of (emotion, pixels, usage) in the header's column order as given; returns the path."""
    lines = [header] + [",".join(str(field) for field in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD_ROWS = [  # lines 2-9
    (HAPPY, _pixels(0), "Training"),
    (HAPPY, _pixels(1), "Training"),
    (ANGRY, _pixels(2), "Training"),
    (DISGUST, _pixels(3), "Training"),
    (SURPRISE, _pixels(4), "Training"),
    (SAD, _pixels(5), "PublicTest"),
    (FEAR, _pixels(6), "PublicTest"),
    (NEUTRAL, _pixels(7), "PrivateTest"),
]


def _fer(root: Path, **data) -> Index:
    return fer2013.read(DataSpec(dataset="fer2013", root=root, **data))


def test_fer2013_rows_become_48x48_grey_items_in_the_split_their_usage_names(tmp_path):
    csv = _fer_csv(tmp_path / "fer2013.csv", GOOD_ROWS)
    index = _fer(csv)
    assert index.dataset == "fer2013" and index.classes == EMOTIONS
    assert index.counts() == {
        "train": {"happy": 2, "anger": 1, "unrest": 0, "wound": 1, "sad": 0, "neutral": 0},
        "val": {"happy": 0, "anger": 0, "unrest": 1, "wound": 0, "sad": 1, "neutral": 0},
        "test": {"happy": 0, "anger": 0, "unrest": 0, "wound": 0, "sad": 0, "neutral": 1},
    }
    first = index.items[0]
    assert first.source == f"{csv.resolve()}:2"  # the header is line 1
    assert first.pixels.dtype == np.uint8 and first.pixels.shape == (48, 48)
    assert first.pixels.ravel().tolist() == [int(v) for v in _pixels(0).split()]
    assert [item.source.rsplit(":", 1)[1] for item in index.items] == ["2", "3", "4", "5", "7", "8", "9"]


def test_fer2013_drops_surprise_and_maps_disgust_to_wound_by_default(tmp_path):
    index = _fer(_fer_csv(tmp_path / "fer2013.csv", GOOD_ROWS))
    assert index.skipped_by_reason() == {UNUSED_CLASS: 1}
    assert index.skipped[0].path.endswith("fer2013.csv:6")
    assert index.items[3].label == EMOTIONS.index("wound")
    assert fer2013.DEFAULT_MAP == {"angry": "anger", "disgust": "wound", "fear": "unrest", "happy": "happy",
                                   "sad": "sad", "surprise": None, "neutral": "neutral"}


def test_a_label_map_keeps_surprise_or_drops_disgust(tmp_path):
    csv = _fer_csv(tmp_path / "fer2013.csv", GOOD_ROWS)
    kept = _fer(csv, label_map={"surprise": "happy"})
    assert kept.counts()["train"]["happy"] == 3 and kept.skipped == []
    dropped = _fer(csv, label_map={"disgust": None})
    assert dropped.counts()["train"]["wound"] == 0
    assert dropped.skipped_by_reason() == {UNUSED_CLASS: 2}  # Surprise, still dropped, and Disgust


def test_a_label_map_entry_for_no_source_class_is_an_error_naming_it_and_the_valid_names(tmp_path):
    csv = _fer_csv(tmp_path / "fer2013.csv", GOOD_ROWS)
    with pytest.raises(ValueError, match=r"'contempt'.*angry, disgust, fear, happy, sad, surprise, neutral"):
        _fer(csv, label_map={"contempt": "anger"})


def test_a_malformed_fer2013_row_is_reported_by_its_line_number(tmp_path):
    rows = GOOD_ROWS[:2] + [
        (HAPPY, _pixels(8, n=2303), "Training"),  # line 4: a pixel short
        (HAPPY, _pixels(9).replace(" 1", " x", 1), "Training"),  # 5: not a number
        (HAPPY, "256 " + _pixels(10, n=2303), "Training"),  # 6: out of range
        ("happy", _pixels(11), "Training"),  # 7: emotion not a code
        (HAPPY, _pixels(12), "Validation"),  # 8: unknown usage
        (HAPPY, _pixels(13)),  # 9: a field short
        (9, _pixels(14), "Training"),  # 10: no such emotion
        (SAD, _pixels(15), "PrivateTest"),  # 11: fine
    ]
    csv = _fer_csv(tmp_path / "fer2013.csv", rows)
    index = _fer(csv)
    assert len(index.items) == 3
    assert index.skipped_by_reason() == {MALFORMED: 6, UNKNOWN_LABEL: 1}
    where = {s.path.rsplit(":", 1)[1]: s.reason for s in index.skipped}
    assert all(s.path.startswith(f"{csv.resolve()}:") for s in index.skipped)
    assert "2303" in where["4"] and "integer" in where["5"] and "0-255" in where["6"]
    assert "'happy'" in where["7"] and "'Validation'" in where["8"] and "fields" in where["9"]
    assert where["10"].startswith(UNKNOWN_LABEL)


def test_fer2013_columns_are_found_by_the_header_in_a_folder_holding_the_csv(tmp_path):
    # icml_face_data.csv: the same rows, columns in another order, names after ", "
    rows = [(emotion, usage, pixels) for emotion, pixels, usage in GOOD_ROWS]
    _fer_csv(tmp_path / "icml_face_data.csv", rows, header="emotion, Usage, pixels")
    index = _fer(tmp_path)
    assert sum(sum(c.values()) for c in index.counts().values()) == 7
    assert index.items[0].pixels.ravel()[:3].tolist() == [int(v) for v in _pixels(0).split()[:3]]


def test_a_fer2013_root_that_is_not_the_csv_or_its_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"no FER2013 CSV in this folder; expected fer2013\.csv"):
        _fer(tmp_path)
    other = tmp_path / "labels.csv"
    other.write_text("name,label\na.jpg,1\n")
    with pytest.raises(ValueError, match=r"labels\.csv: not a FER2013 CSV; expected .*emotion, pixels, Usage"):
        _fer(other)


def test_fer2013_parses_a_full_size_file_quickly(tmp_path):
    """Timing of the real 35,887 rows is measured by hand (about 3 s); here a thousand rows, well under a second."""
    row = f"{HAPPY},{_pixels(0)},Training\n"
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + row * 1000)
    index = _fer(path)
    assert len(index.items) == 1000 and index.skipped == []


# ---------------------------------------------------------------- RAF-DB

def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (120, 80, 60)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _rafdb(root: Path, lines: list[str], images: list[str]) -> Path:
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    (root / "Image" / "aligned").mkdir(parents=True)
    data = _jpeg()
    for name in images:
        (root / "Image" / "aligned" / name).write_bytes(data)
    return root


RAF_HAPPY = [f"train_{i:05d}.jpg 4" for i in range(1, 21)]  # 20 happy train images: 2 go to val
RAF_LINES = RAF_HAPPY + [
    "train_00021.jpg 6",  # anger
    "train_00022.jpg 3",  # disgust -> wound
    "train_00023.jpg 1",  # surprise: dropped
    "train_00024.jpg 7",  # line 24: its image is missing
    "test_0001.jpg 5",  # sad
    "test_0002.jpg 2",  # fear -> unrest
    "train_00025.jpg",  # line 27: no label
    "train_00026.jpg seven",  # 28: not a number
    "train_00027.jpg 8",  # 29: no such label
]


def _raf_images(lines: list[str]) -> list[str]:
    names = [line.split()[0].replace(".jpg", "_aligned.jpg") for line in lines]
    names.remove("train_00024_aligned.jpg")
    return names + ["train_00099_aligned.jpg"]  # an image without a label line


def _raf(root: Path, **data) -> Index:
    return rafdb.read(DataSpec(dataset="rafdb", root=root, **data))


def test_rafdb_indexes_aligned_images_and_skips_each_bad_input_with_its_reason(tmp_path):
    root = _rafdb(tmp_path / "basic", RAF_LINES, _raf_images(RAF_LINES))
    index = _raf(root)
    assert index.dataset == "rafdb" and index.classes == EMOTIONS
    assert index.counts() == {
        "train": {"happy": 18, "anger": 1, "unrest": 0, "wound": 1, "sad": 0, "neutral": 0},
        "val": {"happy": 2, "anger": 0, "unrest": 0, "wound": 0, "sad": 0, "neutral": 0},
        "test": {"happy": 0, "anger": 0, "unrest": 1, "wound": 0, "sad": 1, "neutral": 0},
    }
    assert index.items[0].source == str(root.resolve() / "Image" / "aligned" / "train_00001_aligned.jpg")
    assert index.skipped_by_reason() == {UNUSED_CLASS: 1, MISSING_FILE: 1, NO_RECORD: 1, MALFORMED: 2,
                                         UNKNOWN_LABEL: 1}
    paths = {s.reason.split(":")[0]: s.path for s in index.skipped}
    assert paths[MISSING_FILE].endswith("train_00024_aligned.jpg")
    assert paths[NO_RECORD].endswith("train_00099_aligned.jpg")
    assert paths[UNKNOWN_LABEL].endswith("list_patition_label.txt:29")
    malformed = sorted(s.path.rsplit(":", 1)[1] for s in index.skipped if s.reason.startswith(MALFORMED))
    assert malformed == ["27", "28"]


def test_rafdb_carves_val_from_train_by_the_seeded_hash_within_each_class(tmp_path):
    root = _rafdb(tmp_path / "basic", RAF_LINES, _raf_images(RAF_LINES))

    def val(seed, **data):
        return sorted(Path(item.source).name for item in _raf(root, seed=seed, **data).items if item.split == "val")

    names = sorted((f"train_{i:05d}.jpg" for i in range(1, 21)),
                   key=lambda name: hashlib.sha1(f"0/{name}".encode()).digest())
    assert val(0) == sorted(name.replace(".jpg", "_aligned.jpg") for name in names[:2])
    assert val(0) == val(0) == val(0, label_map={"surprise": "happy"})  # the label map moves no image
    assert any(val(seed) != val(0) for seed in (1, 2, 3))
    assert not any(item.source.split("/")[-1].startswith("test_") and item.split != "test" for item in _raf(root).items)


def test_rafdb_shares_the_label_table_and_its_overrides_with_fer2013(tmp_path):
    root = _rafdb(tmp_path / "basic", RAF_LINES, _raf_images(RAF_LINES))
    index = _raf(root, label_map={"surprise": "happy", "disgust": None})
    assert sum(index.counts()[s]["happy"] for s in ("train", "val")) == 21
    assert index.counts()["train"]["wound"] == 0
    assert index.skipped_by_reason()[UNUSED_CLASS] == 1  # now Disgust rather than Surprise


def test_rafdb_lists_images_without_decoding_them(tmp_path):
    root = _rafdb(tmp_path / "basic", ["test_0001.jpg 4"], [])
    (root / "Image" / "aligned" / "test_0001_aligned.jpg").write_bytes(b"not a jpeg")
    assert _raf(root).counts()["test"]["happy"] == 1  # the image cache finds it corrupt, not the reader


def test_rafdb_accepts_the_folder_above_basic(tmp_path):
    _rafdb(tmp_path / "basic", RAF_LINES, _raf_images(RAF_LINES))
    assert len(_raf(tmp_path).items) == 24


def test_a_rafdb_root_without_its_label_file_and_images_is_a_clear_error(tmp_path):
    (tmp_path / "Image" / "aligned").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"not RAF-DB basic; expected EmoLabel/list_patition_label\.txt"):
        _raf(tmp_path)


# ---------------------------------------------------------------- image folders

def _folders(root: Path, files: list[str]) -> Path:
    data = _jpeg()
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


FOLDER_FILES = [
    "train/happy/a.jpg", "train/happy/b.JPEG", "train/happy/more/c.png", "train/happy/notes.txt",
    "train/sad/a.bmp", "train/sad/.DS_Store", "train/README.md",
    "valid/happy/x.PNG", "valid/neutral/y.webp",
    "test/sad/z.jpg",
]


def _folder(root: Path) -> Index:
    return folder.read(DataSpec(dataset="folder", root=root))


def test_image_folders_index_every_image_under_its_split_and_class(tmp_path):
    index = _folder(_folders(tmp_path / "faces", FOLDER_FILES))
    assert index.dataset == "folder"
    assert index.classes == ("happy", "neutral", "sad") == folder.classes(tmp_path / "faces")
    assert index.counts() == {
        "train": {"happy": 3, "neutral": 0, "sad": 1},
        "val": {"happy": 1, "neutral": 1, "sad": 0},  # valid/ is the val split
        "test": {"happy": 0, "neutral": 0, "sad": 1},
    }
    reasons = {Path(s.path).name: s.reason for s in index.skipped}
    assert reasons == {"notes.txt": folder.NOT_AN_IMAGE, "README.md": folder.NOT_IN_A_CLASS}  # .DS_Store ignored


def test_image_folder_class_names_are_nfc_normalised_into_one_class(tmp_path):
    composed, decomposed = "café", unicodedata.normalize("NFD", "café")
    root = _folders(tmp_path, [f"train/{composed}/a.jpg", f"test/{decomposed}/b.jpg", "train/happy/c.jpg"])
    index = _folder(root)
    assert index.classes == ("café", "happy")
    assert index.counts()["test"]["café"] == 1


def test_class_folders_that_differ_only_in_case_are_refused_naming_both(tmp_path):
    """Metric keys name a class in lower case (test_f1_cat): Cat and cat would train as two classes
    and report as one, so one class's F1 would vanish."""
    root = _folders(tmp_path, ["train/Cat/a.jpg", "train/cat/b.jpg", "test/dog/c.jpg"])
    with pytest.raises(ValueError, match=r"class folders Cat/ and cat/ differ only in case"):
        _folder(root)


def test_a_class_folder_without_images_is_no_class_and_is_counted_as_skipped(tmp_path):
    root = _folders(tmp_path, ["train/happy/a.jpg", "train/sad/b.jpg", "train/empty/notes.txt", "test/sad/c.jpg"])
    (root / "test" / "empty").mkdir()
    index = _folder(root)
    assert index.classes == ("happy", "sad")
    assert index.counts()["train"] == {"happy": 1, "sad": 1}
    empty = sorted(Path(s.path).relative_to(root).as_posix() for s in index.skipped if s.reason == folder.EMPTY_CLASS)
    assert empty == ["test/empty", "train/empty"]
    assert [s.reason for s in index.skipped if s.path.endswith("notes.txt")] == [folder.NOT_AN_IMAGE]


def test_an_image_folder_root_without_train_or_classes_is_a_clear_error(tmp_path):
    _folders(tmp_path / "flat", ["happy/a.jpg"])
    with pytest.raises(ValueError, match=r"flat: no train/ folder; expected .*; found happy"):
        _folder(tmp_path / "flat")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no class folders in train/"):
        _folder(tmp_path / "empty")
    _folders(tmp_path / "both", ["train/a/1.jpg", "val/a/2.jpg", "validation/a/3.jpg"])
    with pytest.raises(ValueError, match=r"both val/ and validation/ are the val split"):
        _folder(tmp_path / "both")


def test_each_reader_is_found_by_its_dataset_name(tmp_path):
    from ablation.data import read_index

    csv = _fer_csv(tmp_path / "fer2013.csv", GOOD_ROWS)
    raf = _rafdb(tmp_path / "basic", RAF_LINES, _raf_images(RAF_LINES))
    faces = _folders(tmp_path / "faces", FOLDER_FILES)
    assert read_index(DataSpec(dataset="fer2013", root=csv)).dataset == "fer2013"
    assert read_index(DataSpec(dataset="rafdb", root=raf)).dataset == "rafdb"
    assert read_index(DataSpec(dataset="folder", root=faces)).classes == ("happy", "neutral", "sad")
