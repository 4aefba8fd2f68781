"""A generated six-class face-expression dataset, so a study runs without downloading anything.

Each image is a drawn face whose brows, eyes and mouth take a class-dependent shape (happy,
anger, unrest/anxiety, wound/hurt, sad, neutral, as in the Identity-CBAM paper). The shape
parameters of every class are drawn from overlapping distributions (a fifth of faces are blended
towards a class they are often confused with), so a ResNet learns the task but cannot reach 100%.
Pose, skin tone, background, lighting, pixel noise and occluders (glasses, a hand, a lock of hair)
vary as nuisance.
Alongside the images come per-pixel cue masks (brows, eyes, mouth) for scoring attribution maps.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ablation.core import cache
from ablation.data.records import EMOTIONS

CLASSES: tuple[str, ...] = EMOTIONS
SPLITS: tuple[str, ...] = ("train", "val", "test")
GENERATOR_VERSION = 5  # part of the cache file name: bump it whenever the drawing changes

# Expression cues as offsets from a neutral face, one row per class. Columns (unitless, mapped to
# face-relative sizes in _draw_cues): mouth curve (+ = corners up), mouth opening, mouth waviness,
# brow tilt (+ = inner ends down), brow raise, eye openness, mouth width.
_CUE_MEAN = np.array([
    [1.00, 0.50, 0.00, 0.00, 0.10, -0.20, 0.25],    # happy
    [-0.15, 0.00, 0.00, 0.90, -0.50, -0.15, -0.30],  # anger
    [-0.25, 0.40, 0.60, -0.50, 0.70, 0.30, -0.15],   # unrest
    [-0.50, 0.40, 0.20, -0.80, 0.45, -0.45, 0.00],   # wound
    [-0.80, 0.00, 0.00, -0.80, 0.30, -0.20, -0.05],  # sad
    [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00],      # neutral
])
# Class overlap, which caps the accuracy any classifier can reach: some faces are ambiguous, their
# expression blended towards a class it is often confused with, on top of a random intensity and a
# small per-face spread. As with real faces (the paper's Table 1), happiness is rarely mistaken, and
# anxiety (unrest) and hurt (wound) are the classes most often taken for each other; hurt also
# shades into sadness, and a stern or a sad face into a neutral one. Most faces are clean, so the
# classes are learnable within a few short epochs; benchmarks/synthetic_calibration.py measures
# where a ResNet-18 lands.
_CONFUSED_WITH = {0: (5,), 1: (5,), 2: (3,), 3: (2, 2, 4), 4: (3, 5), 5: (1, 4, 0)}
_P_AMBIGUOUS = np.array([0.06, 0.15, 0.3, 0.3, 0.2, 0.15])  # per class, in label order
_BLEND = (0.4, 1.0)  # how far an ambiguous face moves towards the other class
_INTENSITY = (0.75, 1.0)
_CUE_SD = np.array([0.075, 0.065, 0.065, 0.075, 0.075, 0.065, 0.05])
_P_OCCLUDED = 0.2
_MIN_CANVAS = 256  # faces are drawn at least this large, then box-filtered down for smooth edges


@dataclass(frozen=True)
class SplitArrays:
    images: np.ndarray  # uint8, (N, H, W, 3)
    labels: np.ndarray  # int64, (N,)
    masks: np.ndarray  # uint8, (N, H, W), 1 on class cues
    occluded: np.ndarray  # bool, (N,)


def _sample_cues(rng: np.random.Generator, label: int) -> np.ndarray:
    """One face's cue vector (columns of _CUE_MEAN) for a class."""
    expression = _CUE_MEAN[label]
    if rng.random() < _P_AMBIGUOUS[label]:
        partners = _CONFUSED_WITH[label]
        other = _CUE_MEAN[partners[rng.integers(len(partners))]]
        expression = expression + rng.uniform(*_BLEND) * (other - expression)
    return rng.uniform(*_INTENSITY) * expression + rng.normal(0.0, _CUE_SD)


