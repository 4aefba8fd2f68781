"""Any dataset laid out as image folders: `root/<split>/<class>/*.jpg`.

Splits are `train` (required), `val` (also spelled `valid` or `validation`) and `test`, matched
case-insensitively; a split folder that is absent is an empty split. Classes are the union of the
class folder names across the splits, NFC-normalised (so a name written by macOS and by Linux is
one class) and sorted; labels index into that tuple, `Index.classes`, and are not mapped onto the
paper's six classes. Two names that differ only in case are refused (metric keys are lower case), as
is a name that cannot be part of a metric key (not UTF-8, or a character MLflow refuses such as '+'),
and a class whose folders hold no image is left out (skipped as EMPTY_CLASS). Images are files
ending .jpg, .jpeg, .png, .bmp or .webp (any case), found anywhere below their class folder. Other
files are skipped as NOT_AN_IMAGE, files lying directly in a split folder as NOT_IN_A_CLASS; hidden
files and folders (a leading dot) are ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import re
import unicodedata
from pathlib import Path

from ablation.data.records import SPLITS, Index, Item, Skipped, printable

if TYPE_CHECKING:
    from ablation.core import DataSpec

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
NOT_AN_IMAGE = "not an image file"
NOT_IN_A_CLASS = "file outside a class folder"
EMPTY_CLASS = "class folder without images, left out of the classes"
# What MLflow accepts in a metric's name (mlflow.utils.validation), which a class's F1 is logged under.
_METRIC_KEY = re.compile(r"[\w.\- :]+")


def split_folders(root: Path) -> dict[str, Path]:
    """{split: its folder} for the splits present; a ValueError unless `root` has a train folder."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: expected a folder of split folders (train/, val/, test/), each holding "
                         f"one folder of images per class")
    folders: dict[str, Path] = {}
    others = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        split = SPLIT_NAMES.get(entry.name.lower())
        if split is None:
            others.append(entry.name)
        elif split in folders:
            raise ValueError(f"{root}: both {folders[split].name}/ and {entry.name}/ are the {split} split; keep one")
        else:
            folders[split] = entry
    if "train" not in folders:
        found = f"; found {', '.join(others[:8])}{', ...' if len(others) > 8 else ''}" if others else ""
        raise ValueError(f"{root}: no train/ folder; expected root/<split>/<class>/<images> with splits train "
                         f"(required), val (or valid, validation) and test{found}")
    return folders


def _class_folders(split_folder: Path) -> dict[str, list[Path]]:
    """{class name (NFC): its folders} below one split folder; two spellings of one name are one class."""
    classes: dict[str, list[Path]] = {}
    for entry in sorted(split_folder.iterdir()):
        if not entry.name.startswith(".") and entry.is_dir():
            classes.setdefault(unicodedata.normalize("NFC", entry.name), []).append(entry)
    return classes


def classes(root: Path) -> tuple[str, ...]:
    """The class names of an image-folder dataset, sorted (its labels' order), listing folders only."""
    folders = split_folders(root)
    first: dict[str, Path] = {}  # each name's first folder, to name in an error
    for folder in (folders[split] for split in SPLITS if split in folders):
        for name, class_folders in _class_folders(folder).items():
            first.setdefault(name, class_folders[0])
    names = sorted(first)
    if not names:
        raise ValueError(f"{root}: no class folders in {', '.join(f.name + '/' for f in folders.values())}; "
                         f"expected one folder of images per class, e.g. {root}/train/happy/")
    for name in names:
        # Checked here, before Ray starts: MLflow would refuse the key only once a trial logs its metrics.
        if not _METRIC_KEY.fullmatch(name.lower()):
            folder = printable(str(first[name]))
            why = ("is not UTF-8" if printable(name) != name else
                   "holds a character MLflow refuses in a metric's name (letters, digits, spaces and _ - . : only)")
            raise ValueError(f"{printable(str(root))}: the name of class folder {folder}/ {why}, and a class's name "
                             f"is part of its metrics' names (test_f1_<class>); rename the folder")
    lowered: dict[str, str] = {}
    for name in names:
        if (other := lowered.setdefault(name.lower(), name)) != name:
            raise ValueError(f"{root}: class folders {other}/ and {name}/ differ only in case, and a run's metrics "
                             f"name a class in lower case (test_f1_{name.lower()}); rename or merge one of them")
    return tuple(names)


def read(spec: DataSpec) -> Index:
    if spec.root is None:
        raise ValueError("dataset folder needs data.root: a folder holding train/ (and val/, test/) class folders")
    root = Path(spec.root)
    folders = split_folders(root)
    names = classes(root)
    images: list[tuple[str, str, str]] = []  # (class, path, split)
    skipped: list[Skipped] = []
    for split, split_folder in sorted(folders.items(), key=lambda pair: SPLITS.index(pair[0])):
        for entry in sorted(split_folder.iterdir()):
            if not entry.name.startswith(".") and not entry.is_dir():
                skipped.append(Skipped(str(entry), NOT_IN_A_CLASS))
        for name, class_folders in _class_folders(split_folder).items():
            for class_folder in class_folders:
                for path in _files(class_folder):
                    if path.name.lower().endswith(IMAGE_EXTENSIONS):
                        images.append((name, str(path), split))
                    else:
                        skipped.append(Skipped(str(path), NOT_AN_IMAGE))
    # A class folder with no image in any split would be an output class no image can teach or test.
    present = {name for name, _, _ in images}
    kept = tuple(name for name in names if name in present)
    skipped += [Skipped(str(folder / name), EMPTY_CLASS) for name in names if name not in kept
                for folder in folders.values() if name in _class_folders(folder)]
    items = [Item(source=path, label=kept.index(name), split=split) for name, path, split in images]
    return Index(dataset="folder", classes=kept, items=items, skipped=skipped)


def _files(folder: Path) -> list[Path]:
    """Every file below `folder`, hidden ones and hidden folders left out, in a stable order."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(parent) / f for f in sorted(files) if not f.startswith(".")]
    return found
