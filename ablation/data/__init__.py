"""Datasets, built by name: each yields train/val/test splits of (image tensor, label) and its class names.

Two kinds: `synthetic` is generated straight into arrays; the others (`aihub`, `fer2013`, `rafdb`,
`folder`) are read from disk by a reader into an `Index` (records.py), then decoded, oriented,
cropped and resized once into a memory-mapped cache (pipeline.py) that every trial on the machine
shares.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from ablation.core.datasets import DATASETS, DatasetType
from ablation.data import aihub, fer2013, folder, rafdb
from ablation.data.records import EMOTIONS, SPLITS, DataError, Index, Skipped

if TYPE_CHECKING:
    from ablation.core import AugmentSpec, DataSpec

Progress = Callable[[int, int], None]


# Each dataset's reader of the data on disk, or its generator, by the name `core.datasets` describes it under.
READERS: dict[str, Callable[[DataSpec], Index]] = {
    "aihub": aihub.read, "fer2013": fer2013.read, "rafdb": rafdb.read, "folder": folder.read}
GENERATORS: dict[str, Callable[[DataSpec], Splits]] = {"synthetic": lambda spec: _synthetic(spec)}
if {*READERS, *GENERATORS} != set(DATASETS.names()) or any(DATASETS.get(n).on_disk for n in GENERATORS):
    raise TypeError("every dataset described in core.datasets needs a reader (on disk) or a generator")

Augment = Callable[[torch.Tensor], torch.Tensor]


def augmentation(spec: AugmentSpec, image_size: int) -> Augment | None:
    """The training split's random changes to a uint8 (3, H, W) image, or None. A flip alone (the
    default) is done here; the others are torchvision's transforms, imported only when a spec asks for
    one: importing torchvision costs every trial's worker 160 MB and 2 s."""
    if spec.crop == 1 and not spec.rotation and not spec.color_jitter:
        return _flip if spec.flip else None
    from torchvision.transforms import v2

    steps: list[v2.Transform] = []
    if spec.crop < 1:
        steps.append(v2.RandomResizedCrop(image_size, scale=(spec.crop, 1.0), antialias=True))
    if spec.rotation:
        steps.append(v2.RandomRotation(spec.rotation))
    if spec.flip:
        steps.append(v2.RandomHorizontalFlip())
    if spec.color_jitter:
        steps.append(v2.ColorJitter(brightness=spec.color_jitter, contrast=spec.color_jitter,
                                    saturation=spec.color_jitter))
    return v2.Compose(steps)


def _flip(image: torch.Tensor) -> torch.Tensor:
    # The draw torchvision's RandomHorizontalFlip makes, so a seed flips the images it flipped.
    return image.flip(-1) if torch.rand(1) < 0.5 else image


class ArrayDataset(Dataset):
    """uint8 images (N, H, W, 3), in memory or memory-mapped; floats are made per item, so a trial's
    memory does not grow with the dataset beyond the pages it touches."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, augment: Augment | None = None) -> None:
        self.images, self.labels = images, torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        # A copy: the cache is mapped read-only, and one image is cheap to copy.
        image = torch.from_numpy(np.array(self.images[index])).permute(2, 0, 1)
        if self.augment is not None:
            image = self.augment(image)
        # Centred around zero with a fixed scale, in torchvision's ToDtype and Normalize arithmetic:
        # per-dataset statistics would tie a trained model to one dataset's preprocessing for no gain.
        return image.to(torch.float32).mul_(1 / 255).sub_(0.5).div_(0.25), self.labels[index]


@dataclass(frozen=True)
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset
    classes: tuple[str, ...]
    skipped: tuple[Skipped, ...] = ()  # inputs the reader or the decoder could not use
    # {split: the images chosen for it that could not be decoded}, so an empty split can say why
    undecoded: dict[str, tuple[Skipped, ...]] = field(default_factory=dict)


def _synthetic(spec: DataSpec) -> Splits:
    from ablation.data import synthetic

    def split(name: str) -> ArrayDataset:
        arrays = synthetic.load(name, n_per_class=spec.per_class(name), image_size=spec.image_size, seed=spec.seed)
        augment = augmentation(spec.augment, spec.image_size) if name == "train" else None
        return ArrayDataset(arrays.images, arrays.labels, augment=augment)

    return Splits(train=split("train"), val=split("val"), test=split("test"), classes=synthetic.CLASSES)


def _indexed(spec: DataSpec, on_progress: Progress | None) -> Splits:
    from ablation.data.pipeline import materialize

    index = read_index(spec)
    chosen = {name: index.split(name, spec.per_class(name), spec.seed) for name in SPLITS}
    total, done = sum(map(len, chosen.values())), 0
    skipped = list(index.skipped)
    undecoded: dict[str, tuple[Skipped, ...]] = {}

    def split(name: str) -> ArrayDataset:
        nonlocal done

        def progress(i: int, _: int) -> None:
            if on_progress is not None:
                on_progress(done + i, total)

        cached = materialize(chosen[name], spec.image_size, on_progress=progress)
        done += len(chosen[name])
        skipped.extend(cached.skipped)
        undecoded[name] = tuple(cached.skipped)
        augment = augmentation(spec.augment, spec.image_size) if name == "train" else None
        return ArrayDataset(cached.images, cached.labels, augment=augment)

    train, val, test = split("train"), split("val"), split("test")
    return Splits(train=train, val=val, test=test, classes=index.classes, skipped=tuple(skipped),
                  undecoded=undecoded)


def read_index(spec: DataSpec) -> Index:
    """The index of a dataset on disk (no image decoded); DataError naming the root if it is not the
    dataset's layout."""
    read = READERS.get(spec.dataset)
    if read is None:
        raise DataError(f"the {spec.dataset} dataset is generated: it has nothing on disk to read")
    try:
        return read(spec)
    except DataError:
        raise
    except ValueError as err:  # readers say in a ValueError why a root is not their layout
        raise DataError(str(err)) from None


