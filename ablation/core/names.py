"""The run contract's names: every tag ablate writes or reads (`Tag`), what a run is and how it ended
(`Kind`, `Status`, `Failure`, `ModelKept`, `Outcome`), the metric keys read back and the artifacts.

Layout: one experiment per study name, one parent run per `ablate run`, one nested child run per trial
(tag `mlflow.parentRunId`, so the UI groups them). Params are the spec's dotted keys; metrics are the
engine's and the accounting's own keys, logged per epoch with `step=epoch`. Nothing here imports
MLflow: the engine and the report use these names without loading it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Tag(StrEnum):
    """Every tag ablate writes or reads."""

    PARENT = "mlflow.parentRunId"  # MLflow's own: the UI nests a child run under it
    KIND = "ablate.kind"  # a `Kind`
    TRIAL_ID = "ablate.trial_id"
    LEASE = "ablate.lease"  # on the experiment, on a server: the driver that holds the study
    # A study's parent run: what the report reads back, and how many trials did not finish.
    AXES = "ablate.axes"  # comma-separated
    DESIGN = "ablate.design"
    METRIC = "ablate.metric"
    MODE = "ablate.mode"
    STORAGE = "ablate.storage"
    DATA_SKIPPED = "ablate.data_skipped"
    # On the parent run, JSON {data settings' key: digest} of the data its trials trained on: a re-run or
    # resume over data changed on disk since is refused (`driver.data_check`).
    DATA_DIGESTS = "ablate.data_digests"
    TRIALS_FAILED = "ablate.trials_failed"
    TRIALS_DIVERGED = "ablate.trials_diverged"
    TRIALS_UNFINISHED = "ablate.trials_unfinished"
    RACE_BASELINE = "ablate.race.baseline"  # a race's: the arm the others were decided against
    RACE_DECIDED = "ablate.race.decided"  # "4 of 5 arms" better, worse or equivalent; then a `race_state` tag each
    # A trial's run: where its latest attempt ran, and how the run ended.
    NODE_ID = "ablate.node_id"
    PID = "ablate.pid"
    DEVICE = "ablate.device"
    GPU_IDS = "ablate.gpu_ids"
    ATTEMPTS = "ablate.attempts"
    RESUMED_FROM_EPOCH = "ablate.resumed_from_epoch"
    CHECKPOINT_SET_ASIDE = "ablate.checkpoint_set_aside"  # an unreadable checkpoint, renamed: the trial began again
    FAILURE = "ablate.failure"  # a `Failure`; dropped when a later attempt goes on
    ERROR = "ablate.error"
    LAST_FAILURE = "ablate.last_failure"  # an earlier attempt's, when it died without recording one
    STOPPED_EARLY = "ablate.stopped_early"
    STOPPED_AT_EPOCH = "ablate.stopped_at_epoch"
    MODEL = "ablate.model"  # a `ModelKept`: whether the run's trained weights are kept as its artifact
    EXPLAIN_LAYER = "ablate.explain.layer"  # where `ablate explain --score`'s Grad-CAM looked
    EXPLAIN_IMAGES = "ablate.explain.images"  # and on how many images
    # Provenance: MLflow's own tags where it has one (its UI shows them), ablate's for the rest.
    NOTE = "mlflow.note.content"  # on the experiment and the parent run: the UI's description
    SOURCE_NAME = "mlflow.source.name"  # the study's spec file (the UI shows its name beside the git commit)
    SOURCE_TYPE = "mlflow.source.type"
    USER = "mlflow.user"
    GIT_COMMIT = "mlflow.source.git.commit"
    GIT_BRANCH = "mlflow.source.git.branch"
    GIT_DIRTY = "mlflow.source.git.dirty"  # "true": the commit is not all of the code that ran
    GIT_REPO_URL = "mlflow.source.git.repoURL"
    COMMAND = "ablate.command"  # the command line that ran the study
    HOST = "ablate.host"
    CPU = "ablate.cpu"
    # A trial's: the instruction set torch's CPU kernels were chosen for (AVX512, AVX2, ...). Results differ in
    # their last digits between levels, so two runs agree to the last digit only on the same one.
    CPU_KERNELS = "ablate.cpu_kernels"
    GPU = "ablate.gpu"
    # A study's parent run, once its trials are done: the best configuration by the study's metric.
    BEST = "ablate.best"


VERSION_TAG = "ablate.version."  # + a package's name: its installed version, on the parent and each trial
RACE_STATE_TAG = "ablate.race."  # + a race state, spaces as underscores: the race's arms in that state


def race_state(state: str) -> str:
    """The parent run's tag that lists a race's arms in `state` ("undecided at max": ablate.race.undecided_at_max)."""
    return f"{RACE_STATE_TAG}{state.replace(' ', '_')}"


EXPERIMENT_KIND = "mlflow.experimentKind"  # on the experiment: which of its views the MLflow UI opens
MACHINE_LEARNING = "custom_model_development"  # that kind's value for a model-training experiment


class Kind(StrEnum):
    """What a run is, by its `Tag.KIND`."""

    STUDY = "study"  # the parent run
    TRIAL = "trial"


class Status(StrEnum):
    """MLflow's run statuses."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class Failure(StrEnum):
    """Why a trial's run did not finish."""

    DIVERGENCE = "divergence"  # a result: its loss blew up, and a retry would repeat it
    OUT_OF_MEMORY = "out_of_memory"  # the trial's own allocation failed (a MemoryError, CUDA out of memory)
    OOM = "oom"  # Ray's memory monitor killed its worker: the node ran low on memory (the driver records it)
    ERROR = "error"
    INTERRUPTED = "interrupted"  # the study was stopped
    LOST_WORKER = "lost_worker"  # its worker or node died, so it recorded nothing itself


