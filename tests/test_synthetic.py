import numpy as np
import pytest

from ablation.data import synthetic
from ablation.data.synthetic import CLASSES, SplitArrays, generate, load


def assert_same(a: SplitArrays, b: SplitArrays) -> None:
    for field in ("images", "labels", "masks", "occluded"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_the_six_classes_are_the_papers_in_label_order():
    assert CLASSES == ("happy", "anger", "unrest", "wound", "sad", "neutral")


def test_arrays_have_the_documented_shapes_and_dtypes():
    arrays = generate(2, 24, seed=0)
    n = 2 * len(CLASSES)
    assert arrays.images.shape == (n, 24, 24, 3) and arrays.images.dtype == np.uint8
    assert arrays.labels.shape == (n,) and arrays.labels.dtype == np.int64
    assert arrays.masks.shape == (n, 24, 24) and arrays.masks.dtype == np.uint8
    assert arrays.occluded.shape == (n,) and arrays.occluded.dtype == bool
    assert set(np.unique(arrays.masks)) <= {0, 1}


def test_every_class_has_n_per_class_images():
    arrays = generate(3, 16, seed=1)
    assert np.bincount(arrays.labels, minlength=len(CLASSES)).tolist() == [3] * len(CLASSES)


def test_the_same_arguments_give_byte_identical_arrays():
    assert_same(generate(2, 32, seed=7), generate(2, 32, seed=7))


def test_a_different_seed_gives_different_images():
    assert not np.array_equal(generate(1, 16, seed=0).images, generate(1, 16, seed=1).images)


def test_a_larger_split_extends_a_smaller_one():
    small, large = generate(1, 16, seed=3), generate(2, 16, seed=3)
    np.testing.assert_array_equal(small.images, large.images[: len(small.labels)])
    np.testing.assert_array_equal(small.labels, large.labels[: len(small.labels)])


def test_images_are_drawn_faces_not_blank():
    images = generate(1, 32, seed=0).images.astype(float)
    assert (images.std(axis=(1, 2, 3)) > 10).all()


def test_cue_masks_are_non_empty_and_lie_inside_the_face():
    for label in range(len(CLASSES)):
        rng = np.random.default_rng(label)
        _, cues, face, _ = synthetic.render_face(rng, label, 32)
        assert cues.sum() > 10
        assert not (cues & (1 - face)).any()  # no cue pixel outside the face
        assert cues.sum() < 0.5 * face.sum()


def test_the_cue_mask_covers_a_small_central_part_of_every_image():
    masks = generate(2, 32, seed=0).masks
    assert (masks.sum(axis=(1, 2)) > 0).all()
    assert masks.mean() < 0.2
    assert masks[:, :2].sum() == 0 and masks[:, -2:].sum() == 0  # faces sit well inside the frame


def test_about_a_fifth_of_faces_are_occluded():
    occluded = generate(20, 16, seed=0).occluded
    assert 0.08 < occluded.mean() < 0.35


def test_train_val_and_test_share_no_image(tmp_path):
    splits = {s: load(s, n_per_class=2, image_size=16, seed=0, cache_dir=tmp_path) for s in ("train", "val", "test")}
    seen: dict[bytes, str] = {}
    for name, arrays in splits.items():
        for image in arrays.images:
            assert seen.setdefault(image.tobytes(), name) == name


def test_load_writes_the_cache_once_and_then_reuses_it(tmp_path, monkeypatch):
    first = load("train", n_per_class=2, image_size=16, seed=5, cache_dir=tmp_path)
    path = synthetic.cache_path("train", n_per_class=2, image_size=16, seed=5, cache_dir=tmp_path)
    assert path.is_file()
    written = path.stat().st_mtime_ns

    def must_not_regenerate(*args, **kwargs):
        raise AssertionError("generate() called although the split is cached")

    monkeypatch.setattr(synthetic, "generate", must_not_regenerate)
    assert_same(load("train", n_per_class=2, image_size=16, seed=5, cache_dir=tmp_path), first)
    assert path.stat().st_mtime_ns == written
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left behind


def test_a_split_is_the_same_whether_cached_or_freshly_generated(tmp_path):
    cached = load("val", n_per_class=1, image_size=16, seed=2, cache_dir=tmp_path / "a")
    reloaded = load("val", n_per_class=1, image_size=16, seed=2, cache_dir=tmp_path / "a")
    fresh = load("val", n_per_class=1, image_size=16, seed=2, cache_dir=tmp_path / "b")
    assert_same(cached, reloaded)
    assert_same(cached, fresh)


def test_the_cache_file_name_names_every_parameter_and_the_generator_version(tmp_path):
    base = dict(n_per_class=2, image_size=16, seed=0, cache_dir=tmp_path)
    paths = {
        synthetic.cache_path("train", **base),
        synthetic.cache_path("val", **base),
        synthetic.cache_path("train", **{**base, "n_per_class": 3}),
        synthetic.cache_path("train", **{**base, "image_size": 32}),
        synthetic.cache_path("train", **{**base, "seed": 1}),
    }
    assert len(paths) == 5
    assert all(p.parent == tmp_path / "synthetic" and p.suffix == ".npz" for p in paths)
    assert f"v{synthetic.GENERATOR_VERSION}" in synthetic.cache_path("train", **base).name


def test_the_cache_defaults_to_ablate_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path))
    load("test", n_per_class=1, image_size=16, seed=0)
    assert list((tmp_path / "synthetic").glob("*.npz"))


def test_an_unreadable_cache_file_is_regenerated(tmp_path):
    path = synthetic.cache_path("train", n_per_class=1, image_size=16, seed=0, cache_dir=tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz")
    arrays = load("train", n_per_class=1, image_size=16, seed=0, cache_dir=tmp_path)
    assert arrays.images.shape == (6, 16, 16, 3)


def test_an_unknown_split_is_an_error_naming_it_and_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"'dev'.*train, val, test"):
        load("dev", n_per_class=1, image_size=16, seed=0, cache_dir=tmp_path)


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"n_per_class": 0, "image_size": 16, "seed": 0}, "n_per_class.*0"),
    ({"n_per_class": 1, "image_size": 15, "seed": 0}, "image_size.*15"),
    ({"n_per_class": 1, "image_size": 16, "seed": -1}, "seed.*-1"),
])
def test_bad_sizes_are_errors_naming_the_value(tmp_path, kwargs, named):
    with pytest.raises(ValueError, match=named):
        generate(**kwargs)
    with pytest.raises(ValueError, match=named):
        load("train", **kwargs, cache_dir=tmp_path)
