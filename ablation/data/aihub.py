"""Reader of AI-HUB's "Korean emotion recognition composite images" (한국인 감정인식을 위한 복합 영상), as extracted.

Layout (the `_01` suffix of image folders varies: any folder starting `[원천]EMOIMG_<감정>_TRAIN` is read,
and images are found at any depth below it):

    root/Training/[원천]EMOIMG_<감정>_TRAIN_01/*.jpg
    root/Training/[라벨]EMOIMG_<감정>_TRAIN/img_emotion_training_data(<감정>).json
    root/Validation/[원천]EMOIMG_<감정>_VALID_01/*.jpg
    root/Validation/[라벨]EMOIMG_<감정>_VALID/img_emotion_validation_data(<감정>).json

Only folders are listed and JSON parsed; no image is opened (corrupt images, EXIF orientation and
boxes outside the image are dealt with when the cache decodes them).

Records. Each label JSON (every `*.json` in a `[라벨]` folder; UTF-8 with or without BOM, else CP949)
is a list of records, matched to the image files of the `[원천]` folders of the same part and
emotion word by file name. Folder, file and JSON names are compared in Unicode NFC (archives
unpacked on macOS have NFD names); `Item.source` is the path as it is on disk.
- Label (`spec.label_from`): `majority` takes the faceExp two or three of annot_A/B/C agree on,
  else faceExp_uploader; `uploader` always takes faceExp_uploader. The record's label decides the
  class, not its folder. 기쁨 happy, 분노 anger, 불안 unrest, 상처 wound, 슬픔 sad, 중립 neutral;
  당황 is dropped as in the paper (UNUSED_CLASS); any other word is UNKNOWN_LABEL.
- Box: annot_A's `boxes` (minX, minY, maxX, maxY), as floats, as given (not clipped: the image
  size is unknown until decoded). A missing, non-numeric or empty (max <= min) box is MALFORMED.
- Subject: the file name up to its first `_` (a hash per person).

Skips, each counted once (`Skipped.path` is an image path unless said otherwise):
- UNUSED_CLASS, UNKNOWN_LABEL, MALFORMED: one per record, at the image path the record names
  (its file exists or not: a skipped record still accounts for its file);
- MISSING_FILE: a record whose file is not there, at the path it was expected at
  (in the first `[원천]` folder of its emotion, or `[원천]EMOIMG_<감정>_<TAG>_01` when there is none);
- NO_RECORD: an image file no record names (a second file of the same name in another `[원천]`
  folder of the same emotion included);
- MALFORMED: a JSON file that does not decode or is not a list (path: the JSON file), and a record
  that is not an object with a `filename` or names a file an earlier record already named
  (path: `<json>:<record number>` or the image path).
Image files are .jpg, .jpeg and .png (any case). Other files, and hidden ones (`.DS_Store`,
macOS's `._name.jpg` resource forks), are ignored silently.

Splits. Training is `train`. Validation is split into `val` and `test` by subject, so no person
is in both: subjects are taken in the order of sha1(f"{seed}/{subject}") and each goes to the side
where it leaves the per-class counts of val and test closest (least sum over classes of the squared
difference; ties to the side with fewer images, then val), so each class splits about half and half.
Items are sorted by split (train, val, test), then source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dataclasses
import hashlib
import json
import math
import os
import re
import unicodedata
from collections import defaultdict
from pathlib import Path

from ablation.data.records import (EMOTIONS, MALFORMED, MISSING_FILE, NO_RECORD, UNKNOWN_LABEL, UNUSED_CLASS, Index, Item,
                      Skipped, as_bytes)

if TYPE_CHECKING:
    from ablation.core import DataSpec

# Korean label word -> class index, or None for a class the paper does not use.
LABELS: dict[str, int | None] = {"기쁨": 0, "분노": 1, "불안": 2, "상처": 3, "슬픔": 4, "중립": 5, "당황": None}
assert [EMOTIONS[i] for i in LABELS.values() if i is not None] == list(EMOTIONS)
# (part folder, the tag in its subfolders' names)
PARTS: tuple[tuple[str, str], ...] = (("Training", "TRAIN"), ("Validation", "VALID"))
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_ANNOTATORS = ("annot_A", "annot_B", "annot_C")
_BOX_KEYS = ("minX", "minY", "maxX", "maxY")
EXPECTED = ("expected Training/[원천]EMOIMG_<감정>_TRAIN_01/*.jpg with "
            "Training/[라벨]EMOIMG_<감정>_TRAIN/img_emotion_training_data(<감정>).json, and "
            "Validation/[원천]EMOIMG_<감정>_VALID_01/*.jpg with "
            "Validation/[라벨]EMOIMG_<감정>_VALID/img_emotion_validation_data(<감정>).json")


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


@dataclasses.dataclass
class _Emotion:
    """One emotion folder pair of one part: its image folders (on-disk paths) and label folders."""

    image_dirs: list[str] = dataclasses.field(default_factory=list)
    label_dirs: list[str] = dataclasses.field(default_factory=list)


def read(spec: DataSpec) -> Index:
    """The index of an AI-HUB root (see the module docstring); ValueError if the root is not this layout."""
    if spec.root is None:
        raise ValueError("the aihub dataset needs data.root: the folder holding Training and Validation")
    root = Path(spec.root)
    parts = _locate(root)
    items: list[Item] = []
    skipped: list[Skipped] = []
    for (part, tag), emotions in zip(PARTS, parts):
        split = "train" if part == "Training" else "validation"
        for word in sorted(emotions):
            items += _read_emotion(root / part, tag, word, emotions[word], split, spec.label_from, skipped)
    train = [item for item in items if item.split == "train"]
    items = train + _split_by_subject([item for item in items if item.split == "validation"], spec.seed)
    order = {"train": 0, "val": 1, "test": 2}
    items.sort(key=lambda item: (order[item.split], item.source))
    return Index(dataset="aihub", classes=EMOTIONS, items=items, skipped=skipped)


def _locate(root: Path) -> list[dict[str, _Emotion]]:
    """Per part, emotion word -> its folders; ValueError naming the root unless both parts have images."""
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; an AI-HUB root is the folder holding Training and Validation "
                         f"({EXPECTED})")
    top = {_nfc(entry.name): entry.path for entry in os.scandir(root) if entry.is_dir()}
    found = []
    for part, tag in PARTS:
        if part not in top:
            have = ", ".join(sorted(top)) or "no folders"
            raise ValueError(f"{root} is not an AI-HUB root: it has no {part} folder (it has {have}); {EXPECTED}")
        pattern = re.compile(rf"\[(원천|라벨)\]EMOIMG_(.+?)_{tag}")  # a prefix: _01, _02... follow
        emotions: dict[str, _Emotion] = defaultdict(_Emotion)
        for entry in sorted(os.scandir(top[part]), key=lambda e: _nfc(e.name)):
            match = pattern.match(_nfc(entry.name))
            if match and entry.is_dir():
                kind, word = match.groups()
                folders = emotions[word].image_dirs if kind == "원천" else emotions[word].label_dirs
                folders.append(entry.path)
        if not any(e.image_dirs for e in emotions.values()):
            raise ValueError(f"{root} is not an AI-HUB root: {part} has no [원천]EMOIMG_<감정>_{tag}_01 image folders; "
                             f"{EXPECTED}")
        found.append(dict(emotions))
    return found


def _read_emotion(part_dir: Path, tag: str, word: str, folders: _Emotion, split: str, label_from: str,
                  skipped: list[Skipped]) -> list[Item]:
    """The items of one emotion's folders of one part; what is not used goes to `skipped`."""
    files: dict[str, str] = {}  # NFC file name -> on-disk path (the first, in sorted folder order)
    folded: dict[str, str] = {}  # the same, by lower-cased name, for records whose extension's case differs
    for image_dir in folders.image_dirs:
        for path in _image_files(image_dir):
            name = _nfc(os.path.basename(path))
            if name in files:
                skipped.append(Skipped(path, f"{NO_RECORD}: another file named {name} is in {files[name]}"))
                continue
            files[name] = path
            folded.setdefault(name.lower(), path)
    default_dir = folders.image_dirs[0] if folders.image_dirs else str(part_dir / f"[원천]EMOIMG_{word}_{tag}_01")
    claimed: set[str] = set()
    items = []
    for label_dir in folders.label_dirs:
        for json_path in _json_files(label_dir):
            records = _load_records(json_path, skipped)
            for number, record in enumerate(records or ()):
                if not isinstance(record, dict) or not isinstance(record.get("filename"), str):
                    skipped.append(Skipped(f"{json_path}:{number}", f"{MALFORMED}: record {number} of {json_path} "
                                                                    f"is not an object with a filename"))
                    continue
                name = _nfc(record["filename"].replace("\\", "/").rsplit("/", 1)[-1].strip())
                path = files.get(name) or folded.get(name.lower())
                where = path or os.path.join(default_dir, name)
                if path is not None and path in claimed:
                    skipped.append(Skipped(where, f"{MALFORMED}: a second record for {name} in {json_path}"))
                    continue
                if path is not None:
                    claimed.add(path)
                item_or_reason = _item(record, where, split, label_from)
                if isinstance(item_or_reason, str):
                    skipped.append(Skipped(where, item_or_reason))
                elif path is None:
                    skipped.append(Skipped(where, MISSING_FILE))
                else:
                    items.append(item_or_reason)
    for path in files.values():
        if path not in claimed:
            skipped.append(Skipped(path, NO_RECORD))
    return items


