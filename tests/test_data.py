"""Datasets as the engine sees them: named in the spec, normalised tensors, the paper's classes."""

from typing import get_args

import torch

from ablation.data import DATASETS, GENERATORS, READERS, build_splits
from ablation.core import DataSpec


def test_every_dataset_the_spec_accepts_is_generated_or_has_a_reader():
    accepted = get_args(DataSpec.model_fields["dataset"].annotation)
    assert sorted(accepted) == sorted(DATASETS)
    assert sorted(READERS) + sorted(GENERATORS) == sorted(n for n in accepted if DATASETS.get(n).on_disk) + \
        sorted(n for n in accepted if not DATASETS.get(n).on_disk)


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


def test_augmentations_are_configured_in_the_spec_and_touch_only_training():
    from ablation.core import AugmentSpec

    augment = AugmentSpec(flip=False, rotation=15, crop=0.7, color_jitter=0.3)
    splits = build_splits(DataSpec(image_size=32, train_per_class=1, val_per_class=1, test_per_class=1,
                                   augment=augment))
    assert len({splits.train[0][0].sum().item() for _ in range(10)}) == 10  # every draw differs
    assert len({splits.val[0][0].sum().item() for _ in range(5)}) == 1
    plain = build_splits(DataSpec(image_size=32, train_per_class=1, val_per_class=1, test_per_class=1,
                                  augment=AugmentSpec(flip=False)))
    assert len({plain.train[0][0].sum().item() for _ in range(5)}) == 1


def test_a_dataset_on_disk_needs_a_root_that_exists(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="dataset aihub needs data.root"):
        DataSpec(dataset="aihub")
    with pytest.raises(ValueError, match="no such file or folder"):
        DataSpec(dataset="folder", root=tmp_path / "nowhere")