class ModelKept(StrEnum):
    """What became of a trial's trained weights, under the study's `keep_models` policy."""

    KEPT = "kept"  # the run has MODEL_FILE
    NOT_KEPT = "not kept"  # the policy did not keep them: better seeds of its arm were kept, or none are
    SUPERSEDED = "superseded"  # kept, then removed when better seeds of its arm came


class Outcome(StrEnum):
    """How a trial ended, as a report counts it."""

    FINISHED = "finished"
    STOPPED_EARLY = "stopped_early"  # by the scheduler: a result of the search
    DIVERGED = "diverged"
    FAILED = "failed"
    UNFINISHED = "unfinished"  # killed, or still running


# Metrics a trial logs under the engine's and the accounting's own keys; these are the ones read back.
TRAIN_LOSS = "train_loss"  # logged every epoch, so its steps are the epochs a run has logged
TEST_ACCURACY, TEST_MACRO_F1 = "test_accuracy", "test_macro_f1"
PARAMS_TOTAL, PARAMS_ADDED, MACS, LATENCY_MS = "params_total", "params_added", "macs", "latency_ms"
LATENCY_IQR_MS, LATENCY_BUSY = "latency_iqr_ms", "latency_busy"  # its spread, and the load it was timed under
COSTS = (PARAMS_TOTAL, PARAMS_ADDED, MACS, LATENCY_MS)
# A trial worker's peak resident memory so far, logged each epoch: what a trial costs a node, the
# figure to size concurrency by (a tiny ResNet-18 trial peaks near 1.4 GB, most of it imports).
PEAK_RSS_MB = "worker_peak_rss_mb"
DEFAULT_METRIC = "val_macro_f1"  # the ranking metric of a study whose parent run does not name one
_TEST_F1, _EXPLAIN = "test_f1_", "explain_"


def best(metric: str) -> str:
    """The best-epoch value of a study's ranking metric, logged at a trial's last epoch."""
    return f"best_{metric}"


def split_metrics(split: str) -> tuple[str, str, str]:
    """The loss, accuracy and macro-F1 keys the engine logs for a split (`val_loss`, ...)."""
    return f"{split}_loss", f"{split}_accuracy", f"{split}_macro_f1"


def class_f1(split: str, class_name: str) -> str:
    """A split's per-class F1 key, e.g. `test_f1_happy`."""
    return f"{split}_f1_{class_name.lower()}"


def test_f1(class_name: str) -> str:
    return class_f1("test", class_name)


def f1_class(key: str) -> str | None:
    """The class a per-class test F1 metric is of, or None for any other metric."""
    return key.removeprefix(_TEST_F1) if key.startswith(_TEST_F1) else None


def explanation(score: str) -> str:
    """The metric an `ablate explain --score` score is logged as."""
    return f"{_EXPLAIN}{score}"


def is_score(key: str) -> bool:
    """Whether a metric is a score to compare over seeds: a test figure of the chosen epoch (not its loss
    or time), or an explanation score (not how many images it saw, nor the cues' share of them)."""
    return (key.startswith("test_") and not key.endswith("_loss") and key != "test_time_s") or (
        key.startswith(_EXPLAIN) and not key.startswith((explanation("images"), explanation("cue_area"))))


def as_param(value: Any) -> str:
    """A value as MLflow stores it in a param."""
    return "null" if value is None else str(value)


SPEC_ARTIFACT = "spec.yaml"  # the parent run's: the study's spec as run
MODEL_FILE = "best_model.pt"  # a trial's kept weights (see `ModelKept`): what `ablate explain` loads
SKIPPED_ARTIFACT = "data_skipped.json"  # the parent run's: the inputs the data left out, and why
REPORT_ARTIFACTS = "report"  # the parent run's folder of `ablate report` files
RACE_ARTIFACT = "race.json"  # the parent run's: each arm's decision, as the race reached it
TAG_LIMIT = 5000  # characters of a tag's value kept (an error, a command line): older MLflow stores refuse more
