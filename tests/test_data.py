"""Datasets as the engine sees them: named in the spec, normalised tensors, the paper's classes."""

import torch

from ablation.data import DATASETS, build_splits
from ablation.spec import DATASETS as SPEC_DATASETS
from ablation.spec import DataSpec


def test_every_dataset_the_spec_accepts_is_registered():
    assert sorted(DATASETS) == sorted(SPEC_DATASETS)


def test_the_generated_dataset_builds_normalised_tensors_with_the_paper_classes():
    splits = build_splits(DataSpec(image_size=32, train_per_class=2, val_per_class=1, test_per_class=1))
    image, label = splits.val[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert -3 < image.mean() < 3 and label.dtype == torch.int64
    assert splits.classes == ("happy", "anger", "unrest", "wound", "sad", "neutral")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 6, 6)


def test_only_the_training_split_is_augmented():
    splits = build_splits(DataSpec(image_size=32, train_per_class=1, val_per_class=1, test_per_class=1))
    assert len({splits.val[0][0][..., 0].sum().item() for _ in range(20)}) == 1
    assert len({splits.train[0][0][..., 0].sum().item() for _ in range(40)}) == 2  # the image and its mirror
