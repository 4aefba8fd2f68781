"""Searches beyond the grid: Optuna's TPE and random sampling over the space, and schedulers that
stop weak trials early, on real Ray and MLflow."""

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ablation.cli.main import app
from ablation.core import SpecError, load_spec

pytestmark = pytest.mark.slow  # each test runs real studies under Ray

PLACEMENTS = ["none", "layer1", "layer2", "layer3", "layer4", "all"]


@pytest.fixture
def study(tmp_path, shared_ray):
    def make(**search):
        spec = {
            "name": "search",
            "model": {"arch": "resnet18", "attention": "identity_cbam"},
            "data": {"image_size": 32, "train_per_class": 8, "val_per_class": 4, "test_per_class": 4},
            "train": {"epochs": search.pop("epochs", 1), "batch_size": 16},
            "search": {"space": {"model.placement": PLACEMENTS}, "seeds": [0], **search},
            "resources": {"cpu": 1},
        }
        path = tmp_path / "search.yaml"
        path.write_text(yaml.safe_dump(spec))
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        result = CliRunner().invoke(app, ["run", str(path), "--tracking-uri", uri, "--storage", str(tmp_path / "runs")])
        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("search").experiment_id])
        return result, [r for r in runs if r.data.tags.get("ablate.kind") == "trial"]

    return make


def test_optuna_draws_placements_from_the_space_as_strings(study):
    result, runs = study(method="optuna", num_samples=3, max_concurrent=2, seeds=[0, 1])
    assert result.exit_code == 0, result.output
    assert len(runs) >= 2 and all(r.info.status == "FINISHED" for r in runs)  # a repeated draw reuses its run
    assert {r.data.params["model.placement"] for r in runs} <= set(PLACEMENTS)
    assert {r.data.params["seed"] for r in runs} <= {"0", "1"}


def test_asha_stops_weak_trials_early_and_marks_them(study):
    result, runs = study(scheduler="asha", grace_period=1, reduction_factor=2, epochs=3)
    assert result.exit_code == 0, result.output
    stopped = [r for r in runs if r.data.tags.get("ablate.stopped_early") == "true"]
    complete = [r for r in runs if "ablate.stopped_early" not in r.data.tags]
    assert stopped and complete and len(runs) == len(PLACEMENTS)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(int(r.data.tags["ablate.stopped_at_epoch"]) < 3 for r in stopped)
    assert all("test_accuracy" in r.data.metrics for r in complete)
    assert "stopped early by asha" in " ".join(result.output.split())


def test_a_sampling_method_needs_a_grid_design(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "search": {"method": "optuna", "design": "loco"}}))
    with pytest.raises(SpecError, match="search.design: design loco lists its arms"):
        load_spec(path)


@pytest.mark.parametrize("method", ["random", "optuna"])
def test_a_resumed_search_continues_its_unfinished_draw_and_draws_only_what_is_left(tmp_path, method, shared_ray):
    import json

    spec = {"name": "drawn", "model": {"arch": "resnet18", "attention": "identity_cbam"},
            "data": {"image_size": 32, "train_per_class": 8, "val_per_class": 4, "test_per_class": 4},
            "train": {"epochs": 1, "batch_size": 16},
            "search": {"method": method, "num_samples": 1, "space": {"model.placement": PLACEMENTS}, "seeds": [0]},
            # One trial at a time: a fresh draw of the same configuration must not run beside the continued one.
            "resources": {"cpu": 2}}
    path = tmp_path / "drawn.yaml"
    path.write_text(yaml.safe_dump(spec))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = CliRunner().invoke(app, ["run", str(path), "--tracking-uri", uri, "--storage", str(tmp_path / "runs")])
    assert first.exit_code == 0, first.output
    client = MlflowClient(uri)
    [drawn] = [r for r in client.search_runs([client.get_experiment_by_name("drawn").experiment_id])
               if r.data.tags.get("ablate.kind") == "trial"]
    client.set_terminated(drawn.info.run_id, "KILLED")  # as if the driver died during it
    state = tmp_path / "runs" / "drawn" / "ablate_study.json"
    saved = json.loads(state.read_text())
    saved["spec"]["search"]["num_samples"] = 2  # one more draw was still to come
    state.write_text(json.dumps(saved))

    resumed = CliRunner().invoke(app, ["resume", str(state.parent)])
    assert resumed.exit_code == 0, resumed.output
    runs = [r for r in client.search_runs([client.get_experiment_by_name("drawn").experiment_id])
            if r.data.tags.get("ablate.kind") == "trial"]
    again = client.get_run(drawn.info.run_id)
    assert again.info.status == "FINISHED" and again.data.tags["ablate.attempts"] == "2"
    assert len(runs) <= 2 and all(r.info.status == "FINISHED" for r in runs)
