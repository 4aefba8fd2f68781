"""Data changed under a study: a re-run or `ablate resume` over image files that changed since the
study's trials trained on them is refused before Ray starts. Continued, the new trials would train on
other classes or images than the finished ones, and one table would mix them (or a checkpoint of the
old class count would fail to load, attempt after attempt).

The parent run records, per distinct data settings, the digest of the data its trials trained on
(`Tag.DATA_DIGESTS`); `data.digest` says what the digest covers. Generated data is left out: its digest
follows ablate's version, and an upgrade is not a change of the user's data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from ablation import tracking
from ablation.core import DataSpec
from ablation.data.digest import DataDigest, data_digest


class DataChanged(ValueError):
    """The study's data on disk is not what its trials trained on."""


def data_key(data: DataSpec) -> str:
    """What names a study's data settings in its record (the dataset, its root, sizes and seed)."""
    return hashlib.sha256(data.model_dump_json().encode()).hexdigest()[:12]


def current_data(specs: Iterable[DataSpec]) -> dict[str, DataDigest]:
    """The digest of each distinct data settings among `specs`, by `data_key`."""
    distinct = {data_key(spec): spec for spec in specs}
    return {key: data_digest(spec) for key, spec in distinct.items()}


def check_data_unchanged(uri: str, name: str, current: dict[str, DataDigest]) -> dict[str, str]:
    """Raise `DataChanged`, naming what changed, if data on disk differs from what the study's trials
    trained on; returns the digests recorded so far (data settings' key -> digest). It only reads."""
    try:
        study = tracking.find_study(uri, name)
    except (tracking.StoreNotFound, tracking.StudyNotFound):
        return {}
    try:
        recorded = json.loads(study.tags.get(tracking.Tag.DATA_DIGESTS) or "{}")
    except ValueError:
        recorded = {}
    changed = [(recorded[key], now) for key, now in current.items()
               if now.source_type == "local" and recorded.get(key, now.digest) != now.digest]
    if changed:
        profiles = tracking.dataset_profiles(study)
        what = "; ".join(_difference(now, profiles.get(old, (now.name, {}))[1]) for old, now in changed)
        raise DataChanged(f"the data of study {name!r} changed since its trials trained on it: {what}. Its "
                          "finished trials would be mixed with trials on other data. Put the data back as it "
                          "was, or start a new study on the changed data: ablate run SPEC --set "
                          f"name={name}-2")
    return recorded


def _difference(now: DataDigest, before: dict) -> str:
    """What changed in one dataset, from the profile its digest was logged with (classes, then images)."""
    parts = []
    old_classes, new_classes = before.get("classes"), now.profile["classes"]
    if old_classes is not None and old_classes != new_classes:
        added = [c for c in new_classes if c not in old_classes]
        removed = [c for c in old_classes if c not in new_classes]
        parts += [f"class{'es' * (len(added) > 1)} {', '.join(added)} added" if added else "",
                  f"class{'es' * (len(removed) > 1)} {', '.join(removed)} removed" if removed else ""]
    parts += [f"{split} {before[split]} -> {now.profile[split]} images" for split in ("train", "val", "test")
              if split in before and before[split] != now.profile[split]]
    said = ", ".join(p for p in parts if p) or "the same counts, other files"
    return f"{now.name} at {now.source.get('uri', '')} ({said})"
