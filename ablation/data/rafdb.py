"""RAF-DB basic (Li et al., 2017): 15,339 aligned 100x100 colour faces with seven basic-emotion labels.

Layout, as the dataset is distributed (`data.root` is the `basic` folder; its parent is accepted too):

    root/EmoLabel/list_patition_label.txt   (sic: "patition") lines `train_00001.jpg 5`, `test_0001.jpg 1`
    root/Image/aligned/train_00001_aligned.jpg, ...

Labels are 1-based: 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness, 6 Anger, 7 Neutral. They
are mapped onto the paper's six classes by the table FER2013 uses (`fer2013.DEFAULT_MAP`: Surprise
dropped, Disgust -> wound as a weak proxy, Fear -> unrest); `data.label_map` overrides its entries,
keyed by the same lower-case names (angry, disgust, fear, happy, sad, surprise, neutral).

`train_*` images form the train split and `test_*` the test split. RAF-DB has no validation split,
so one is carved from train: within each of the seven source labels, the 10% of train label lines
(rounded half up) whose sha1(f"{seed}/{name}") is smallest become val. The choice is
stratified, depends only on the label file and `data.seed` (not on `label_map`, nor on which image
files are present), and a different seed draws a different val set.

Skipped, by reason: a label line whose image is missing (MISSING_FILE), an aligned image with no
label line (NO_RECORD), a line that does not parse (MALFORMED, with its line number), a label
outside 1-7 (UNKNOWN_LABEL), a label mapped to nothing (UNUSED_CLASS). An image named on a line that
is skipped counts once, as that line, not again as NO_RECORD.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import hashlib
import os
import re
from collections import defaultdict
from pathlib import Path

from ablation.data.fer2013 import label_mapping
from ablation.data.records import (EMOTIONS, MALFORMED, MISSING_FILE, NO_RECORD, UNKNOWN_LABEL, UNUSED_CLASS, Index, Item,
                                   Skipped, as_bytes)

if TYPE_CHECKING:
    from ablation.core import DataSpec

LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
IMAGE_DIR = Path("Image") / "aligned"
# RAF-DB's labels 1-7, by the lower-case names of fer2013.DEFAULT_MAP.
RAF_LABELS: tuple[str, ...] = ("surprise", "fear", "disgust", "happy", "sad", "angry", "neutral")
VAL_FRACTION = 0.1
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_NAME = re.compile(r"(train|test)_\d+\.jpg")


def find_root(root: Path) -> Path:
    """The RAF-DB basic folder: `root` itself, or `root/basic` when given the folder above it."""
    for candidate in (root, root / "basic"):
        if (candidate / LABEL_FILE).is_file() and (candidate / IMAGE_DIR).is_dir():
            return candidate
    raise ValueError(
        f"{root}: not RAF-DB basic; expected {LABEL_FILE.as_posix()} (label lines like 'train_00001.jpg 5') "
        f"and {IMAGE_DIR.as_posix()}/ (images like train_00001_aligned.jpg) in this folder"
    )


def read(spec: DataSpec) -> Index:
    if spec.root is None:
        raise ValueError("dataset rafdb needs data.root: the RAF-DB basic folder (holding EmoLabel/ and Image/)")
    mapping = label_mapping(spec.label_map)
    root = find_root(Path(spec.root))
    label_file, image_dir = root / LABEL_FILE, root / IMAGE_DIR
    skipped: list[Skipped] = []

    # name -> (source label name, split), in the label file's order
    records: dict[str, tuple[str, str]] = {}
    first_line: dict[str, int] = {}
    mentioned: set[str] = set()  # names on any line, parsed or not: their images are not NO_RECORD
    try:
        text = label_file.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as err:
        raise ValueError(f"{label_file}: cannot read the label file ({err.strerror or err})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{label_file}:{number}"
        fields = line.split()
        mentioned.add(fields[0])
        if len(fields) != 2:
            skipped.append(Skipped(where, f"{MALFORMED}: expected '<name>.jpg <label>', got {line.strip()[:60]!r}"))
            continue
        name, code = fields
        if not _NAME.fullmatch(name):
            skipped.append(Skipped(where, f"{MALFORMED}: {name[:60]!r} is not a name like train_00001.jpg "
                                          f"or test_0001.jpg"))
            continue
        if not (code.isascii() and code.isdigit()):
            skipped.append(Skipped(where, f"{MALFORMED}: label {code[:20]!r} is not an integer"))
            continue
        if name in records:
            skipped.append(Skipped(where, f"{MALFORMED}: {name} is labelled again (first on line {first_line[name]})"))
            continue
        if not 1 <= int(code) <= len(RAF_LABELS):
            skipped.append(Skipped(where, f"{UNKNOWN_LABEL}: {code} (expected 1-7)"))
            continue
        records[name] = (RAF_LABELS[int(code) - 1], "train" if name.startswith("train_") else "test")
        first_line[name] = number

    val = _val_names(records, spec.seed)
    try:
        present = {entry.name for entry in os.scandir(image_dir) if not entry.name.startswith(".") and entry.is_file()}
    except OSError as err:
        raise ValueError(f"{image_dir}: cannot list the images ({err.strerror or err})") from None

    items: list[Item] = []
    for name, (source_label, split) in records.items():
        image = f"{name.removesuffix('.jpg')}_aligned.jpg"
        path = image_dir / image
        if image not in present:
            skipped.append(Skipped(str(path), f"{MISSING_FILE}: {name} (line {first_line[name]})"))
            continue
        present.discard(image)
        label = mapping[source_label]
        if label is None:
            skipped.append(Skipped(str(path), f"{UNUSED_CLASS}: {source_label}"))
            continue
        items.append(Item(source=str(path), label=label, split="val" if name in val else split))
    for image in sorted(present):
        if image.lower().endswith(IMAGE_EXTENSIONS) and image.replace("_aligned.", ".", 1) not in mentioned:
            skipped.append(Skipped(str(image_dir / image), NO_RECORD))
    return Index(dataset="rafdb", classes=EMOTIONS, items=items, skipped=skipped)


def _val_names(records: dict[str, tuple[str, str]], seed: int) -> set[str]:
    """The train names carved off as val: per source label, the VAL_FRACTION with the smallest seeded hash."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for name, (source_label, split) in records.items():
        if split == "train":
            by_label[source_label].append(name)
    val: set[str] = set()
    for names in by_label.values():
        names.sort(key=lambda name: hashlib.sha1(as_bytes(f"{seed}/{name}")).digest())
        val.update(names[:int(len(names) * VAL_FRACTION + 0.5)])  # rounded half up
    return val
