"""What identifies a study's data, as MLflow records a dataset input (`tracking.study_run.dataset_input`):
its name, a digest that differs whenever the images or their labels could, where it came from, and a
profile of the images per split and the class names.

Generated data is digested by what generates it (its settings, and ablate's version); data on disk by
its index: each chosen file's split, class and path under the root (its content is not read, so an
image replaced in place keeps the digest).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablation.data import DATASETS, read_index
from ablation.data.records import SPLITS, as_bytes

if TYPE_CHECKING:
    from ablation.core import DataSpec


@dataclass(frozen=True)
class DataDigest:
    name: str  # the dataset's, and for data on disk its root folder's: "folder:faces"
    digest: str  # 12 hex digits
    profile: dict[str, Any]  # images per split, then "image_size" and "classes"
    source_type: str  # "code": generated, `source` its generator's settings; "local": `source` {"uri": root}
    source: dict[str, str]


def _ablate_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ablate")
    except PackageNotFoundError:
        return ""


def data_digest(data: DataSpec) -> DataDigest:
    """The digest, source and profile of the data `data` describes (for data on disk, its index is read)."""
    kind = DATASETS.get(data.dataset)
    if not kind.on_disk:
        generating = {"dataset": data.dataset, "image_size": data.image_size, "seed": data.seed,
                      **{f"{split}_per_class": data.per_class(split) for split in SPLITS},
                      "ablate": _ablate_version()}
        sizes = {split: data.per_class(split) * len(kind.classes) for split in SPLITS}
        classes, lines = kind.classes, [json.dumps(generating, sort_keys=True)]
        source_type = "code"
        source = {"generator": f"ablation.data.{data.dataset}", **{k: str(v) for k, v in generating.items()}}
    else:
        index = read_index(data)
        chosen = {split: index.split(split, data.per_class(split), data.seed) for split in SPLITS}
        sizes, classes = {split: len(items) for split, items in chosen.items()}, index.classes
        roots = (str(data.root), str(Path(data.root).resolve()))
        lines = sorted(f"{item.split}\t{classes[item.label]}\t{_under(item.source, roots)}"
                       for items in chosen.values() for item in items)
        source_type, source = "local", {"uri": roots[1]}
    digest = hashlib.sha256(as_bytes("\n".join(lines))).hexdigest()[:12]
    profile = sizes | {"image_size": data.image_size, "classes": list(classes)}
    name = data.dataset if data.root is None else f"{data.dataset}:{Path(data.root).name}"
    return DataDigest(name, digest, profile, source_type, source)


def data_key(data: DataSpec) -> str:
    """What names a study's data settings in its record (the dataset, its root, sizes and seed)."""
    return hashlib.sha256(data.model_dump_json().encode()).hexdigest()[:12]


def digests(specs: Iterable[DataSpec]) -> dict[str, DataDigest]:
    """One `data_digest` per distinct data spec of `specs` (a study's trials mostly share one), by `data_key`."""
    distinct = {data_key(spec): spec for spec in specs}
    return {key: data_digest(spec) for key, spec in distinct.items()}


def _under(source: str, roots: tuple[str, ...]) -> str:
    """A file's path under the dataset's root (as given, or resolved), so the same data elsewhere has
    the same digest."""
    for root in roots:
        if source.startswith(root.rstrip(os.sep) + os.sep):
            return source[len(root.rstrip(os.sep)) + 1:]
    return source
