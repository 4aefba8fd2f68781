"""What the AI-HUB reader's and writer's tests share: the sizes of the layout they read (tests/conftest.py's
`generated` writes it, once per module), and where its label files and image folders are."""

import json
from pathlib import Path

from ablation.data import aihub
from ablation.core import DataSpec

TRAIN, VALID = 3, 6  # images per emotion folder in the fixture
SIZE, FACE = (160, 120), 48
KOREAN = {"happy": "기쁨", "anger": "분노", "unrest": "불안", "wound": "상처", "sad": "슬픔", "neutral": "중립"}


def read(root: Path, **data) -> aihub.Index:
    return aihub.read(DataSpec(dataset="aihub", root=root, **data))


def label_file(root: Path, part: str, emotion: str) -> Path:
    tag, word = ("TRAIN", "training") if part == "Training" else ("VALID", "validation")
    return root / part / f"[라벨]EMOIMG_{emotion}_{tag}" / f"img_emotion_{word}_data({emotion}).json"


def image_dir(root: Path, part: str, emotion: str) -> Path:
    return root / part / f"[원천]EMOIMG_{emotion}_{'TRAIN' if part == 'Training' else 'VALID'}_01"


def records(root: Path, part: str, emotion: str) -> list[dict]:
    return json.loads(label_file(root, part, emotion).read_text(encoding="utf-8"))
