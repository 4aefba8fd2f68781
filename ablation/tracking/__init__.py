"""MLflow: where a study's runs go, what they are named, and reading them back. The only code that
knows MLflow, one job per module, from the bottom up:

- `core.names` (re-exported here): the run contract's names (tags, kinds, outcomes, metric keys,
  artifacts), which the engine and the report import without MLflow.
- `lease`: one driver per study: the lock or heartbeat lease a running study holds.
- `store`: tracking URIs, probing and creating a store, the study's lease and experiment.
- `provenance`: git, versions, the machine and the command line, as tags; no MLflow.
- `system_metrics`: MLflow's system-metrics monitor for a trial's run.
- `runs`: writing runs: `TrackedRun`, a trial's `TrialRun`.
- `ui`: the MLflow UI's command, address, saved view and links.
- `study_run`: what the parent run says of its study: params, data, race, outcome.
- `reading`: a study read back: `TrialRecord`, `StudyRecord`, artifacts, metric histories.
- `weights`: the store's side of the `keep_models` policy.

MLflow loads when a client is first made, not on import.
"""

import os

# Through a server store, MLflow prints "🏃 View run <name> at: <url>" and "🧪 View experiment at: <url>"
# to stdout whenever a run ends (TrackingServiceClient._log_url): a pair per trial among a study's output,
# where `ablate` gives its own links (`ablate ui`). This is the switch MLflow reads each time; set here, it
# holds before any client exists, in the driver and in every Ray worker that imports this package. A value
# the user set is kept.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

from ablation.core.names import (COSTS, DEFAULT_METRIC, EXPERIMENT_KIND, LATENCY_BUSY, LATENCY_IQR_MS, LATENCY_MS, MACHINE_LEARNING,
                    MACS, MODEL_FILE, PARAMS_ADDED, PARAMS_TOTAL, PEAK_RSS_MB, RACE_ARTIFACT, RACE_STATE_TAG, REPORT_ARTIFACTS,
                    SKIPPED_ARTIFACT, SPEC_ARTIFACT, TAG_LIMIT, TEST_ACCURACY, TEST_MACRO_F1, TRAIN_LOSS, VERSION_TAG,
                    Failure, Kind, ModelKept, Outcome, Status, Tag, as_param, best, explanation, f1_class, is_score,
                    race_state, test_f1)
from ablation.tracking.provenance import command_line, cpu_model, git_tags, machine_tags, study_provenance, versions
from ablation.tracking.reading import (RunNotFound, RunRow, StudyNotFound, StudyRecord, TrialRecord, dataset_profiles, find_parent, find_study,
                      metric_history, read_artifact, runs_of_study, study_trials, trial_record, trials_frame)
from ablation.tracking.runs import TrackedRun, log_explanation, log_latencies, log_metrics
from ablation.tracking.trial_run import TrialRun, close_open_runs, mark_stopped_early, open_trial
from ablation.tracking.lease import LeaseLost, StudyBusy
from ablation.tracking.store import (DEFAULT_STORE, StoreNotFound, StoreUnusable, check_store, create_store, hold_study,
                    lease_check, raised_from, resolve_uri)
from ablation.tracking.study_run import (dataset_input, describe_study, finish_study, log_race, open_study, reopen_study,
                        study_params)
from ablation.tracking.system_metrics import FIRST_SAMPLE, SYSTEM_INTERVAL, watch_system
from ablation.tracking.ui import (VIEW_KEY, VIEW_NAME, VIEW_TAG, server_command, study_link, study_links, study_view, ui_address,
                 ui_command)
from ablation.tracking.weights import drop_superseded, kept_models, models_of_arm

__all__ = [
    # names
    "COSTS", "DEFAULT_METRIC", "EXPERIMENT_KIND", "LATENCY_BUSY", "LATENCY_IQR_MS", "LATENCY_MS", "MACHINE_LEARNING",
    "MACS", "MODEL_FILE", "PARAMS_ADDED", "PARAMS_TOTAL", "PEAK_RSS_MB", "RACE_ARTIFACT", "RACE_STATE_TAG", "REPORT_ARTIFACTS",
    "SKIPPED_ARTIFACT", "SPEC_ARTIFACT", "TAG_LIMIT", "TEST_ACCURACY", "TEST_MACRO_F1", "TRAIN_LOSS", "VERSION_TAG",
    "Failure", "Kind", "ModelKept", "Outcome", "Status", "Tag", "as_param", "best", "explanation", "f1_class",
    "is_score", "race_state", "test_f1",
    # store
    "DEFAULT_STORE", "StoreNotFound", "StoreUnusable", "check_store", "create_store", "hold_study", "lease_check", "raised_from",
    "resolve_uri", "LeaseLost", "StudyBusy",
    # provenance
    "command_line", "cpu_model", "git_tags", "machine_tags", "study_provenance", "versions",
    # system metrics
    "FIRST_SAMPLE", "SYSTEM_INTERVAL", "watch_system",
    # writing runs
    "TrackedRun", "TrialRun", "close_open_runs", "log_explanation", "log_latencies", "log_metrics",
    "mark_stopped_early", "open_trial",
    # the UI
    "VIEW_KEY", "VIEW_NAME", "VIEW_TAG", "server_command", "study_link", "study_links", "study_view", "ui_address",
    "ui_command",
    # the parent run
    "dataset_input", "describe_study", "finish_study", "log_race", "open_study", "reopen_study", "study_params",
    # reading back
    "RunNotFound", "RunRow", "StudyNotFound", "StudyRecord", "TrialRecord", "dataset_profiles", "find_parent", "find_study",
    "metric_history", "read_artifact", "runs_of_study", "study_trials", "trial_record", "trials_frame",
    # the weights' keep policy
    "drop_superseded", "kept_models", "models_of_arm",
]
