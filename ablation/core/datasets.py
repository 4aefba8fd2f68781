"""The datasets a study can ask for by name, described without reading or generating anything:
whether they are on disk, their classes, and how many images a split takes where the spec is silent.
Their readers and generators (`ablation.data`) register against these names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ablation.core.emotions import EMOTIONS
from ablation.core.registry import Registry

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetType:
    """A dataset as a study can ask for it by name."""

    on_disk: bool  # read from `data.root`; False: generated, with nothing on disk
    classes: tuple[str, ...] | None  # its class names, in label order; None: named by the folders on disk
    default_per_class: Mapping[str, int] = field(default_factory=dict)  # per split, where the spec leaves it open
    summary: str = ""


DATASETS: Registry[DatasetType] = Registry("dataset")
DATASETS.register("synthetic", DatasetType(False, EMOTIONS, {"train": 200, "val": 100, "test": 100},
                                           "generated faces, into ~/.cache/ablate on first use"))
DATASETS.register("aihub", DatasetType(True, EMOTIONS, summary="AI-HUB's Korean emotion photos"))
DATASETS.register("fer2013", DatasetType(True, EMOTIONS, summary="the FER2013 CSV"))
DATASETS.register("rafdb", DatasetType(True, EMOTIONS, summary="RAF-DB basic"))
DATASETS.register("folder", DatasetType(True, None, summary="root/<split>/<class>/<images>"))
