"""Datasets, built by name: each yields train/val/test splits of (image tensor, label) and its class names."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..registry import Registry
from ..spec import DataSpec

DATASETS: Registry = Registry("dataset")

# Images are centred around zero with a fixed scale; per-dataset statistics would tie a trained
# model to one dataset's preprocessing for no gain at these sizes.
_NORMALIZE = v2.Normalize(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])


class ArrayDataset(Dataset):
    """Images held in memory as uint8 (N, 3, H, W); floats are made per item to keep memory at 1 byte/pixel."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, augment: bool) -> None:
        steps = [v2.ToDtype(torch.float32, scale=True), _NORMALIZE]
        if augment:
            steps.insert(0, v2.RandomHorizontalFlip())
        self.images, self.labels, self.transform = images, labels, v2.Compose(steps)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[index]), self.labels[index]


@dataclass(frozen=True)
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset
    classes: tuple[str, ...]


@DATASETS.register("synthetic")
def _synthetic(spec: DataSpec) -> Splits:
    from . import synthetic

    def split(name: str, n_per_class: int) -> ArrayDataset:
        arrays = synthetic.load(name, n_per_class=n_per_class, image_size=spec.image_size, seed=spec.seed)
        images = torch.from_numpy(arrays.images).permute(0, 3, 1, 2).contiguous()
        return ArrayDataset(images, torch.from_numpy(arrays.labels), augment=name == "train")

    return Splits(
        train=split("train", spec.train_per_class),
        val=split("val", spec.val_per_class),
        test=split("test", spec.test_per_class),
        classes=synthetic.CLASSES,
    )


def classes_of(spec: DataSpec) -> tuple[str, ...]:
    """The class names a dataset spec yields, without loading any image."""
    from . import synthetic

    return {"synthetic": synthetic.CLASSES}[spec.dataset]


def build_splits(spec: DataSpec) -> Splits:
    """Load (generating or indexing on first use) the dataset a data spec names."""
    return DATASETS.get(spec.dataset)(spec)
