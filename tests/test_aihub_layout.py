"""The AI-HUB layout writer behind `ablate data generate`: the same files for a seed, images of the size
asked with each annotator's box around the face, annotators who disagree now and then yet never move a
face out of its class, and as many photos per class as `ablate data summary` then counts."""

import json

from PIL import Image

from ablation.data import aihub_layout
from ablation.data.records import EMOTIONS, UNUSED_CLASS
from aihub_files import FACE, KOREAN, SIZE, TRAIN, VALID, image_dir, read, records


def test_the_writer_is_deterministic_for_a_seed(tmp_path, generated):
    aihub_layout.write(tmp_path / "again", per_class=TRAIN, valid_per_class=VALID, image_size=SIZE,
                       face_size=FACE, seed=3, disagreement=0.0)
    written = sorted(p.relative_to(generated) for p in generated.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    assert all((generated / p).read_bytes() == (tmp_path / "again" / p).read_bytes() for p in written)


def test_the_writer_draws_images_of_the_size_asked_with_boxes_around_the_face(generated):
    recs = records(generated, "Validation", "기쁨")
    assert len(recs) == VALID and {"filename", "gender", "age", "isProf", "faceExp_uploader", "bg_uploader",
                                   "annot_A", "annot_B", "annot_C"} <= set(recs[0])
    for rec in recs:
        with Image.open(image_dir(generated, "Validation", "기쁨") / rec["filename"]) as image:
            assert image.size == SIZE and image.format == "JPEG"
        for annotator in ("annot_A", "annot_B", "annot_C"):
            box = rec[annotator]["boxes"]
            assert 0 <= box["minX"] < box["maxX"] <= SIZE[0] and 0 <= box["minY"] < box["maxY"] <= SIZE[1]
            assert FACE / 2 < box["maxX"] - box["minX"] <= FACE + 6
    per_subject = {}
    for item in read(generated).items:
        per_subject[item.subject] = per_subject.get(item.subject, 0) + 1
    assert max(per_subject.values()) > 1  # people have several images


def test_the_writers_annotators_sometimes_disagree(tmp_path):
    aihub_layout.write(tmp_path, per_class=4, valid_per_class=1, image_size=SIZE, face_size=FACE, seed=1)
    said = [(rec["faceExp_uploader"], rec[a]["faceExp"]) for emotion in KOREAN.values()
            for rec in records(tmp_path, "Training", emotion) for a in ("annot_A", "annot_B", "annot_C")]
    assert all(uploader == emotion for emotion in KOREAN.values()
               for uploader in (rec["faceExp_uploader"] for rec in records(tmp_path, "Training", emotion)))
    assert 0 < sum(u != a for u, a in said) < len(said) / 3


def test_the_writer_yields_exactly_per_class_images_of_each_class_however_often_annotators_disagree(tmp_path):
    # Readers label a face by the annotators' majority: two votes for one other class used to move it.
    aihub_layout.write(tmp_path, per_class=10, valid_per_class=4, image_size=(64, 64), face_size=32, seed=0,
                       disagreement=0.9)
    for label_from in ("majority", "uploader"):
        index = read(tmp_path, label_from=label_from)
        counts = index.counts()
        assert counts["train"] == dict.fromkeys(EMOTIONS, 10)
        assert all(counts["val"][c] + counts["test"][c] == 4 for c in EMOTIONS), counts
        assert index.skipped_by_reason() == {UNUSED_CLASS: 14}  # 당황, 10 + 4
    said = [rec[a]["faceExp"] != rec["faceExp_uploader"] for emotion in KOREAN.values()
            for rec in records(tmp_path, "Training", emotion) for a in ("annot_A", "annot_B", "annot_C")]
    assert sum(said) > len(said) / 3  # they disagree often, yet never two of them on one other class


def test_data_generate_writes_the_number_per_class_that_data_summary_counts(tmp_path):
    from typer.testing import CliRunner

    from ablation.cli.main import app

    root = tmp_path / "aihub"
    written = CliRunner().invoke(app, ["data", "generate", "--root", str(root), "--per-class", "10",
                                       "--valid-per-class", "4", "--width", "64", "--height", "64"])
    assert written.exit_code == 0, written.output
    assert "10 training and 4 validation photos" in " ".join(written.output.split())
    summary = CliRunner().invoke(app, ["data", "summary", "--dataset", "aihub", "--root", str(root), "--json"])
    counts = json.loads(summary.output)["counts"]
    assert counts["train"] == dict.fromkeys(EMOTIONS, 10)
    assert all(counts["val"][c] + counts["test"][c] == 4 for c in EMOTIONS), counts
