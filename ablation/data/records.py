"""What a dataset reader produces: an index of images (no pixels decoded) and what it skipped.

Every reader (AI-HUB, FER2013, RAF-DB, image folders) turns a dataset as it lies on disk into an
`Index`: one `Item` per usable image with its split, label and, where known, subject and face box,
plus one `Skipped` per file or row it could not use, with the reason. Reading an index must not
decode images (so `ablate data summary` runs in seconds); images are decoded once, into the
preprocessed cache (`pipeline.py`), where a corrupt one is skipped and counted in turn.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ablation.core.datasets import SPLITS  # noqa: F401  (re-exported: every reader fills these)
from ablation.core.emotions import EMOTIONS  # noqa: F401  (re-exported: readers map their datasets' labels onto these)

# Why an input was not used; readers use these strings so summaries count them together.
CORRUPT = "corrupt or truncated image"
MISSING_FILE = "record without its image file"
NO_RECORD = "image file without a label record"
UNUSED_CLASS = "class not used"  # e.g. AI-HUB's 당황, FER2013/RAF-DB's Surprise
MALFORMED = "malformed record"  # a CSV row or label line that does not parse; the reason names the line
UNKNOWN_LABEL = "unknown label"


def as_bytes(text: str) -> bytes:
    """`text` as UTF-8, for hashing a file's name, whatever its bytes. A name that is not UTF-8 reaches
    Python with its odd bytes as lone surrogates (surrogateescape), which `str.encode()` refuses;
    "surrogatepass" encodes them too, and any other text exactly as `encode()` does, so an order or a
    digest of UTF-8 names does not change."""
    return text.encode("utf-8", "surrogatepass")


def printable(text: str) -> str:
    """`text` as it can be printed and logged: a file name that is not UTF-8 with its odd bytes written
    as escapes (`caf\\xe9.jpg`); a console, MLflow and JSON written as UTF-8 refuse its lone surrogates."""
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the name's own bytes
    except UnicodeEncodeError:  # a surrogate no file name decodes to: from a label file, say
        return text.encode("utf-8", "backslashreplace").decode()
    return raw.decode("utf-8", "backslashreplace")


class DataError(ValueError):
    """A dataset a study cannot train on (no usable images, an empty split, one class); the message
    names the root or split and what was expected. Raised before Ray starts or any run exists."""


@dataclass(frozen=True)
class Item:
    """One usable image. `source` is its file's path, or `<csv path>:<line>` for a pixel row."""

    source: str
    label: int  # index into the index's classes
    split: str  # one of SPLITS
    subject: str | None = None  # the person, where the dataset says (AI-HUB: the filename's leading hash)
    box: tuple[float, float, float, float] | None = None  # face crop (min_x, min_y, max_x, max_y), oriented pixels
    pixels: np.ndarray | None = field(default=None, compare=False, repr=False)  # for datasets stored as pixel rows


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def describe_skipped(skipped: Sequence[Skipped], *, listed: int = 3) -> list[str]:
    """What was skipped, in lines a person reads at any scale: per reason its count (most first), then
    its first `listed` files, each with what the reason says of it, and how many more there are. A class
    left out on purpose (UNUSED_CLASS: AI-HUB's 당황 alone is thousands of photos) is counted per class,
    not listed, after the rest. Lines are plain text, indented; the caller says where the full list is."""
    groups: dict[str, list[Skipped]] = defaultdict(list)
    for s in skipped:
        kind = s.reason.split(":")[0]
        groups[s.reason if kind == UNUSED_CLASS else kind].append(s)
    lines = []
    for reason, members in sorted(groups.items(), key=lambda g: (g[0].startswith(UNUSED_CLASS), -len(g[1]))):
        if reason.startswith(UNUSED_CLASS):
            lines.append(f"  {len(members):,} {reason} (left out on purpose: counted, not listed)")
            continue
        lines.append(f"  {len(members):,} {reason}:")
        for s in members[:listed]:
            # The detail after the reason, without the path when it repeats it (a label file that does not parse).
            detail = s.reason[len(reason):].lstrip(": ").removeprefix(f"{s.path}: ")
            lines.append(f"    {printable(s.path)}" + (f" ({printable(detail)})" if detail else ""))
        if len(members) > listed:
            lines.append(f"    ... and {len(members) - listed:,} more")
    return lines


@dataclass
class Index:
    dataset: str
    classes: tuple[str, ...]
    items: list[Item]
    skipped: list[Skipped] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {class: images}}, every split and class present (zeros included)."""
        counts = {split: dict.fromkeys(self.classes, 0) for split in SPLITS}
        for item in self.items:
            counts[item.split][self.classes[item.label]] += 1
        return counts

    def subjects(self) -> dict[str, int] | None:
        """Distinct subjects per split, or None when the dataset does not record them."""
        if not any(item.subject for item in self.items):
            return None
        people: dict[str, set[str]] = defaultdict(set)
        for item in self.items:
            if item.subject:
                people[item.split].add(item.subject)
        return {split: len(people[split]) for split in SPLITS}

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(s.reason.split(":")[0] for s in self.skipped))

    def split(self, name: str, per_class: int | None, seed: int) -> list[Item]:
        """The items of one split, at most `per_class` of each class, chosen deterministically.

        The choice depends on the seed and each item's source name only, so it does not change when
        other files are added or removed, and a larger `per_class` keeps every item of a smaller one.
        """
        chosen = []
        for label in range(len(self.classes)):
            members = [item for item in self.items if item.split == name and item.label == label]
            members.sort(key=lambda item: hashlib.sha1(as_bytes(f"{seed}/{item.source}")).digest())
            chosen += members if per_class is None else members[:per_class]
        return chosen
