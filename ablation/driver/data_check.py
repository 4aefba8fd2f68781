"""Data changed under a study: a re-run or `ablate resume` over image files that changed since the
study's trials trained on them is refused before Ray starts. Continued, the new trials would train on
other classes or images than the finished ones, and one table would mix them (or a checkpoint of the
old class count would fail to load, attempt after attempt).

The parent run records, per distinct data settings, the digest of the data its trials trained on
(`Tag.DATA_DIGESTS`); `data.digest` says what the digest covers. Generated data is left out: its digest
follows ablate's version, and an upgrade is not a change of the user's data.
"""

from __future__ import annotations

import json

from ablation import tracking
from ablation.data.digest import DataDigest


class DataChanged(ValueError):
    """The study's data on disk is not what its trials trained on."""


def check_data_unchanged(study: tracking.StudyRecord | None, name: str,
                         current: dict[str, DataDigest]) -> dict[str, str]:
    """Raise `DataChanged`, naming what changed, if data on disk (`current`, by `data.digest.data_key`) differs
    from what the study's trials trained on, as its parent run `study` (None: a new study) records; returns the
    digests recorded so far (data settings' key -> digest). It only reads."""
    if study is None:
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