class _Pose:
    """Maps face-local coordinates (face half-width = 1, y down) to canvas pixels."""

    def __init__(self, cx: float, cy: float, scale: float, angle: float) -> None:
        self.cx, self.cy, self.scale = cx, cy, scale
        self.cos, self.sin = np.cos(angle), np.sin(angle)

    def points(self, u: np.ndarray, v: np.ndarray) -> list[tuple[float, float]]:
        x = self.cx + self.scale * (self.cos * u - self.sin * v)
        y = self.cy + self.scale * (self.sin * u + self.cos * v)
        return list(zip(x.tolist(), y.tolist()))

    def ellipse(self, u0: float, v0: float, ru: float, rv: float, n: int = 40) -> list[tuple[float, float]]:
        cos, sin = _unit_circle(n)
        return self.points(u0 + ru * cos, v0 + rv * sin)


@lru_cache(maxsize=None)
def _unit_circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.cos(t), np.sin(t)


def _band(pose: _Pose, u: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> list[tuple[float, float]]:
    """The polygon between two curves over the same u: a brow, a closed or an open mouth."""
    return pose.points(np.concatenate([u, u[::-1]]), np.concatenate([top, bottom[::-1]]))


def _draw_cues(draws: list[ImageDraw.ImageDraw], colours: list[dict], pose: _Pose,
               cues: np.ndarray, rng: np.random.Generator) -> None:
    """Brows, eyes and mouth, drawn identically on the image and (in white) on the cue mask."""
    curve, opening, wave, tilt, lift, eye, width = cues
    eye_x, eye_y = rng.uniform(0.34, 0.42), rng.uniform(-0.25, -0.15)
    eye_rx, eye_ry = rng.uniform(0.2, 0.25), 0.15 * float(np.clip(1.0 + eye, 0.15, 2.2))
    gaze = rng.uniform(-0.05, 0.05, size=2)
    brow_t = rng.uniform(0.1, 0.14)
    u = np.linspace(0.0, 1.0, 12)
    # Brows: the inner end drops with tilt, the whole brow rises with lift and wide-open eyes.
    brow_base = eye_y - 0.14 - max(eye_ry, 0.06) - 0.16 * lift + rng.normal(0, 0.02)
    brow_v = brow_base + 0.28 * tilt * (1 - u) - 0.05 * np.sin(np.pi * u)
    half_w = 0.42 * (1 + 0.5 * width) * rng.uniform(0.9, 1.1)
    mu = np.linspace(-1.0, 1.0, 25)
    mouth_y = rng.uniform(0.48, 0.58)
    upper = mouth_y - 0.3 * curve * mu**2 + 0.07 * max(wave, 0.0) * np.sin(3 * np.pi * mu)
    gap = 0.3 * max(opening, 0.0) * (1 - mu**2)
    lip_t = rng.uniform(0.08, 0.11)
    for draw, colour in zip(draws, colours):
        for side in (-1, 1):
            draw.polygon(pose.ellipse(side * eye_x, eye_y, eye_rx, eye_ry), fill=colour["sclera"])
            pupil = min(0.09, eye_ry)
            draw.polygon(pose.ellipse(side * eye_x + gaze[0], eye_y + gaze[1] * eye_ry / 0.15,
                                      pupil, pupil, n=20), fill=colour["pupil"])
            bu = side * (0.1 + 0.52 * u)  # after the eye: a lowered brow covers the lid, as in a frown
            draw.polygon(_band(pose, bu, brow_v - brow_t / 2, brow_v + brow_t / 2), fill=colour["brow"])
        mouth_u = half_w * mu
        draw.polygon(_band(pose, mouth_u, upper - lip_t / 2, upper + gap + lip_t / 2), fill=colour["lips"])
        if opening > 0.1:  # the inside of an open mouth shows as a dark gap between the lips
            draw.polygon(_band(pose, mouth_u[2:-2], upper[2:-2] + lip_t / 3, upper[2:-2] + gap[2:-2]),
                         fill=colour["inside"])


def _draw_occluder(img: Image.Image, pose: _Pose, rng: np.random.Generator, skin: np.ndarray,
                   hair: tuple[int, int, int]) -> None:
    """Glasses over the eyes (half of the occluders), a hand over the mouth or a cheek, or a lock of hair
    over a brow; the cues they hide stay in the cue mask, so attribution is scored against the truth."""
    draw = ImageDraw.Draw(img)
    kind = rng.choice(3, p=[0.5, 0.25, 0.25])
    if kind == 0:
        frame = tuple(int(c) for c in rng.integers(0, 90, size=3))
        tint = Image.new("RGB", img.size, tuple(int(c) for c in rng.integers(0, 80, size=3)))
        lenses = Image.new("L", img.size, 0)
        alpha = int(rng.uniform(0.15, 0.6) * 255)
        for side in (-1, 1):
            ImageDraw.Draw(lenses).polygon(pose.ellipse(side * 0.38, -0.2, 0.3, 0.22), fill=alpha)
        img.paste(tint, mask=lenses)
        width = max(1, round(0.05 * pose.scale))
        for side in (-1, 1):
            ring = pose.ellipse(side * 0.38, -0.2, 0.3, 0.22)
            draw.line(ring + ring[:1], fill=frame, width=width, joint="curve")
        draw.line(pose.points(np.array([-0.08, 0.08]), np.array([-0.22, -0.22])), fill=frame, width=width)
    elif kind == 1:  # a hand: a palm below, four fingers reaching up over the face
        tone = tuple(int(c) for c in np.clip(skin * rng.uniform(0.85, 1.1) + rng.normal(0, 6, 3), 0, 255))
        u, v = rng.uniform(-0.55, 0.55), rng.uniform(0.75, 1.0)
        draw.polygon(pose.ellipse(u, v, 0.36, 0.3), fill=tone)
        for finger in range(4):
            fu = u - 0.24 + 0.16 * finger
            draw.polygon(pose.ellipse(fu, v - 0.38, 0.065, 0.26 - 0.03 * abs(finger - 1.5)), fill=tone)
    else:  # a lock of hair falling from the hairline over one brow
        side = rng.choice([-1, 1])
        width = max(1, round(rng.uniform(0.05, 0.09) * pose.scale))
        for strand in range(int(rng.integers(3, 6))):
            start = side * rng.uniform(0.0, 0.4) + 0.06 * strand
            end = side * rng.uniform(0.3, 0.7)
            draw.line(pose.points(np.linspace(start, end, 8), np.linspace(-1.05, rng.uniform(-0.4, -0.2), 8)),
                      fill=hair, width=width, joint="curve")


def _skin(rng: np.random.Generator) -> np.ndarray:
    light, dark = np.array([245.0, 210.0, 185.0]), np.array([90.0, 58.0, 40.0])
    t = rng.uniform()
    return np.clip(light + t * (dark - light) + rng.normal(0, 8, 3), 0, 255)


def render_face(rng: np.random.Generator, label: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """One face of a class: (image uint8 HxWx3, cue mask uint8 HxW, face mask uint8 HxW, occluded). Its random
    numbers come from `rng` alone, so one generator state draws one face (the AI-HUB layout pastes these)."""
    ss = max(2, -(-_MIN_CANVAS // size))  # supersampling factor
    canvas = size * ss
    pose = _Pose(cx=canvas * (0.5 + rng.uniform(-0.06, 0.06)), cy=canvas * (0.5 + rng.uniform(-0.05, 0.05)),
                 scale=canvas * 0.38 * rng.uniform(0.92, 1.06), angle=np.deg2rad(rng.uniform(-12, 12)))
    aspect = rng.uniform(1.12, 1.25)
    skin = _skin(rng)
    hair = tuple(int(c) for c in rng.integers(0, 120, size=3))
    # Muted backgrounds: fully random colours kept SGD (lr 0.05) at chance for several epochs.
    background = tuple(int(c) for c in np.clip(rng.uniform(60, 200) + rng.normal(0, 30, 3), 0, 255))
    img = Image.new("RGB", (canvas, canvas), background)
    mask = Image.new("L", (canvas, canvas), 0)
    face = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(img)
    if rng.random() < 0.6:  # hair behind the top of the head, so the face outline varies too
        draw.polygon(pose.ellipse(0, -0.35, 1.12, aspect * 0.85), fill=hair)
    face_outline = pose.ellipse(0, 0, 1.0, aspect, n=64)
    draw.polygon(face_outline, fill=tuple(int(c) for c in skin))
    ImageDraw.Draw(face).polygon(face_outline, fill=255)
    colours = {"brow": tuple(int(c) for c in np.array(hair) * 0.6),
               "sclera": tuple(int(c) for c in rng.integers(225, 256, size=3)),
               "pupil": tuple(int(c) for c in rng.integers(0, 70, size=3)),
               "lips": tuple(int(c) for c in skin * np.array([0.75, 0.45, 0.45])),
               "inside": tuple(int(c) for c in rng.integers(20, 70, size=3))}
    cues = _sample_cues(rng, label)
    _draw_cues([draw, ImageDraw.Draw(mask)], [colours, dict.fromkeys(colours, 255)], pose, cues, rng)
    occluded = bool(rng.random() < _P_OCCLUDED)
    if occluded:
        _draw_occluder(img, pose, rng, skin, hair)
    small = np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    cue_mask = np.asarray(mask.resize((size, size), Image.Resampling.BOX)) >= 80  # >= ~30% covered
    face_mask = np.asarray(face.resize((size, size), Image.Resampling.BOX)) > 0
    return _light_and_noise(small, rng), cue_mask.astype(np.uint8), face_mask.astype(np.uint8), occluded


def _light_and_noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Global brightness, a linear lighting gradient in a random direction, then sensor noise."""
    size = img.shape[0]
    coords = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    phi = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(phi) * coords[None, :] + np.sin(phi) * coords[:, None]
    gain = rng.uniform(0.8, 1.15) * (1 + rng.uniform(0.0, 0.2) * ramp)
    noise = rng.uniform(2.0, 8.0) * rng.standard_normal(img.shape, dtype=np.float32)
    noisy = img * gain[..., None] + noise
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _check(n_per_class: int, image_size: int, seed: int) -> None:
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")


def generate(n_per_class: int, image_size: int, seed: int) -> SplitArrays:
    """Render n_per_class images of each class, deterministic in (n_per_class, image_size, seed)."""
    _check(n_per_class, image_size, seed)
    # Classes interleave (0, 1, ..., 5, 0, 1, ...) so any prefix is balanced, and each image has its
    # own generator so image i does not depend on how many random numbers earlier images used.
    labels = np.tile(np.arange(len(CLASSES), dtype=np.int64), n_per_class)
    children = np.random.SeedSequence(seed).spawn(len(labels))
    images = np.empty((len(labels), image_size, image_size, 3), dtype=np.uint8)
    masks = np.empty((len(labels), image_size, image_size), dtype=np.uint8)
    occluded = np.empty(len(labels), dtype=bool)
    for i, (label, child) in enumerate(zip(labels, children)):
        images[i], masks[i], _, occluded[i] = render_face(np.random.default_rng(child), int(label), image_size)
    return SplitArrays(images=images, labels=labels, masks=masks, occluded=occluded)


def cache_path(split: str, *, n_per_class: int, image_size: int, seed: int, cache_dir: Path | None = None) -> Path:
    """Where load() keeps a split: every parameter and the generator version are in the name."""
    root = Path(cache_dir) if cache_dir is not None else cache.cache_dir()
    name = f"v{GENERATOR_VERSION}_{split}_n{n_per_class}_px{image_size}_seed{seed}.npz"
    return root / "synthetic" / name


def load(split: str, *, n_per_class: int, image_size: int, seed: int, cache_dir: Path | None = None) -> SplitArrays:
    """One split ('train' | 'val' | 'test') from the cache, generating it on first use."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are {', '.join(SPLITS)}")
    _check(n_per_class, image_size, seed)
    path = cache_path(split, n_per_class=n_per_class, image_size=image_size, seed=seed, cache_dir=cache_dir)
    if path.exists():
        try:
            with np.load(path) as stored:
                return SplitArrays(**{k: stored[k] for k in ("images", "labels", "masks", "occluded")})
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # an unreadable file (e.g. from an older numpy) is simply regenerated below
    # Splits get unrelated seeds, so no image appears in two of them.
    split_seed = int(np.random.SeedSequence([seed, SPLITS.index(split)]).generate_state(1)[0])
    arrays = generate(n_per_class, image_size, split_seed)
    _write_atomically(path, arrays)
    return arrays


def _write_atomically(path: Path, arrays: SplitArrays) -> None:
    """Concurrent trials may generate the same split: each writes a private file, then renames it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=arrays.images, labels=arrays.labels, masks=arrays.masks, occluded=arrays.occluded)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; a shared cache should be readable like any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
