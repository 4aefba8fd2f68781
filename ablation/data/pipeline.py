"""Images decoded once: oriented, cropped to the face, resized, and kept as uint8 arrays on disk.

`materialize(items, image_size)` turns the items of an index into one memory-mapped array
(N, S, S, 3) under `<cache>/images/<key>/`, the key a hash of every item's source (path, size and
modification time, or its pixels), label and box, the image size and this module's version. All
trials on a machine open the same files, so the page cache holds one copy whatever the number of
trials; a trial's memory does not grow with the dataset. Building decodes in a process pool.

Per image: EXIF orientation is applied first (boxes are given in the oriented image); the face box
is widened to a square about its centre (so faces are not stretched) and clipped to the image; an
image without a box is centre-cropped to a square; then it is resized to S x S. JPEGs are decoded
at a reduced scale where the crop allows (libjpeg's DCT scaling), which is what makes 1-2 MP
photos cheap. A corrupt or truncated image, or a box outside its image, is skipped and counted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ablation.core import cache
from ablation.data.records import CORRUPT, Index, Item, Skipped, as_bytes

VERSION = 2  # part of the cache key: bump it whenever preprocessing changes (2: 16-bit greyscale scaled)
OUTSIDE = "face box outside the image"
_IN_PROCESS = 256  # below this many images a process pool costs more than it saves


@dataclass(frozen=True)
class Cached:
    images: np.ndarray  # (N, S, S, 3) uint8, memory-mapped read-only
    labels: np.ndarray  # (N,) int64
    sources: list[str]  # where each image came from
    skipped: list[Skipped]  # images that could not be decoded


def cache_key(items: Sequence[Item], image_size: int) -> str:
    digest = hashlib.sha1(f"v{VERSION}/{image_size}".encode())
    for item in items:
        if item.pixels is not None:
            origin = hashlib.sha1(item.pixels.tobytes()).hexdigest()
        else:
            try:
                stat = os.stat(item.source)
                origin = f"{stat.st_size}/{stat.st_mtime_ns}"
            except OSError:
                origin = "missing"
        digest.update(as_bytes(f"\0{item.source}\0{origin}\0{item.label}\0{item.box}"))
    return digest.hexdigest()[:20]


def preprocess(item: Item, size: int) -> np.ndarray:
    """One item as an (S, S, 3) uint8 array; raises on an image that cannot be used."""
    with warnings.catch_warnings():
        # PIL warns of an image past MAX_IMAGE_PIXELS (on opening, or on loading a frame) and refuses one
        # past twice that. A refused one is skipped and counted (CORRUPT); one it only warns of decodes like
        # any other, so its warning would be noise on the user's terminal, from every process that decodes.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return _preprocess(item, size)


def _preprocess(item: Item, size: int) -> np.ndarray:
    if item.pixels is not None:
        image = Image.fromarray(item.pixels)
        scale = 1.0
    else:
        image = Image.open(item.source)
        scale = _draft(image, item.box, size)
        image = ImageOps.exif_transpose(image)
    image = _eight_bit(image).convert("RGB")
    box = _square(item.box, scale, image.size)
    return np.asarray(image.resize((size, size), Image.BILINEAR, box=box, reducing_gap=2.0))


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit greyscale image (PNG's I;16, or I holding 16-bit values) scaled onto 0-255: converting it to
    RGB as it is would clip every value above 255, and a photo would reach the model nearly white."""
    if image.mode not in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        return image
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "I" and values.max(initial=0) <= 255:  # 8-bit values in a 32-bit image
        return Image.fromarray(values.astype(np.uint8))
    return Image.fromarray(np.clip(np.rint(values / 257), 0, 255).astype(np.uint8))


