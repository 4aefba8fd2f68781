"""What tests read back of a study's trials from MLflow (shared by the fault tests)."""

from mlflow.tracking import MlflowClient


def trial_runs(uri: str, study: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(study)
    return [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("ablate.kind") == "trial"]


def epochs_logged(uri: str, run) -> list[int]:
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, "train_loss"))
