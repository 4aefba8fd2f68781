"""A study's folder and what it keeps there: the context its trials share, and the state `ablate resume`
continues it from; and what running a study came to."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from ablation import tracking
from ablation.core import SpecError, Study, StudySpec


class StateError(ValueError):
    """A study folder without a readable state file: not a study folder, damaged, or from another version."""


@dataclass(frozen=True)
class StudyContext:
    """What every trial of a study shares, shipped once through Ray's object store."""

    spec: dict[str, Any]
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    storage: str  # the study's folder or URI: trials keep their checkpoints under it
    # The driver's hold on the study (a server lease's token and ttl; none for a local lock): a trial
    # writes nothing once another driver has taken the study over (`tracking.lease_check`).
    lease_token: str = ""
    lease_ttl: float = 0.0
    memory_mb: float = 0.0  # on a cluster, what each trial asks Ray for (`memory_fit`); 0: CPUs alone decide


@dataclass
class StudyOutcome:
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    storage: str  # the study's folder or URI
    errors: dict[str, str] = field(default_factory=dict)  # trial name -> error (a memory kill's `cause`)
    # Trials whose worker Ray's memory monitor killed, name -> `memory_kills.cause`: retried, or in `errors`.
    memory_kills: dict[str, str] = field(default_factory=dict)
    diverged: list[str] = field(default_factory=list)  # trials whose loss blew up (recorded, not retried)
    stopped_early: dict[str, int] = field(default_factory=dict)  # trial name -> the epoch the scheduler stopped it at
    unfinished: list[str] = field(default_factory=list)  # trials an interruption stopped or never started
    already_finished: int = 0  # trials an earlier run of the study finished, not run again
    race: dict = field(default_factory=dict)  # a race's decisions, arm -> racing.Decision


STATE_FILE = "ablate_study.json"


def storage_location(storage: str | None) -> str:
    """Where Tune keeps a study's trials: a `scheme://` URI as given (s3://, gs://: any pyarrow file
    system), else a local folder made absolute (Tune requires it); default ./ablate_runs."""
    if storage and "://" in storage:
        return storage.rstrip("/")
    return str(Path(storage or "ablate_runs").resolve())


@dataclass(frozen=True)
class StudyState:
    """What `ablate resume` needs to continue a study whose driver died; kept in the study's folder."""

    context: StudyContext
    trials: list[str]  # ids of the trials this run of the study started

    def save(self, folder: str) -> None:
        fs, path = pafs.FileSystem.from_uri(folder)
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(f"{path}/{STATE_FILE}") as out:
            out.write(json.dumps({**asdict(self.context), "trials": self.trials}, indent=1).encode())

    @classmethod
    def load(cls, folder: str) -> StudyState:
        fs, path = pafs.FileSystem.from_uri(folder)
        try:
            with fs.open_input_stream(f"{path}/{STATE_FILE}") as stream:
                saved = json.loads(stream.read())
            trials = saved.pop("trials")
            saved.pop("costs", None)  # what earlier versions measured before the trials; trials count it now
            return cls(StudyContext(**saved), trials)
        except FileNotFoundError:
            raise StateError(f"{folder} is not a study folder: it has no {STATE_FILE} "
                                "(expected ./ablate_runs/<study>, or the --storage of `ablate run`)") from None
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise StateError(f"{folder}/{STATE_FILE} is damaged ({type(err).__name__}: {err}); expected the JSON "
                                "that `ablate run` writes. Run the study's spec again with `ablate run`: finished "
                                "trials are kept") from None

    def study(self, folder: str) -> Study:
        """The study as saved (its spec was valid when the study started), expanded again."""
        from pydantic import ValidationError

        try:
            return Study.from_spec(StudySpec.model_validate(self.context.spec))
        except (ValidationError, SpecError) as err:
            count = f"{err.error_count()} error(s)" if isinstance(err, ValidationError) else str(err)
            raise StateError(f"{folder}/{STATE_FILE}: its spec no longer validates ({count}); run the study's "
                             "spec again with `ablate run`") from None


def config_of(spec: StudySpec, record: tracking.TrialRecord) -> dict[str, Any]:
    """The Tune config of a drawn trial, from its logged params (values matched to the space's own): what a
    resumed search continues."""
    axes = {}
    for key, values in spec.search.space.items():
        logged = record.params.get(key)
        axes[key] = next(json.dumps(v) for v in values if tracking.as_param(
            json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else v) == logged)  # as spec.params() logs
    return {"axes": axes, "seed": int(record.params["seed"])}