def classes_of(spec: DataSpec) -> tuple[str, ...]:
    """The class names a dataset spec yields; only a dataset named by its folders needs a look at the disk."""
    classes = DATASETS.get(spec.dataset).classes
    return read_index(spec).classes if classes is None else classes


def split_sizes(spec: DataSpec) -> dict[str, int]:
    """Images per split a data spec yields (for generated data, without generating it)."""
    kind = DATASETS.get(spec.dataset)
    if not kind.on_disk:
        return {split: spec.per_class(split) * len(kind.classes) for split in SPLITS}
    index = read_index(spec)
    return {split: len(index.split(split, spec.per_class(split), spec.seed)) for split in SPLITS}


def build_splits(spec: DataSpec, on_progress: Progress | None = None) -> Splits:
    """Load (generating, or decoding into the cache, on first use) the dataset a data spec names.

    `on_progress(done, total)` follows the decoding of a dataset on disk, image by image.
    """
    generate = GENERATORS.get(spec.dataset)
    return generate(spec) if generate else _indexed(spec, on_progress)


def check_trainable(spec: DataSpec, splits: Splits) -> None:
    """DataError naming the dataset and the split, unless a study can train on `splits`: images in
    every split (after skipping what could not be read or decoded), of at least two classes in train.

    Each of these fails a trial only after Ray has started, or only in its first epoch (an empty
    split divides by zero; a single training image is a batch of one, which BatchNorm refuses).
    """
    where = f"{spec.root}" if spec.root is not None else f"the {spec.dataset} dataset"
    sizes = {name: len(getattr(splits, name)) for name in SPLITS}
    if not any(sizes.values()):
        raise DataError(f"{where}: no usable images in train, val or test{_why(splits.skipped)}; expected "
                        f"images in each split")
    for name in SPLITS:
        if not sizes[name]:
            undecoded = splits.undecoded.get(name, ())
            why = (f": all {len(undecoded)} of its images were skipped{_why(undecoded, ' (', ')')}" if undecoded
                   else _why(splits.skipped, " (the dataset skipped ", ")"))
            raise DataError(f"{where}: the {name} split has no usable images{why}; expected images in each of "
                            f"{', '.join(SPLITS)}")
    labels, counts = np.unique(np.asarray(splits.train.labels), return_counts=True)
    if len(labels) < 2:
        only, n = splits.classes[int(labels[0])], int(counts[0])
        held = f"1 usable image ({only})" if n == 1 else f"{n} usable images, all of one class ({only})"
        raise DataError(f"{where}: the train split has {held}; training needs images of at least two classes")


def _why(skipped, before: str = " (", after: str = ")") -> str:
    """What was skipped, counted by reason: ' (3 not an image file, 1 ...)', or '' when nothing was."""
    if not skipped:
        return ""
    reasons = Counter(s.reason.split(":")[0] for s in skipped)
    return before + ", ".join(f"{n} {reason}" for reason, n in reasons.most_common()) + after


__all__ = ["DATASETS", "EMOTIONS", "GENERATORS", "READERS", "DatasetType", "ArrayDataset", "DataError", "Splits", "build_splits", "check_trainable", "classes_of",
           "read_index", "split_sizes"]
