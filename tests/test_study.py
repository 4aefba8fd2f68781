"""A real study end to end: a local Ray runs the trials, a SQLite MLflow store records them."""

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ablation.cli.main import app

pytestmark = pytest.mark.slow  # each test runs real studies under Ray

CLASSES = ["happy", "anger", "unrest", "wound", "sad", "neutral"]


def test_a_two_trial_study_logs_a_parent_run_with_one_child_per_trial(tiny_spec, tmp_path, shared_ray):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = CliRunner().invoke(app, ["run", str(tiny_spec), "--tracking-uri", uri,
                                      "--storage", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "ranked by best-epoch val_macro_f1" in result.output
    assert f"ablate ui --tracking-uri {uri}" in " ".join(result.output.split())

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert "spec.yaml" in [a.path for a in client.list_artifacts(parent.info.run_id)]

    assert {c.data.params["model.placement"] for c in children} == {"none", "layer4"}
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.params["seed"] == "0" and child.data.params["model.arch"] == "resnet18"
        assert child.data.params["arm"] == f"placement={child.data.params['model.placement']}"
        metrics = child.data.metrics
        for name in ("train_loss", "val_loss", "val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1"):
            assert 0 <= metrics[name] < 100, name
        assert all(f"test_f1_{c}" in metrics for c in CLASSES)
        history = client.get_metric_history(child.info.run_id, "val_macro_f1")
        assert [m.step for m in history] == [1]
        assert 300 < metrics["worker_peak_rss_mb"] < 8000  # the worker's high-water mark, in MB
    params = {c.data.params["model.placement"]: c.data.metrics["params_total"] for c in children}
    assert params["layer4"] > params["none"] == 11_179_590
    for child in children:
        added = child.data.metrics["params_added"]
        assert added == params[child.data.params["model.placement"]] - params["none"]
        assert child.data.metrics["macs"] > 0 and child.data.metrics["latency_ms"] > 0
    assert (tmp_path / "runs" / "tiny").is_dir()
