"""FER2013 (Goodfellow et al., 2013): 35,887 grey 48x48 faces stored as pixel rows of one CSV.

`data.root` is the CSV itself, or a folder holding `fer2013.csv` (Kaggle's original file) or
`icml_face_data.csv` (the same rows, columns in another order). The header names the columns
`emotion`, `pixels` and `Usage`, in any order:

- emotion: 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral;
- pixels: 2304 space-separated integers 0-255, a 48x48 grey image row by row;
- Usage: Training -> train, PublicTest -> val, PrivateTest -> test.

Each usable row becomes an `Item` whose `pixels` is the decoded uint8 (48, 48) array and whose
`source` is `<csv path>:<line>` (1-based, the header is line 1). A row that does not parse is
skipped as MALFORMED with what is wrong, an emotion outside 0-6 as UNKNOWN_LABEL, and a row of a
class mapped to nothing (Surprise, by default) as UNUSED_CLASS.

Label mapping onto the paper's six classes (`DEFAULT_MAP`, shared with RAF-DB, whose labels are
the same seven basic emotions): Angry -> anger, Happy -> happy, Sad -> sad, Neutral -> neutral,
Fear -> unrest (anxiety), Disgust -> wound (hurt) and Surprise dropped. Disgust -> wound is a weak
proxy: the paper's "hurt" is closest to sadness or pain, and neither dataset has such a class;
disgust is the one negative class left over, and FER2013 has only ~550 disgust faces. Give
`data.label_map` (keys: the lower-case names below) to change any entry, e.g. `{disgust: null}`
drops it, `{surprise: happy}` keeps Surprise as happy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import csv
import sys
import warnings
from pathlib import Path

import numpy as np

from ablation.data.records import EMOTIONS, MALFORMED, UNKNOWN_LABEL, UNUSED_CLASS, Index, Item, Skipped

if TYPE_CHECKING:
    from ablation.core import DataSpec

# The source classes of FER2013 and RAF-DB, by their lower-case names -> one of EMOTIONS, or None to drop.
DEFAULT_MAP: dict[str, str | None] = {
    "angry": "anger",
    "disgust": "wound",  # a weak proxy: see the module docstring
    "fear": "unrest",
    "happy": "happy",
    "sad": "sad",
    "surprise": None,
    "neutral": "neutral",
}

# FER2013's emotion codes, 0-6.
FER_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FILENAMES = ("fer2013.csv", "icml_face_data.csv")
SIDE = 48
COLUMNS = ("emotion", "pixels", "usage")


def label_mapping(label_map: dict[str, str | None] | None) -> dict[str, int | None]:
    """Source class name -> label (index into EMOTIONS) or None (dropped): DEFAULT_MAP with `label_map`'s entries.

    An entry for a name that is not a source class is a ValueError naming it and the valid names.
    """
    mapping = dict(DEFAULT_MAP)
    for source, target in (label_map or {}).items():
        name = str(source).strip().lower()
        if name not in DEFAULT_MAP:
            raise ValueError(f"data.label_map: {source!r} is not a source class; "
                             f"expected one of {', '.join(DEFAULT_MAP)}")
        if target is not None and target not in EMOTIONS:
            raise ValueError(f"data.label_map: {source!r} -> {target!r}: expected one of "
                             f"{', '.join(EMOTIONS)}, or null to drop it")
        mapping[name] = target
    return {source: None if target is None else EMOTIONS.index(target) for source, target in mapping.items()}


def find_csv(root: Path) -> Path:
    """The CSV `root` names: the file itself, or fer2013.csv / icml_face_data.csv in the folder."""
    if root.is_file():
        return root
    if root.is_dir():
        for name in FILENAMES:
            if (root / name).is_file():
                return root / name
        raise ValueError(f"{root}: no FER2013 CSV in this folder; expected {' or '.join(FILENAMES)} "
                         f"(columns emotion, pixels, Usage), or give data.root as the CSV file itself")
    raise ValueError(f"{root}: expected the FER2013 CSV file, or a folder holding {' or '.join(FILENAMES)}")


def read(spec: DataSpec) -> Index:
    if spec.root is None:
        raise ValueError("dataset fer2013 needs data.root: the FER2013 CSV, or the folder holding fer2013.csv")
    mapping = label_mapping(spec.label_map)
    path = find_csv(Path(spec.root))
    items: list[Item] = []
    skipped: list[Skipped] = []
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a pixel field is ~9 kB; a broken file may hold longer ones
    try:
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as file:
            rows = csv.reader(file)
            header = next(rows, None)
            columns = _columns(path, header)
            width = len(header)
            with warnings.catch_warnings():
                # Older NumPy only warns when a pixel field has a token that is not a number.
                warnings.simplefilter("error", DeprecationWarning)
                for row in rows:
                    where = f"{path}:{rows.line_num}"
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue  # a blank line
                    outcome = _parse(row, width, columns, mapping)
                    if isinstance(outcome, str):
                        skipped.append(Skipped(where, outcome))
                    else:
                        label, split, pixels = outcome
                        items.append(Item(source=where, label=label, split=split, pixels=pixels))
    except OSError as err:
        raise ValueError(f"{path}: cannot read the FER2013 CSV ({err.strerror or err})") from None
    except csv.Error as err:
        raise ValueError(f"{path}: not a readable CSV ({err})") from None
    return Index(dataset="fer2013", classes=EMOTIONS, items=items, skipped=skipped)


def _columns(path: Path, header: list[str] | None) -> dict[str, int]:
    names = [name.strip().lower() for name in header or []]
    missing = [column for column in COLUMNS if column not in names]
    if missing:
        found = ", ".join(repr(name) for name in (header or [])[:6]) or "nothing"
        raise ValueError(f"{path}: not a FER2013 CSV; expected a header row with columns emotion, pixels, Usage "
                         f"(in any order), found {found[:200]}")
    return {column: names.index(column) for column in COLUMNS}


def _parse(row: list[str], width: int, columns: dict[str, int],
           mapping: dict[str, int | None]) -> tuple[int, str, np.ndarray] | str:
    """A row's (label, split, pixels), or the reason it is skipped."""
    if len(row) != width:
        return f"{MALFORMED}: expected {width} fields, got {len(row)}"
    emotion, usage = row[columns["emotion"]].strip(), row[columns["usage"]].strip()
    try:
        code = int(emotion)
    except ValueError:
        return f"{MALFORMED}: emotion {emotion[:20]!r} is not an integer"
    split = USAGE.get(usage)
    if split is None:
        return f"{MALFORMED}: Usage {usage[:20]!r} is not one of {', '.join(USAGE)}"
    try:
        values = np.fromstring(row[columns["pixels"]], dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        return f"{MALFORMED}: pixels are not all integers"
    if values.size != SIDE * SIDE:
        return f"{MALFORMED}: expected {SIDE * SIDE} pixel values ({SIDE}x{SIDE}), got {values.size}"
    if values.min() < 0 or values.max() > 255:
        return f"{MALFORMED}: pixel values outside 0-255"
    if not 0 <= code < len(FER_LABELS):
        return f"{UNKNOWN_LABEL}: emotion {code} (expected 0-6)"
    label = mapping[FER_LABELS[code]]
    if label is None:
        return f"{UNUSED_CLASS}: {FER_LABELS[code]}"
    return label, split, values.astype(np.uint8).reshape(SIDE, SIDE)
