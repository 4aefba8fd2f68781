"""Trained weights kept by the study's policy: storage that does not grow with seeds."""

import math

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ablation import tracking
from ablation.cli.main import app

pytestmark = pytest.mark.slow  # each test runs real studies under Ray


def trial_runs(uri: str, name: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    return [r for r in client.search_runs([experiment.experiment_id])
            if r.data.tags.get(tracking.Tag.KIND) == tracking.Kind.TRIAL]


def has_model(uri: str, run) -> bool:
    return tracking.MODEL_FILE in [a.path for a in MlflowClient(uri).list_artifacts(run.info.run_id)]


def test_by_default_each_arm_keeps_the_weights_of_its_best_seed_only_and_explain_names_them(
        tiny_spec, tmp_path, shared_ray):
    spec = yaml.safe_load(tiny_spec.read_text())
    spec["search"]["seeds"] = [0, 1, 2]
    spec["data"] |= {"image_size": 16, "train_per_class": 2, "val_per_class": 2, "test_per_class": 1}
    tiny_spec.write_text(yaml.safe_dump(spec))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = CliRunner().invoke(app, ["run", str(tiny_spec), "--tracking-uri", uri, "--storage", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output

    runs = trial_runs(uri, "tiny")
    assert len(runs) == 6
    for arm in ("placement=none", "placement=layer4"):
        seeds = [r for r in runs if r.data.params["arm"] == arm]
        kept = [r for r in seeds if has_model(uri, r)]
        assert len(kept) == 1, arm
        assert kept[0].data.tags[tracking.Tag.MODEL] == tracking.ModelKept.KEPT
        best = max(r.data.metrics["best_val_macro_f1"] for r in seeds)
        assert kept[0].data.metrics["best_val_macro_f1"] == best
        for dropped in (r for r in seeds if r is not kept[0]):
            assert dropped.data.tags[tracking.Tag.MODEL] in (tracking.ModelKept.NOT_KEPT, tracking.ModelKept.SUPERSEDED)

    dropped = next(r for r in runs if r.data.params["arm"] == "placement=layer4" and not has_model(uri, r))
    kept = next(r for r in runs if r.data.params["arm"] == "placement=layer4" and has_model(uri, r))
    result = CliRunner().invoke(app, ["explain", dropped.info.run_id, "--from-split", "test", "--n", "1",
                                      "--tracking-uri", uri, "--out", str(tmp_path / "explain")])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "kept no weights" in said and kept.info.run_id in said
    assert not (tmp_path / "explain").exists()


def logged_run(client, experiment_id, parent_id, arm, score, model=True):
    run = client.create_run(experiment_id, tags={tracking.Tag.PARENT: parent_id, tracking.Tag.KIND: tracking.Kind.TRIAL})
    client.log_param(run.info.run_id, "arm", arm)
    client.log_metric(run.info.run_id, "best_val_loss", score)
    if model:
        client.log_text(run.info.run_id, "weights", tracking.MODEL_FILE)
        client.set_tag(run.info.run_id, tracking.Tag.MODEL, tracking.ModelKept.KEPT)
    return run.info.run_id


@pytest.mark.parametrize(("keep", "kept"), [(1, {"a0.1"}), (2, {"a0.1", "a0.3"}), (None, {"a0.1", "a0.3", "a0.9", "anan"})])
def test_the_driver_drops_the_weights_of_seeds_beyond_the_k_best_of_their_arm_in_the_studys_mode(tmp_path, keep, kept):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("keep", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(experiment_id).info.run_id
    scores = {"a0.9": 0.9, "a0.1": 0.1, "anan": math.nan, "a0.3": 0.3}  # a loss: lower is better
    ids = {name: logged_run(client, experiment_id, parent, "a", score) for name, score in scores.items()}
    other = logged_run(client, experiment_id, parent, "b", 5.0)  # another arm's only seed stays

    dropped = tracking.drop_superseded(uri, experiment_id, parent, keep=keep, metric="val_loss", mode="min")

    assert dropped == len(scores) - len(kept)
    for name, run_id in ids.items():
        run = client.get_run(run_id)
        assert has_model(uri, run) == (name in kept), name
        assert run.data.tags[tracking.Tag.MODEL] == (tracking.ModelKept.KEPT if name in kept
                                                    else tracking.ModelKept.SUPERSEDED)
    assert has_model(uri, client.get_run(other))
