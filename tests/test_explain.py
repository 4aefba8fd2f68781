"""`ablate explain` on a tiny study trained for real: the figures, the cue scores, bad input."""

import json

import numpy as np
import pytest
import ray
from mlflow.tracking import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from ablation.cli import app

runner = CliRunner()


@pytest.fixture
def trained(tiny_spec, tmp_path):
    """Two finished runs (vanilla and layer4) of the tiny study, in their own store."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = runner.invoke(app, ["run", str(tiny_spec), "--tracking-uri", uri, "--storage", str(tmp_path / "runs")])
    ray.shutdown()
    assert result.exit_code == 0, result.output
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id],
                              filter_string="tags.`ablate.kind` = 'trial'")
    return uri, sorted(r.info.run_id for r in runs)


def test_explain_draws_every_method_for_each_run_and_scores_grad_cam_against_the_cue_masks(trained, tmp_path):
    uri, run_ids = trained
    out = tmp_path / "explain"
    result = runner.invoke(app, ["explain", *run_ids, "--from-split", "test", "--n", "3", "--score",
                                 "--out", str(out), "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    pictures = sorted(out.glob("explain_*.png"))
    assert len(pictures) == 3
    with Image.open(pictures[0]) as image:
        # the input column plus one per run, six rows of maps
        assert image.width > image.height / 6 * 2 and np.asarray(image.convert("L")).std() > 10
    scores = json.loads((out / "scores.json").read_text())
    assert len(scores) == 2
    for figures in scores.values():
        assert 0 <= figures["cue_energy_all"] <= 1 and figures["pointing_game_all"] in (0, 1 / 3, 2 / 3, 1)
        assert figures["images_all"] == 3
    logged = MlflowClient(uri).get_run(run_ids[0]).data.metrics
    assert "explain_cue_energy_all" in logged


def test_explain_reads_a_folder_of_images_and_skips_what_it_cannot_read(trained, tmp_path):
    uri, run_ids = trained
    folder = tmp_path / "faces" / "happy"
    folder.mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / "a.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "explain"
    result = runner.invoke(app, ["explain", run_ids[0], "--images", str(tmp_path / "faces"), "--out", str(out),
                                 "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    assert "broken.jpg" in result.output and len(list(out.glob("explain_*.png"))) == 1
    no_cues = runner.invoke(app, ["explain", run_ids[0], "--images", str(folder), "--score", "--tracking-uri", uri])
    assert no_cues.exit_code == 2 and "cue masks" in no_cues.output
    bad_layer = runner.invoke(app, ["explain", run_ids[0], "--from-split", "test", "--layer", "layer9",
                                    "--tracking-uri", uri])
    assert bad_layer.exit_code == 2 and "layer9" in bad_layer.output


@pytest.mark.parametrize("args", [["--from-split", "test", "--images", "x"], [], ["--from-split", "holdout"]])
def test_explain_needs_exactly_one_image_source(args, tmp_path):
    result = runner.invoke(app, ["explain", "0" * 32, *args, "--tracking-uri", str(tmp_path)])
    assert result.exit_code == 2


def test_explain_of_a_run_that_does_not_exist_names_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # an empty store
    result = runner.invoke(app, ["explain", "f" * 32, "--from-split", "test", "--tracking-uri", uri])
    assert result.exit_code == 2 and "f" * 32 in result.output


def test_explain_from_a_store_that_does_not_exist_says_so_and_creates_none(tmp_path):
    result = runner.invoke(app, ["explain", "f" * 32, "--from-split", "test", "--tracking-uri", str(tmp_path / "x")])
    assert result.exit_code == 2 and "no MLflow store" in result.output and not (tmp_path / "x").exists()
