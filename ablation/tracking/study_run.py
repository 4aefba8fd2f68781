"""What a study's parent run says of it: its own settings as params, its provenance, its spec, its
data as dataset inputs, what the report reads back, the race's decisions and the study's outcome.
The caller computes these (the data's digest, the best arm's interval, the race's states); this
module writes them."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ablation.core.names import (EXPERIMENT_KIND, MACHINE_LEARNING, RACE_ARTIFACT, SKIPPED_ARTIFACT, SPEC_ARTIFACT, Kind, Status,
                    Tag, race_state)
from ablation.tracking.provenance import study_provenance
from ablation.tracking.runs import TrackedRun
from ablation.tracking.store import connect, connect_to_write, experiment, latest_parent
from ablation.tracking.ui import save_view, study_view


class DataDigest(Protocol):
    """What the parent run logs of the study's data (`ablation.data.digest.DataDigest` is one): the
    caller computes it, tracking only writes it."""

    name: str
    digest: str
    profile: Mapping[str, Any]
    source_type: str
    source: Mapping[str, str]

_PARAM_LIMIT = 6000  # characters MLflow keeps of a param


def study_params(spec, arms: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The parent run's params (`spec` a StudySpec, `arms` its design's (label, overrides)): the study's own settings, not the value a swept key
    has in the spec (every trial overrides it, and the parent's would read as theirs in a compare
    view). Each key the design varies is logged instead as `search.space.<key>`, the JSON list of its
    values; a key every arm sets alike (an ofat centre's, say) as that value."""
    # The options of every attention type an arm uses are the study's settings; the others', not.
    swept = spec.search.space.get("model.attention", [])
    swept = [*(swept if isinstance(swept, list) else []), *(o.get("model.attention") for _, o in arms)]
    params = spec.logged_params(attentions=[a for a in swept if isinstance(a, str)])
    if spec.search.method != "grid" or spec.search.design == "grid":
        varied = {key: list(values) for key, values in spec.search.space.items()}
    else:  # ofat and loco arms each change some keys: their values across the arms, the spec's where unchanged
        varied = {}
        for key in dict.fromkeys(k for _, overrides in arms for k in overrides):
            default = params[key] if key in params else spec.get(key)
            for value in (overrides.get(key, default) for _, overrides in arms):
                if value not in varied.setdefault(key, []):
                    varied[key].append(value)
    own = {k: v for k, v in params.items() if not any(k == key or key.startswith(f"{k}.") for key in varied)}
    fixed = {key: values[0] for key, values in varied.items() if len(values) == 1 and key in params}
    swept = {f"search.space.{key}": json.dumps(values)[:_PARAM_LIMIT]
             for key, values in varied.items() if key not in fixed}
    return own | fixed | swept


def dataset_input(data: DataDigest) -> Any:
    """The study's data as an MLflow dataset input: its name, its digest (see `ablation.data.digest`),
    where it came from (the code that generates it, or its folder), and its profile."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source = CodeDatasetSource(dict(data.source)) if data.source_type == "code" else \
        get_dataset_source_from_json(json.dumps(dict(data.source)), data.source_type)
    dataset = Dataset(name=data.name, digest=data.digest, source_type=source._get_source_type(),
                      source=source.to_json(), profile=json.dumps(data.profile))
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "train/val/test")])


def open_study(uri: str, name: str, *, params: Mapping[str, Any], spec_yaml: str, description: str | None = None,
               argv: Sequence[str] = (), spec_path: Path | None = None) -> tuple[str, TrackedRun]:
    """The study's experiment and parent run: the latest one if the study ran before (so a re-run
    adds to it), else new ones. Returns (experiment_id, parent run), the run marked RUNNING. The run
    gets `params`, where its code came from and what ran it (`study_provenance` of the command line
    `argv` and the spec file `spec_path`: a re-run says its own), and `description` as its note and the
    experiment's; the experiment opens in the MLflow UI's model-training view, not its GenAI one."""
    client = connect_to_write(uri)
    experiment_id = experiment(client, uri, name)
    earlier = latest_parent(client, experiment_id)
    if earlier:
        parent = TrackedRun(client, earlier.info.run_id)
        client.update_run(parent.run_id, status=Status.RUNNING)
        # MLflow params never change; a re-run with more seeds or arms keeps the first values.
        params = {k: v for k, v in params.items() if k not in earlier.data.params}
    else:
        run = client.create_run(experiment_id, run_name=name, tags={Tag.KIND: Kind.STUDY})
        parent = TrackedRun(client, run.info.run_id)
    parent.log(params=params, tags=study_provenance(argv, spec_path) | ({Tag.NOTE: description} if description else {}))
    parent.log_text(spec_yaml, SPEC_ARTIFACT)
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, MACHINE_LEARNING)
    if description:
        client.set_experiment_tag(experiment_id, Tag.NOTE, description)
    return experiment_id, parent


def reopen_study(uri: str, parent_run_id: str) -> TrackedRun:
    """A study's parent run, marked RUNNING again (to resume it)."""
    client = connect(uri)
    client.update_run(parent_run_id, status=Status.RUNNING)
    return TrackedRun(client, parent_run_id)


