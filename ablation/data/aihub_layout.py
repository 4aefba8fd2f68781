"""Generated faces written in the layout of AI-HUB's Korean emotion-recognition composite images.

`write(root, ...)` lays out exactly what `aihub.read` expects of the dataset as extracted, so the
AI-HUB path (reader, decoding cache, a study) can be exercised and benchmarked without the real
data (which needs an AI-HUB account):

    root/Training/[원천]EMOIMG_<감정>_TRAIN_01/<subject>_<감정>_<n>.jpg
    root/Training/[라벨]EMOIMG_<감정>_TRAIN/img_emotion_training_data(<감정>).json
    root/Validation/[원천]EMOIMG_<감정>_VALID_01/<subject>_<감정>_<n>.jpg
    root/Validation/[라벨]EMOIMG_<감정>_VALID/img_emotion_validation_data(<감정>).json

for the six emotions of the paper and, with `include_embarrassed`, 당황 (which readers drop).
Each image is a JPEG of `image_size` (width, height): a smooth, grainy background with one face of
`face_size` pixels from `synthetic.render_face` (당황 uses the unrest face) pasted at a random
position. Each JSON file is a list of records with `filename`, `gender`, `age`, `isProf`,
`faceExp_uploader`, `bg_uploader` and three annotators `annot_A/B/C`, each
`{"boxes": {"minX", "minY", "maxX", "maxY"}, "faceExp", "bg"}`: integer boxes around the pasted
face, each annotator's jittered by a few pixels; the uploader's label is the true class and each
annotator names a class it is often confused with, with probability `disagreement`, unless another
annotator already named that class: no other class gets two votes, so the annotators' majority (or,
without one, the uploader) always names the true class, and a reader finds exactly `per_class`
training and `valid_per_class` validation images of each class, whichever label rule it follows.

Filenames are `<16 hex chars>_<감정>_<n>.jpg`: the leading hash is the person, and each person has
2 to 4 images, of any emotions, so a split by subject is meaningful. Names are written in NFC.
Everything is deterministic in the arguments; each face's random numbers depend only on
(seed, part, emotion, n), so the images of a smaller dataset reappear in a larger one (the subject
grouping, which shuffles all images of a part, does not). Existing files under `root` are
overwritten, never deleted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from ablation.data.synthetic import render_face

# Korean folder word -> the class index of its face (당황 is drawn as unrest, and dropped by readers).
FACES: dict[str, int] = {"기쁨": 0, "분노": 1, "불안": 2, "상처": 3, "슬픔": 4, "중립": 5, "당황": 2}
# What an annotator who disagrees says instead (as synthetic's class overlap, plus 당황 ~ 불안).
_CONFUSED_WITH: dict[str, tuple[str, ...]] = {
    "기쁨": ("중립",), "분노": ("중립",), "불안": ("상처", "슬픔", "당황"), "상처": ("슬픔", "불안"),
    "슬픔": ("상처", "중립"), "중립": ("분노", "슬픔", "기쁨"), "당황": ("불안", "중립"),
}
# (folder, tag in folder names, word in the JSON file name)
PARTS: tuple[tuple[str, str, str], ...] = (("Training", "TRAIN", "training"), ("Validation", "VALID", "validation"))
_BACKGROUNDS = ("실내", "실외", "공공시설/종교/의료시설", "상업시설/점포/시장", "숙박 및 거주공간", "자연공간")
_JITTER = 3  # an annotator's box edges move by up to this many pixels
_GRAIN = 6.0  # background noise, grey levels


def image_folder(tag: str, emotion: str) -> str:
    return f"[원천]EMOIMG_{emotion}_{tag}_01"


def label_folder(tag: str, emotion: str) -> str:
    return f"[라벨]EMOIMG_{emotion}_{tag}"


def label_file(word: str, emotion: str) -> str:
    return f"img_emotion_{word}_data({emotion}).json"


def emotions_written(include_embarrassed: bool = True) -> list[str]:
    """The emotion folders `write` lays out, in order."""
    return [e for e in FACES if include_embarrassed or e != "당황"]


def photo_count(per_class: int, valid_per_class: int, *, include_embarrassed: bool = True) -> int:
    """How many photos `write` writes (one face each)."""
    return len(emotions_written(include_embarrassed)) * (per_class + valid_per_class)


def write(root: Path, *, per_class: int, valid_per_class: int, image_size: tuple[int, int] = (1280, 960),
          face_size: int = 256, seed: int = 0, include_embarrassed: bool = True,
          disagreement: float = 0.15) -> None:
    """Write `per_class` training and `valid_per_class` validation images of each emotion under `root`."""
    width, height = image_size
    if per_class < 1 or valid_per_class < 1:
        raise ValueError(f"per_class and valid_per_class must be at least 1, got {per_class} and {valid_per_class}")
    if face_size < 16 or face_size > min(width, height):
        raise ValueError(f"face_size must be between 16 and the image's shorter side ({min(width, height)}), "
                         f"got {face_size}")
    if not 0.0 <= disagreement <= 1.0:
        raise ValueError(f"disagreement must be a probability, got {disagreement}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    emotions = emotions_written(include_embarrassed)
    confused = {e: tuple(c for c in _CONFUSED_WITH[e] if c in emotions) for e in emotions}
    root = Path(root)
    # One grain texture for the whole call; each image takes a window of it at a random offset.
    shape = (-(-height // 2) + 64, -(-width // 2) + 64)
    grain = (np.random.default_rng([seed, 99]).standard_normal(shape, dtype=np.float32) * _GRAIN).astype(np.int16)
    for part_index, (part, tag, word) in enumerate(PARTS):
        count = per_class if part == "Training" else valid_per_class
        subjects = _subjects(seed, part_index, [(e, n) for e in emotions for n in range(count)])
        records: dict[str, list[dict]] = {e: [] for e in emotions}
        for emotion in emotions:
            folder = root / part / image_folder(tag, emotion)
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(count):
                rng = np.random.default_rng([seed, part_index, emotions.index(emotion), n])
                subject = subjects[emotion, n]
                filename = f"{subject['hash']}_{emotion}_{n:04d}.jpg"
                image, box = _compose(rng, FACES[emotion], width, height, face_size, grain)
                image.save(folder / filename, quality=90)
                records[emotion].append(_record(rng, filename, subject, emotion, box, confused[emotion],
                                                disagreement, width, height))
        for emotion in emotions:
            folder = root / part / label_folder(tag, emotion)
            folder.mkdir(parents=True, exist_ok=True)
            text = json.dumps(records[emotion], ensure_ascii=False)
            (folder / label_file(word, emotion)).write_text(text, encoding="utf-8")


def _subjects(seed: int, part_index: int, slots: list[tuple[str, int]]) -> dict[tuple[str, int], dict]:
    """Group a part's images, shuffled, into people of 2 to 4 images each; slot -> that person."""
    rng = np.random.default_rng([seed, part_index, 7])
    order = rng.permutation(len(slots))
    people: dict[tuple[str, int], dict] = {}
    start, k = 0, 0
    while start < len(order):
        size = int(rng.integers(2, 5))
        person = {"hash": hashlib.sha1(f"aihub-layout/{seed}/{part_index}/{k}".encode()).hexdigest()[:16],
                  "gender": "남" if rng.random() < 0.5 else "여", "age": int(rng.choice([10, 20, 30, 40, 50, 60])),
                  "isProf": "전문인" if rng.random() < 0.3 else "일반인"}
        for i in order[start:start + size]:
            people[slots[i]] = person
        start, k = start + size, k + 1
    return people


