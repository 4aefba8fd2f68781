"""The store's side of the `keep_models` policy: which runs of an arm keep their trained weights
(`MODEL_FILE`), and removing the weights of runs that better seeds of their arm have superseded."""

from __future__ import annotations

from ablation.core.names import MODEL_FILE, ModelKept, Tag, best
from ablation.tracking.reading import TrialRecord
from ablation.tracking.store import connect, connect_to_read


def _with_weights(parent_run_id: str, arm: str | None = None) -> str:
    """The filter for a study's runs that keep their weights (of one arm, if given)."""
    where = f"tags.`{Tag.PARENT}` = '{parent_run_id}' and tags.`{Tag.MODEL}` = '{ModelKept.KEPT}'"
    return where if arm is None else f"{where} and params.arm = '{arm}'"


def kept_models(uri: str, experiment_id: str, parent_run_id: str, arm: str, metric: str) -> list[tuple[str, float]]:
    """The runs of one arm of a study that keep their weights, as (run id, `best(metric)`)."""
    runs = connect(uri).search_runs([experiment_id], filter_string=_with_weights(parent_run_id, arm))
    return [(r.info.run_id, r.data.metrics.get(best(metric), float("nan"))) for r in runs]


def drop_superseded(uri: str, experiment_id: str, parent_run_id: str, *, keep: int | None, metric: str,
                    mode: str) -> int:
    """Remove the weights of every run beyond the `keep` best of its arm (by `best(metric)`, in `mode`)
    that kept them, and say so on the run; returns how many were removed. `keep=None` keeps all."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    if keep is None:
        return 0
    client = connect(uri)
    runs = client.search_runs([experiment_id], max_results=50_000, filter_string=_with_weights(parent_run_id))
    by_arm: dict[str, list] = {}
    for run in runs:
        by_arm.setdefault(run.data.params.get("arm", ""), []).append(run)
    dropped = 0
    for arm_runs in by_arm.values():
        arm_runs.sort(key=lambda r: _rank(r.data.metrics.get(best(metric)), mode))
        for run in arm_runs[keep:]:
            get_artifact_repository(run.info.artifact_uri, tracking_uri=uri).delete_artifacts(MODEL_FILE)
            client.set_tag(run.info.run_id, Tag.MODEL, ModelKept.SUPERSEDED)
            dropped += 1
    return dropped


def _rank(value: float | None, mode: str) -> float:
    """A sort key that puts the best value first and a missing or nan one last."""
    if value is None or value != value:
        return float("inf")
    return -value if mode == "max" else value


def models_of_arm(uri: str, run_id: str) -> list[TrialRecord]:
    """The runs of the same study and arm as run `run_id` that keep their weights."""
    client = connect_to_read(uri)
    run = client.get_run(run_id)
    parent, arm = run.data.tags.get(Tag.PARENT), run.data.params.get("arm")
    if parent is None or arm is None:
        return []
    return [TrialRecord.of(r) for r in client.search_runs([run.info.experiment_id],
                                                          filter_string=_with_weights(parent, arm))]