def describe_study(parent: TrackedRun, *, axes: list[str], design: str, metric: str, mode: str, storage: str,
                   skipped: list[dict[str, str]], experiment_id: str | None = None,
                   datasets: Iterable[DataDigest] = (), data_digests: Mapping[str, str] = {}) -> None:
    """Tag a study's parent run with what its report reads back, and list the inputs its data skipped;
    log each of `datasets` (one per distinct DataSpec: `ablation.data.digest.digests`) as its input, and
    `data_digests` (data settings' key -> digest, every run of the study's) as `Tag.DATA_DIGESTS`; and
    keep the experiment's saved view of the study (`study_view`), which `study_link` opens."""
    if skipped:
        parent.log_text(json.dumps(skipped, indent=1), SKIPPED_ARTIFACT)
    parent.set_tags({Tag.DATA_SKIPPED: len(skipped), Tag.AXES: ",".join(axes), Tag.DESIGN: design,
                     Tag.METRIC: metric, Tag.MODE: mode, Tag.STORAGE: storage}
                    | ({Tag.DATA_DIGESTS: json.dumps(dict(data_digests), sort_keys=True)} if data_digests else {}))
    inputs = [dataset_input(d) for d in datasets]
    if inputs:
        parent.client.log_inputs(parent.run_id, datasets=inputs)
    if experiment_id is not None:
        save_view(parent.client, experiment_id, study_view(axes, metric, mode))


def log_race(parent: TrackedRun, baseline: str, states: Mapping[str, str], *, decided: int,
             decisions: Sequence[Mapping[str, Any]]) -> None:
    """A race's decisions on its parent run: tags the UI lists (`decided` of the arms decided; the arms in
    each state, from `states`, arm -> state) and race.json (`decisions`, one mapping per arm; a
    non-finite number is written as null)."""
    by_state: dict[str, list[str]] = {}
    for arm, state in states.items():
        by_state.setdefault(state, []).append(arm)
    parent.set_tags({Tag.RACE_BASELINE: baseline, Tag.RACE_DECIDED: f"{decided} of {len(states)} arms",
                     **{race_state(state): "; ".join(arms) for state, arms in by_state.items()}})
    rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
            for d in decisions]
    parent.log_text(json.dumps({"baseline": baseline, "decisions": rows}, indent=1), RACE_ARTIFACT)


def finish_study(parent: TrackedRun, *, failed: int, diverged: int, unfinished: int,
                 outcome: Mapping[str, float] = {}, best_arm: str | None = None) -> None:
    """Count the trials that did not finish on the parent run, with the study's `outcome` as its metrics
    (the best arm's mean and interval, the seeds run, the trial-hours) and `best_arm` as `Tag.BEST`; then
    end it: KILLED while any trial is left to run (a resume continues it), FAILED if any failed or diverged."""
    best = {} if best_arm is None else {Tag.BEST: best_arm}
    parent.log(tags={Tag.TRIALS_FAILED: failed, Tag.TRIALS_DIVERGED: diverged, Tag.TRIALS_UNFINISHED: unfinished,
                     **best}, metrics=outcome)
    parent.finish(Status.KILLED if unfinished else Status.FAILED if failed or diverged else Status.FINISHED)