def _draft(image: Image.Image, box: tuple[float, float, float, float] | None, size: int) -> float:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale while the crop stays at least `size` wide; returns the scale."""
    if image.format != "JPEG":
        return 1.0
    side = max(box[2] - box[0], box[3] - box[1]) if box else min(image.size)
    wanted = (max(1, math.ceil(image.width * size / side)), max(1, math.ceil(image.height * size / side)))
    full = image.width
    if image.draft("RGB", wanted) is None:
        return 1.0
    return image.width / full


def _square(box: tuple[float, float, float, float] | None, scale: float,
            shape: tuple[int, int]) -> tuple[float, float, float, float]:
    width, height = shape
    if box is None:
        side = min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        return left, top, left + side, top + side
    x0, y0, x1, y1 = (v * scale for v in box)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) / 2
    x0, y0, x1, y1 = max(0.0, cx - half), max(0.0, cy - half), min(width, cx + half), min(height, cy + half)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise _Outside
    return x0, y0, x1, y1


class _Outside(ValueError):
    pass


def _decode(job: tuple[Item, int]) -> np.ndarray | str:
    """`preprocess`, with failure as the reason string (exceptions do not cross processes well)."""
    item, size = job
    try:
        return preprocess(item, size)
    except _Outside:
        return OUTSIDE
    except Exception as err:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError... for bad files
        return f"{CORRUPT}: {type(err).__name__}: {err}"


def materialize(items: Sequence[Item], image_size: int, *,
                on_progress: Callable[[int, int], None] | None = None) -> Cached:
    """The cached arrays of `items` at `image_size`, decoding them first if no cache holds them."""
    folder = cache.cache_dir() / "images" / cache_key(items, image_size)
    if not (folder / "meta.json").exists():
        _build(items, image_size, folder, on_progress)
    meta = json.loads((folder / "meta.json").read_text())
    shape = (meta["count"], image_size, image_size, 3)
    images = np.memmap(folder / "images.u8", dtype=np.uint8, mode="r", shape=shape) if meta["count"] else \
        np.zeros(shape, dtype=np.uint8)
    return Cached(images=images, labels=np.load(folder / "labels.npy"), sources=meta["sources"],
                  skipped=[Skipped(**s) for s in meta["skipped"]])


def _build(items: Sequence[Item], size: int, folder: Path, on_progress: Callable[[int, int], None] | None) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".building-"))
    labels, sources, skipped = [], [], []
    try:
        with open(work / "images.u8", "wb") as out:
            for i, (item, result) in enumerate(zip(items, _decoded(items, size))):
                if isinstance(result, str):
                    skipped.append(Skipped(item.source, result))
                else:
                    out.write(result.tobytes())
                    labels.append(item.label)
                    sources.append(item.source)
                if on_progress is not None:
                    on_progress(i + 1, len(items))
        np.save(work / "labels.npy", np.asarray(labels, dtype=np.int64))
        meta = {"version": VERSION, "image_size": size, "count": len(labels), "sources": sources,
                "skipped": [{"path": s.path, "reason": s.reason} for s in skipped]}
        (work / "meta.json").write_text(json.dumps(meta))
        try:
            work.rename(folder)  # atomic: a reader sees a whole cache or none
        except OSError:  # another process built the same cache first; theirs is as good
            pass
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _decoded(items: Sequence[Item], size: int):
    jobs = ((item, size) for item in items)
    workers = min(os.cpu_count() or 1, 8)
    if len(items) < _IN_PROCESS or workers == 1:
        yield from map(_decode, jobs)
        return
    # forkserver: the caller may hold threads (Ray, torch), which fork would copy mid-lock.
    with ProcessPoolExecutor(workers, mp_context=get_context("forkserver")) as pool:
        yield from pool.map(_decode, jobs, chunksize=32)


def verify(items: Sequence[Item], *, on_progress: Callable[[int, int], None] | None = None) -> list[Skipped]:
    """Decode every item (at a small size, keeping nothing); the ones that cannot be used."""
    skipped = []
    for i, (item, result) in enumerate(zip(items, _decoded(items, 32))):
        if isinstance(result, str):
            skipped.append(Skipped(item.source, result))
        if on_progress is not None:
            on_progress(i + 1, len(items))
    return skipped


def verified(index: Index, *, on_progress: Callable[[int, int], None] | None = None) -> tuple[Index, list[Skipped]]:
    """`index` without the items that do not decode, and those items: a study skips them when it
    decodes them, so they are counted as skipped, not in their class."""
    undecodable = verify(index.items, on_progress=on_progress)
    unusable = {s.path for s in undecodable}
    return replace(index, items=[item for item in index.items if item.source not in unusable]), undecodable
