"""The image cache: decode once, orient, crop to the face, resize; skip what cannot be used."""

import numpy as np
from PIL import Image

from ablation.data import pipeline
from ablation.data.pipeline import OUTSIDE, materialize
from ablation.data.records import CORRUPT, Item


def photo(path, size=(200, 100), square=(20, 20, 60, 60), colour=(255, 0, 0), orientation=None, quality=95):
    """A grey photo with a coloured square (the 'face') at `square`, in the orientation it is viewed in."""
    image = Image.new("RGB", size, (128, 128, 128))
    image.paste(colour, square)
    if orientation == 6:  # stored turned a quarter left; viewers turn it back right
        exif = Image.Exif()
        exif[0x0112] = 6
        image.transpose(Image.Transpose.ROTATE_90).save(path, quality=quality, exif=exif)
    else:
        image.save(path, quality=quality)
    return str(path)


def test_the_face_box_is_cropped_and_resized(tmp_path):
    cached = materialize([Item(photo(tmp_path / "a.jpg"), 0, "train", box=(20, 20, 60, 60))], 16)
    assert cached.images.shape == (1, 16, 16, 3) and isinstance(cached.images, np.memmap)
    assert cached.images[0, ..., 0].mean() > 230 and cached.images[0, ..., 1].mean() < 30  # all red


def test_exif_orientation_is_applied_before_cropping(tmp_path):
    source = photo(tmp_path / "turned.jpg", orientation=6)
    assert Image.open(source).size == (100, 200)  # as stored
    cached = materialize([Item(source, 0, "train", box=(20, 20, 60, 60))], 16)
    assert cached.images[0, ..., 0].mean() > 230 and cached.images[0, ..., 1].mean() < 30


def test_a_box_reaching_outside_the_image_is_clipped_and_one_wholly_outside_is_skipped(tmp_path):
    source = photo(tmp_path / "a.jpg", square=(0, 0, 40, 40))
    cached = materialize([Item(source, 0, "train", box=(-30, -30, 40, 40)),
                          Item(source, 1, "train", box=(500, 500, 600, 600))], 16)
    assert len(cached.labels) == 1 and cached.images[0, ..., 0].mean() > 200
    assert [s.reason for s in cached.skipped] == [OUTSIDE]


def test_corrupt_and_truncated_images_are_skipped_and_counted(tmp_path):
    good = photo(tmp_path / "good.jpg")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(open(good, "rb").read()[:400])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not a jpeg at all")
    items = [Item(good, 0, "train"), Item(str(truncated), 1, "train"), Item(str(garbage), 2, "train")]
    cached = materialize(items, 16)
    assert cached.labels.tolist() == [0] and cached.sources == [good]
    assert [s.path for s in cached.skipped] == [str(truncated), str(garbage)]
    assert all(s.reason.startswith(CORRUPT) for s in cached.skipped)


def test_pixel_rows_need_no_file(tmp_path):
    gray = np.full((48, 48), 200, dtype=np.uint8)
    cached = materialize([Item("fer.csv:2", 3, "train", pixels=gray)], 24)
    assert cached.images.shape == (1, 24, 24, 3) and (cached.images[0] == 200).all()


def test_a_second_call_reads_the_cache_and_a_changed_file_rebuilds_it(tmp_path, monkeypatch):
    source = photo(tmp_path / "a.jpg")
    items = [Item(source, 0, "train", box=(20, 20, 60, 60))]
    materialize(items, 16)
    decoded = []
    monkeypatch.setattr(pipeline, "preprocess", lambda item, size: decoded.append(item) or np.zeros((16, 16, 3), np.uint8))
    materialize(items, 16)
    assert decoded == []
    photo(tmp_path / "a.jpg", colour=(0, 0, 255))
    materialize(items, 16)
    assert decoded == items


def test_large_jpegs_are_decoded_at_reduced_scale_with_the_same_result(tmp_path):
    big = photo(tmp_path / "big.jpg", size=(1600, 1200), square=(400, 300, 800, 700), quality=98)
    item = Item(big, 0, "train", box=(400, 300, 800, 700))
    fast = pipeline.preprocess(item, 64)
    image = Image.open(big).convert("RGB")  # no draft: full-size decode
    slow = np.asarray(image.resize((64, 64), Image.BILINEAR, box=(400, 300, 800, 700)))
    assert np.abs(fast.astype(int) - slow.astype(int)).mean() < 3


def test_a_16_bit_greyscale_png_keeps_its_brightness(tmp_path):
    """Converted to RGB as it is, a 16-bit image clips at 255: a mid-grey photo reached the model white."""
    rng = np.random.default_rng(0)
    grey = rng.integers(20_000, 45_000, size=(48, 48), dtype=np.uint16)  # mid-grey on 0-65535
    path = tmp_path / "grey16.png"
    Image.fromarray(grey).save(path)
    assert Image.open(path).mode.startswith("I")  # read back as 16-bit, as PNG stores it
    cached = materialize([Item(str(path), 0, "train")], 48)
    assert abs(cached.images[0].mean() - grey.mean() / 257) < 1.0
    assert (cached.images[0, ..., 0] == cached.images[0, ..., 2]).all()  # still grey
