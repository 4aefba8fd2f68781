"""The setup and provenance section of a report: what a study trained, on what data, when, and from
which code, read back from MLflow (the trials' params and tags, the parent run's, and its spec.yaml),
so that a reader of the report can tell how its numbers were made without the machine that made them."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from ablation.core.datasets import DATASETS
from ablation.tracking import PEAK_RSS_MB, Tag, TrialRecord, as_param

NOT_RECORDED = "not recorded"

# The settings a methods section states, as (label, the spec's dotted key).
SETTINGS = (
    ("dataset", "data.dataset"),
    ("image size (px)", "data.image_size"),
    ("train images per class", "data.train_per_class"),
    ("validation images per class", "data.val_per_class"),
    ("test images per class", "data.test_per_class"),
    ("data seed", "data.seed"),
    ("architecture", "model.arch"),
    ("attention", "model.attention"),
    ("placement", "model.placement"),
    ("epochs", "train.epochs"),
    ("batch size", "train.batch_size"),
    ("optimizer", "train.optimizer"),
    ("learning rate", "train.lr"),
    ("momentum", "train.momentum"),
    ("weight decay", "train.weight_decay"),
    ("schedule", "train.schedule"),
    ("precision", "train.precision"),
)
PER_CLASS = {"data.train_per_class", "data.val_per_class", "data.test_per_class"}

# MLflow's own tags for where a run's code came from; shown whether or not they were set, so a
# report without them says so.
SOURCE_TAGS = (
    ("git commit", "mlflow.source.git.commit"),
    ("git branch", "mlflow.source.git.branch"),
    ("git repository", "mlflow.source.git.repoURL"),
    ("source", "mlflow.source.name"),
    ("user", "mlflow.user"),
)
# ablate's tags that describe the study's design, a trial's attempts and its fate, shown elsewhere in
# the report or of no use to a reader; any other `ablate.*` tag (versions, host, hardware) is provenance
# and shown here. Listed, not taken as all of `Tag`, since the provenance tags are members of it too.
_CONTRACT = {str(t) for t in (
    Tag.KIND, Tag.TRIAL_ID, Tag.LEASE, Tag.AXES, Tag.DESIGN, Tag.METRIC, Tag.MODE, Tag.STORAGE, Tag.DATA_SKIPPED,
    Tag.TRIALS_FAILED, Tag.TRIALS_DIVERGED, Tag.TRIALS_UNFINISHED, Tag.RACE_BASELINE, Tag.RACE_DECIDED,
    Tag.NODE_ID, Tag.PID, Tag.DEVICE, Tag.GPU_IDS, Tag.ATTEMPTS, Tag.RESUMED_FROM_EPOCH, Tag.FAILURE, Tag.ERROR,
    Tag.LAST_FAILURE, Tag.STOPPED_EARLY, Tag.STOPPED_AT_EPOCH, Tag.MODEL, Tag.BEST)}


def _nested(tree: Mapping[str, Any] | None, key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _values(records: Iterable[TrialRecord], get) -> list[str]:
    """The distinct values `get(record)` gives over `records`, in their first order, Nones left out."""
    seen: dict[str, None] = {}
    for r in records:
        value = get(r)
        if value is not None:
            seen.setdefault(str(value), None)
    return list(seen)


def _joined(values: list[str], most: int = 6) -> str:
    shown = ", ".join(values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


def setting(key: str, records: list[TrialRecord], parent: Mapping[str, str], tree: Mapping[str, Any] | None,
            axes: list[str]) -> str:
    """One setting as the trials ran it (they log every key), else as the parent run or the spec has it."""
    values = _values(records, lambda r: r.params.get(key))
    if not values:
        found = parent.get(key, _nested(tree, key))
        values = [] if found is None else [str(found)]
    if not values:
        return NOT_RECORDED
    if key in PER_CLASS:
        dataset = setting("data.dataset", records, parent, tree, axes)
        values = [_default_per_class(dataset, key) if v in ("null", "None") else v for v in values]
    if len(values) > 1 or key in axes:
        # In the spec's order (its space lists them so), not the order the store returned the runs in.
        space = (tree or {}).get("search", {}) if isinstance((tree or {}).get("search"), Mapping) else {}
        planned = space.get("space", {}).get(key) if isinstance(space.get("space"), Mapping) else None
        planned = [as_param(v) for v in planned] if isinstance(planned, list) else []
        values = sorted(values, key=lambda v: (planned.index(v) if v in planned else len(planned), v))
        return f"swept: {_joined(values)}"
    return values[0]


def _default_per_class(dataset: str, key: str) -> str:
    """What a per-class limit left unset means for `dataset`: its own default (a generated set's size), or all."""
    try:

        default = DATASETS.get(dataset).default_per_class.get(key.removeprefix("data.").removesuffix("_per_class"))
    except ValueError:  # a dataset this version does not know
        default = None
    return "all" if default is None else f"{default} ({dataset}'s default)"


def _date(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC") if ms else NOT_RECORDED


def _datasets(runs: Iterable[Any]) -> list[tuple[str, str]]:
    """MLflow dataset inputs of `runs` (MLflow Run objects): name, context, digest and size where logged."""
    rows: dict[str, str] = {}
    for run in runs:
        for item in getattr(getattr(run, "inputs", None), "dataset_inputs", None) or []:
            d = item.dataset
            context = next((t.value for t in item.tags if t.key == "mlflow.data.context"), "")
            label = f"dataset input{f' ({context})' if context else ''}"
            text = f"{d.name}, digest {d.digest}"
            try:
                profile = json.loads(d.profile) if d.profile else {}
            except ValueError:
                profile = {}
            if isinstance(profile, dict) and profile:
                text += " (" + ", ".join(f"{k} {v}" for k, v in profile.items() if not isinstance(v, dict | list)) + ")"
            rows.setdefault(label, text)
    return list(rows.items())


def planned_seeds(tree: Mapping[str, Any] | None, params: Mapping[str, str]) -> int | None:
    """How many seeds the study's latest run asked of each arm: its spec.yaml says (a run with more seeds
    rewrites it), where the first run's `search.seeds` param cannot, since MLflow params never change."""
    seeds = _nested(tree, "search.seeds")
    if isinstance(seeds, list):
        return len(seeds)
    if isinstance(seeds, dict) and isinstance(seeds.get("max"), int):  # a race's budget, {start, max}
        return seeds["max"]
    return len(json.loads(params["search.seeds"])) if "search.seeds" in params else None


def setup_rows(records: list[TrialRecord], *, axes: list[str], parent_params: Mapping[str, str],
               parent_tags: Mapping[str, str], tree: Mapping[str, Any] | None, metric: str, mode: str,
               rank_by: str, runs: Iterable[Any] = (), started: int | None = None,
               ended: int | None = None) -> list[tuple[str, str]]:
    """(label, value) rows: the training setup, the seeds, the study's dates, and the code and machine
    tags its runs carry (`not recorded` where they carry none). `runs` are MLflow Run objects (the
    parent's, a trial's) whose dataset inputs are listed; `started`/`ended` the parent's times in ms."""
    rows = [(label, setting(key, records, parent_params, tree, axes)) for label, key in SETTINGS]
    # The latest run's spec.yaml first: a run that added seeds rewrote it, but not the first run's param.
    latest = _nested(tree, "search.seeds")
    seeds = json.dumps(latest) if latest is not None else parent_params.get("search.seeds")
    run_seeds = sorted({int(r.params["seed"]) for r in records if r.params.get("seed", "").lstrip("-").isdigit()})
    rows.append(("seeds planned", "not recorded" if seeds in (None, "null") else seeds))
    rows.append(("seeds run", ", ".join(map(str, run_seeds)) or "none"))
    search = _nested(tree, "search.method") or "grid"
    design = parent_tags.get(Tag.DESIGN, _nested(tree, "search.design"))
    rows.append(("search", f"{search}" + (f", {design} design" if design and design != search else "")))
    rows.append(("study metric", f"{metric} ({mode}); configurations ranked on {rank_by}"))
    rows.append(("study started", _date(started)))
    rows.append(("study ended", _date(ended) if ended else "still running, or stopped without closing its run"))
    rows.append(("trial runs", str(len(records))))
    skipped = parent_tags.get(Tag.DATA_SKIPPED)
    if skipped is not None:
        rows.append(("input files skipped", skipped))
    rows += _datasets(runs) or [("dataset input", NOT_RECORDED)]
    devices = _values(records, lambda r: r.tags.get(Tag.DEVICE))
    rows.append(("device", _joined(devices) if devices else NOT_RECORDED))
    rows.append(("trial worker memory", _worker_memory(records)))
    rows += _tags(records, parent_tags)
    return rows


def _worker_memory(records: list[TrialRecord]) -> str:
    """The peak resident memory of the worker process each trial ran in, as the trial logged it: what
    to divide a node's memory by to know how many trials fit at once."""
    peaks = sorted(r.metrics[PEAK_RSS_MB] for r in records if PEAK_RSS_MB in r.metrics)
    if not peaks:
        return NOT_RECORDED
    return f"peak RSS median {statistics.median(peaks):,.0f} MB, largest {peaks[-1]:,.0f} MB, over {len(peaks)} trials"


def _tags(records: list[TrialRecord], parent_tags: Mapping[str, str]) -> list[tuple[str, str]]:
    """The source tags MLflow defines, then every other provenance tag (versions, host, hardware)."""

    def found(key: str) -> str:
        values = [parent_tags[key]] if key in parent_tags else _values(records, lambda r: r.tags.get(key))
        return _joined(values) if values else NOT_RECORDED

    rows = [(label, found(key)) for label, key in SOURCE_TAGS]
    shown = {key for _, key in SOURCE_TAGS}
    keys = dict.fromkeys(k for tags in (parent_tags, *(r.tags for r in records)) for k in tags)
    other = [k for k in keys if k not in shown and k not in _CONTRACT
             and (k.startswith("ablate.") and not k.startswith("ablate.race.") or k.startswith("mlflow.source."))]
    rows += [(key, found(key)) for key in sorted(other)]
    if not other:
        rows.append(("versions, host and hardware", NOT_RECORDED))
    return rows