def _image_files(folder: str) -> list[str]:
    """Image files at any depth below a folder, hidden files and folders left out, in NFC name order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted((d for d in dirnames if not d.startswith(".")), key=_nfc)
        found += [os.path.join(dirpath, f) for f in sorted(filenames, key=_nfc)
                  if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    return found


def _json_files(folder: str) -> list[str]:
    return [os.path.join(folder, f) for f in sorted(os.listdir(folder), key=_nfc)
            if not f.startswith(".") and f.lower().endswith(".json") and os.path.isfile(os.path.join(folder, f))]


def _load_records(json_path: str, skipped: list[Skipped]) -> list | None:
    """A label file's list of records (UTF-8, with or without BOM, else CP949), or None, skipped as MALFORMED."""
    try:
        with open(json_path, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("cp949")
        records = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        skipped.append(Skipped(json_path, f"{MALFORMED}: {json_path}: {error}"))
        return None
    if not isinstance(records, list):
        skipped.append(Skipped(json_path, f"{MALFORMED}: {json_path}: expected a list of records, "
                                          f"got {type(records).__name__}"))
        return None
    return records


def _word(value: object) -> str | None:
    return _nfc(value).strip() if isinstance(value, str) and value.strip() else None


def _label(record: dict, label_from: str) -> str | None:
    uploader = _word(record.get("faceExp_uploader"))
    if label_from == "uploader":
        return uploader
    said = [_word(a.get("faceExp")) for a in (record.get(k) for k in _ANNOTATORS) if isinstance(a, dict)]
    said = [w for w in said if w is not None]
    for word in said:
        if said.count(word) >= 2:
            return word
    return uploader


def _box(record: dict) -> tuple[float, float, float, float] | str:
    annotator = record.get("annot_A")
    boxes = annotator.get("boxes") if isinstance(annotator, dict) else None
    if not isinstance(boxes, dict):
        return "annot_A has no boxes"
    try:
        box = tuple(float(boxes[k]) for k in _BOX_KEYS)
    except (KeyError, TypeError, ValueError):
        return f"annot_A's boxes are not four numbers {'/'.join(_BOX_KEYS)}: {boxes}"
    if not all(math.isfinite(v) for v in box) or box[2] <= box[0] or box[3] <= box[1]:
        return f"annot_A's box is empty: {boxes}"
    return box  # type: ignore[return-value]


def _item(record: dict, path: str, split: str, label_from: str) -> Item | str:
    """The item a record makes, or the reason it is skipped."""
    word = _label(record, label_from)
    if word is None:
        majority = " and no annotators' majority" if label_from == "majority" else ""
        return f"{MALFORMED}: no faceExp_uploader{majority}"
    if word not in LABELS:
        return f"{UNKNOWN_LABEL}: {word}"
    label = LABELS[word]
    if label is None:
        return f"{UNUSED_CLASS}: {word}"
    box = _box(record)
    if isinstance(box, str):
        return f"{MALFORMED}: {box}"
    subject = _nfc(os.path.basename(path)).split("_", 1)[0]
    return Item(source=path, label=label, split=split, subject=subject, box=box)


def _split_by_subject(items: list[Item], seed: int) -> list[Item]:
    """Validation items into val and test, whole subjects at a time, each class about half and half."""
    by_subject: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_subject[item.subject].append(item)
    order = sorted(by_subject, key=lambda s: (hashlib.sha1(as_bytes(f"{seed}/{s}")).digest(), s))
    sides = {"val": [0] * len(EMOTIONS), "test": [0] * len(EMOTIONS)}
    out = []
    for subject in order:
        mine = [0] * len(EMOTIONS)
        for item in by_subject[subject]:
            mine[item.label] += 1

        def cost(side: str) -> tuple[int, int, int]:
            other = "test" if side == "val" else "val"
            gap = sum((a + m - b) ** 2 for a, m, b in zip(sides[side], mine, sides[other]))
            return gap, sum(sides[side]), 0 if side == "val" else 1

        side = min(("val", "test"), key=cost)
        sides[side] = [a + m for a, m in zip(sides[side], mine)]
        out += [dataclasses.replace(item, split=side) for item in by_subject[subject]]
    return out
