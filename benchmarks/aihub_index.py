"""How fast the AI-HUB reader indexes a root: folders listed and label JSON parsed, no image opened.

Writes the AI-HUB layout with empty image files (the reader never decodes them) and one record per
image, then times `aihub.read` (the best of a few reads, the page cache warm after the first).
The target, once a timed assertion in tests/test_aihub.py: 3,000 records a second or more, so that
indexing is never what a study waits for.

    .venv/bin/python benchmarks/aihub_index.py [--train-per-class 4160] [--valid-per-class 720] [--repeats 3]

The defaults are data_pipeline.py's full size per class: 29,280 records over the six classes. Writes
benchmarks/results/aihub_index.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from results_file import publish  # benchmarks/, the script's own folder

TARGET = 3000.0  # records per second


def write_layout(root: Path, train_per_class: int, valid_per_class: int) -> int:
    from ablation.data.aihub_layout import PARTS, image_folder, label_file, label_folder

    annotator = {"boxes": {"minX": 1, "minY": 2, "maxX": 30, "maxY": 40}, "bg": "실내"}
    written = 0
    for emotion in ("기쁨", "분노", "불안", "상처", "슬픔", "중립"):
        for (part, tag, word), count in zip(PARTS, (train_per_class, valid_per_class)):
            images = root / part / image_folder(tag, emotion)
            labels = root / part / label_folder(tag, emotion)
            images.mkdir(parents=True)
            labels.mkdir(parents=True)
            names = [f"{i // 3:016x}_{emotion}_{i}.jpg" for i in range(count)]  # three images a person
            for name in names:
                (images / name).touch()
            who = {**annotator, "faceExp": emotion}
            records = [{"filename": name, "gender": "남", "age": 20, "isProf": "일반인",
                        "faceExp_uploader": emotion, "bg_uploader": "실내", "annot_A": who, "annot_B": who,
                        "annot_C": who} for name in names]
            (labels / label_file(word, emotion)).write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
            written += count
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-class", type=int, default=4160)
    parser.add_argument("--valid-per-class", type=int, default=720)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from ablation.data import aihub
    from ablation.core import DataSpec

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "aihub"
        records = write_layout(root, args.train_per_class, args.valid_per_class)
        spec = DataSpec(dataset="aihub", root=root)
        times = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            index = aihub.read(spec)
            times.append(time.perf_counter() - began)
        if len(index.items) != records or index.skipped:  # a fast read of the wrong thing measures nothing
            raise SystemExit(f"indexed {len(index.items)} of {records} records, {len(index.skipped)} skipped")

    best, first = min(times), times[0]
    rate = records / best
    result = {"records": records, "train_per_class": args.train_per_class, "valid_per_class": args.valid_per_class,
              "seconds_first": first, "seconds_best": best, "records_per_s": rate,
              "target_records_per_s": TARGET, "meets_target": rate >= TARGET}
    lines = [
        (f"{records:,} AI-HUB records (6 classes, {args.train_per_class} training and {args.valid_per_class} "
         f"validation each) indexed in {best:.2f} s (first read {first:.2f} s): {rate:,.0f} records/s"),
        f"target >= {TARGET:,.0f} records/s: {'met' if rate >= TARGET else 'NOT met'}",
    ]
    publish("aihub_index", result, lines)


if __name__ == "__main__":
    main()
