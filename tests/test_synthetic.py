"""The generated face-expression dataset: deterministic, balanced, cached, with masks on the cues."""

import numpy as np
import pytest

from ablation.data import build_splits, synthetic
from ablation.spec import DataSpec


def test_the_same_seed_draws_the_same_faces():
    a, b = synthetic.generate(3, 32, seed=7), synthetic.generate(3, 32, seed=7)
    for field in ("images", "labels", "masks", "occluded"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.images, synthetic.generate(3, 32, seed=8).images)


def test_shapes_and_balanced_classes():
    arrays = synthetic.generate(4, 40, seed=0)
    assert arrays.images.shape == (24, 40, 40, 3) and arrays.images.dtype == np.uint8
    assert arrays.masks.shape == (24, 40, 40) and arrays.labels.dtype == np.int64
    assert np.bincount(arrays.labels).tolist() == [4] * len(synthetic.CLASSES)


def test_cue_masks_cover_a_small_central_part_of_each_face():
    masks = synthetic.generate(5, 64, seed=1).masks.astype(bool)
    coverage = masks.mean(axis=(1, 2))
    assert (coverage > 0.01).all() and (coverage < 0.15).all()
    assert not masks[:, :4, :].any() and not masks[:, -4:, :].any()  # never on the border


def test_some_faces_wear_glasses():
    occluded = synthetic.generate(50, 32, seed=0).occluded
    assert 0.1 < occluded.mean() < 0.3


def test_splits_do_not_share_images(tmp_path):
    train = synthetic.load("train", n_per_class=3, image_size=32, seed=0, cache_dir=tmp_path)
    val = synthetic.load("val", n_per_class=3, image_size=32, seed=0, cache_dir=tmp_path)
    assert not any((train.images == v).all(axis=(1, 2, 3)).any() for v in val.images)


def test_a_split_is_generated_once_then_read_from_the_cache(tmp_path, monkeypatch):
    first = synthetic.load("test", n_per_class=2, image_size=32, seed=0, cache_dir=tmp_path)
    assert len(list((tmp_path / "synthetic").glob("*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("regenerated a cached split")

    monkeypatch.setattr(synthetic, "generate", fail)
    again = synthetic.load("test", n_per_class=2, image_size=32, seed=0, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.images, again.images)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: synthetic.load("holdout", n_per_class=1, image_size=32, seed=0), "'holdout'"),
        (lambda: synthetic.generate(0, 32, seed=0), "got 0"),
        (lambda: synthetic.generate(1, 8, seed=0), "got 8"),
    ],
)
def test_bad_arguments_name_the_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_dataset_spec_builds_normalised_tensors_with_the_paper_classes():
    splits = build_splits(DataSpec(image_size=32, train_per_class=2, val_per_class=1, test_per_class=1))
    image, label = splits.train[0]
    assert image.shape == (3, 32, 32) and image.dtype.is_floating_point
    assert splits.classes == ("happy", "anger", "unrest", "wound", "sad", "neutral")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 6, 6)