def _compose(rng: np.random.Generator, label: int, width: int, height: int, face_size: int,
             grain: np.ndarray) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A background with one face pasted in it, and the face's tight box (min_x, min_y, max_x, max_y)."""
    face, _, face_mask, _ = render_face(rng, label, face_size)
    # A smooth colour field with grain, made at half size (a tiny random image upscaled, plus a
    # window of the shared grain) and doubled: a quarter of the work of a full-size background.
    half = (-(-width // 2), -(-height // 2))
    base = np.clip(rng.uniform(50, 200) + rng.normal(0, 25, size=(1, 1, 3)) + rng.normal(0, 20, size=(3, 4, 3)), 0, 255)
    field = Image.fromarray(base.astype(np.uint8)).resize(half, Image.Resampling.BILINEAR)
    dy, dx = (int(v) for v in rng.integers(0, 64, size=2))
    grainy = np.asarray(field, dtype=np.int16) + grain[dy:dy + half[1], dx:dx + half[0], None]
    image = Image.fromarray(np.clip(grainy, 0, 255).astype(np.uint8)).resize((width, height), Image.Resampling.NEAREST)
    x0, y0 = int(rng.integers(0, width - face_size + 1)), int(rng.integers(0, height - face_size + 1))
    image.paste(Image.fromarray(face), (x0, y0))
    ys, xs = np.nonzero(face_mask)
    return image, (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)


def _record(rng: np.random.Generator, filename: str, subject: dict, emotion: str, box: tuple[int, int, int, int],
            confused: tuple[str, ...], disagreement: float, width: int, height: int) -> dict:
    background = _BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))]
    record = {"filename": filename, "gender": subject["gender"], "age": subject["age"], "isProf": subject["isProf"],
              "faceExp_uploader": emotion, "bg_uploader": background}
    votes: list[str] = []
    for annotator in "ABC":
        said = emotion
        if confused and rng.random() < disagreement:
            other = confused[int(rng.integers(len(confused)))]
            # Readers label a face by the annotators' majority: two votes for one other class would move
            # the face out of its folder's class, and `per_class` would no longer hold.
            said = emotion if other in votes else other
        votes.append(said)
        jitter = rng.integers(-_JITTER, _JITTER + 1, size=4)
        min_x, min_y = max(0, box[0] + int(jitter[0])), max(0, box[1] + int(jitter[1]))
        max_x, max_y = min(width, box[2] + int(jitter[2])), min(height, box[3] + int(jitter[3]))
        record[f"annot_{annotator}"] = {"boxes": {"minX": min_x, "minY": min_y, "maxX": max_x, "maxY": max_y},
                                        "faceExp": said, "bg": background}
    return record
