"""The MLflow UI of a study store: the command that serves it, its address, the saved view of each
study's runs (grouped by arm) and the link that opens it."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ablation.core.names import LATENCY_MS, MACS, PARAMS_TOTAL, TEST_ACCURACY, TEST_MACRO_F1, best
from ablation.tracking.store import StoreNotFound, StoreUnusable, check_store, connect_to_read, sqlite_path

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

VIEW_KEY = "ablate"  # the key of the saved view ablate keeps on each study's experiment (see `study_view`)
VIEW_TAG = "mlflow.sharedViewState."  # + a key: the MLflow UI's saved (shared) run-table views
VIEW_NAME = "ablate: trials by arm"


def server_command(uri: str, *, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The `mlflow server` command line for a local store, serving its artifacts too."""
    # The registry named (MLflow says it lacks one otherwise) and uvicorn's INFO lines, a request each, kept
    # out of the terminal: `ablate ui` prints where to go once the server answers, and errors still show.
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--registry-store-uri", uri,
               "--host", host, "--port", str(port), "--workers", "1", "--uvicorn-opts", "--log-level warning"]
    db = sqlite_path(uri)
    if db is not None:  # artifacts beside the store, as ablate writes them
        command += ["--artifacts-destination", (db.parent / "artifacts").as_uri()]
    return command


def ui_command(uri: str) -> str:
    """What to type to open the MLflow UI on this store (it listens on loopback only)."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"ablate ui --tracking-uri {uri}"


def ui_address(uri: str, *, host: str = "127.0.0.1", port: int = 5000) -> str:
    """Where the MLflow UI of this store is: the server itself, or `ablate ui`'s address for a local store."""
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"


def study_view(axes: list[str], metric: str, mode: str) -> dict[str, Any]:
    """The MLflow UI's runs table as a person wants a study: every trial grouped by its arm, each group
    showing its seeds' mean, sorted by the study's metric; the axes, the ranking metric, the test scores
    and the costs as columns; the parent run (the study's outcome) in the group of runs without an arm.

    The state's keys are MLflow 3.17.2's UI (read from its bundle, mlflow/server/js/build): the search
    facets `searchFilter`, `orderByKey` and `orderByAsc`; the table's `selectedColumns` (canonical keys,
    "params.`name`"), `columnOrder` and `columnWidths` (by the grid's column ids); `groupBy`
    ({aggregateFunction: min, max or average; groupByKeys: [{mode: param, tag or dataset; groupByData}]});
    `groupsExpanded` (group id -> open: groups start open, except the group of runs without the key,
    id "param.arm", which is opened here, as it holds the parent); and `useGroupedValuesInCharts`."""
    def column(kind: str, name: str) -> str:
        return f"{kind}.`{name}`"

    # The trials' ranking metric, test scores and costs. What the parent alone carries (best.mean and its
    # interval, the `ablate.best` tag, the dataset input) is on its own page: as columns it showed "-" on
    # every trial's row.
    metrics = [best(metric), TEST_MACRO_F1, TEST_ACCURACY, PARAMS_TOTAL, MACS, LATENCY_MS]
    # No seed column: a run's name has its seed, and a group row would show the seeds' mean.
    params = [column("params", a) for a in axes if a != "arm"]
    columns = [*params, *(column("metrics", m) for m in metrics)]
    name = column("attributes", "Run Name")
    return {"searchFilter": "", "orderByKey": column("metrics", best(metric)), "orderByAsc": mode == "min",
            "selectedColumns": columns,
            # The grid's own column ids, in the order shown ("0": the checkbox, "runDateAndNestInfo": Created);
            # unlisted, a section's columns come in alphabetical order.
            "columnOrder": ["0", name, *columns, "runDateAndNestInfo", "duration"],
            "columnWidths": {name: 270, **{p: 140 for p in params}, **{column("metrics", m): 110 for m in metrics}},
            "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "param", "groupByData": "arm"}]},
            "groupsExpanded": {"param.arm": True}, "useGroupedValuesInCharts": True, "hideEmptyCharts": True}


def save_view(client: MlflowClient, experiment_id: str, view: Mapping[str, Any]) -> None:
    """Keep `view` as the experiment's saved view VIEW_KEY, in the envelope MLflow 3.17's UI writes
    ({name, createdAt, updatedAt, state}: a JSON string), so that `study_link` opens it and the UI lists it."""
    now = int(time.time() * 1000)
    client.set_experiment_tag(experiment_id, VIEW_TAG + VIEW_KEY, json.dumps(
        {"name": VIEW_NAME, "createdAt": now, "updatedAt": now, "state": json.dumps(view)}))


def study_link(address: str, experiment_id: str) -> str:
    """A link that opens a study in the MLflow UI at `address` as `study_view` describes: the model-training
    view (`workflowType=machine_learning`; the UI's own default is its GenAI view) of the study's runs
    tab, with ablate's saved view (`viewStateShareKey`). Read from MLflow 3.17.2's UI, whose router is a
    hash router and which keeps the share key only on the runs tab's own route."""
    return (f"{address}/#/experiments/{experiment_id}/runs"
            f"?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}")


def study_links(uri: str, address: str) -> dict[str, str]:
    """Each study of a store (an experiment with ablate's saved view) -> its `study_link`; none if the
    local store does not exist yet (it is not created here)."""
    from mlflow.exceptions import MlflowException

    try:
        check_store(uri, writing=False)  # a server that does not answer is not waited for (MLflow: minutes)
        experiments = connect_to_read(uri).search_experiments(order_by=["last_update_time DESC"])
    except (StoreUnusable, StoreNotFound, MlflowException, OSError):
        return {}
    return {e.name: study_link(address, e.experiment_id) for e in experiments if VIEW_TAG + VIEW_KEY in e.tags}
