"""Races on real Ray and MLflow: arms that are decided stop, open ones get more seeds, a race run again
gains none, and a race whose driver is killed is finished by resume with each seed of each arm once."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ablation.cli.main import app

pytestmark = pytest.mark.slow  # each test runs real studies under Ray

ABLATE = [sys.executable, "-m", "ablation.cli"]
BASELINE = "augment.flip=true,lr=1e-12"  # learns nothing: its validation loss is the untrained model's
EQUIVALENT = "augment.flip=false,lr=1e-12"  # the same but for the flips: within 0.003 of it on every seed
OPEN = ("augment.flip=true,lr=0.01", "augment.flip=false,lr=0.01")  # trained: 0.05 to 0.9 off, so undecided


def race_spec(tmp_path: Path, name: str, epochs: int = 1) -> Path:
    spec = {"name": name, "model": {"arch": "resnet18", "attention": "none", "placement": "none"},
            "data": {"image_size": 32, "train_per_class": 8, "val_per_class": 4, "test_per_class": 4},
            "train": {"epochs": epochs, "batch_size": 16},
            "search": {"space": {"train.lr": [1e-12, 0.01], "data.augment.flip": [True, False]},
                       "seeds": {"start": 3, "max": 4}, "race": {"margin": 0.05, "baseline": BASELINE}},
            "resources": {"cpu": 1}, "metric": "val_loss", "mode": "min"}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def seeds_run(uri: str, study: str) -> dict[str, list[int]]:
    client = MlflowClient(uri)
    runs = [r for r in client.search_runs([client.get_experiment_by_name(study).experiment_id])
            if r.data.tags.get("ablate.kind") == "trial"]
    assert all(r.info.status == "FINISHED" for r in runs)
    seeds: dict[str, list[int]] = {}
    for r in runs:
        seeds.setdefault(r.data.params["arm"], []).append(int(r.data.params["seed"]))
    return {arm: sorted(s) for arm, s in seeds.items()}


def test_a_race_stops_the_decided_arm_gives_the_open_ones_more_seeds_and_gains_none_when_run_again(
        tmp_path, shared_ray):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = ["run", str(race_spec(tmp_path, "race")), "--tracking-uri", uri, "--storage", str(tmp_path / "runs")]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert seeds_run(uri, "race") == {BASELINE: [0, 1, 2, 3], EQUIVALENT: [0, 1, 2], OPEN[0]: [0, 1, 2, 3],
                                      OPEN[1]: [0, 1, 2, 3]}
    text = " ".join(result.output.split())
    assert "equivalent" in text and "undecided at max" in text and "15 trials where the fixed design runs 16" in text
    parent = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("race").experiment_id], "tags.`ablate.kind` = 'study'")[0]
    assert parent.data.tags["ablate.race.equivalent"] == EQUIVALENT
    assert parent.data.tags["ablate.race.decided"] == "1 of 3 arms"

    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0, again.output
    assert sum(map(len, seeds_run(uri, "race").values())) == 15

    # The report recomputes the decisions from MLflow alone, and draws the intervals narrowing.
    made = CliRunner().invoke(app, ["report", "race", "--tracking-uri", uri, "--out", str(tmp_path / "report")])
    assert made.exit_code == 0, made.output
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert f"| {EQUIVALENT} | equivalent at 3 | 3 |" in markdown
    assert f"| {OPEN[0]} | undecided at max (4) | 4 |" in markdown
    # The race's answer leads; the test split's comparison follows as its confirmation.
    assert markdown.index("The study's answer: the race against") < markdown.index("Confirmation on the test split")
    assert "15 trials where the fixed design runs 16" in " ".join(markdown.split())
    assert (tmp_path / "report" / "race.png").stat().st_size > 10_000


def test_a_race_whose_driver_was_killed_is_finished_by_resume_with_each_seed_once(tmp_path, shared_ray):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Two epochs: a trial reports epochs before its last, which hold no best-epoch figures yet.
    driver = subprocess.Popen([*ABLATE, "run", str(race_spec(tmp_path, "killed_race", epochs=2)), "--tracking-uri", uri,
                               "--storage", str(tmp_path / "runs")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = tmp_path / "runs" / "killed_race" / "ablate_study.json"
    try:
        deadline = time.monotonic() + 180
        while not (state.exists() and _finished(uri, "killed_race") >= 4):
            assert driver.poll() is None and time.monotonic() < deadline, "the race ended or stalled first"
            time.sleep(0.5)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
        driver.wait()

    result = CliRunner().invoke(app, ["resume", str(state.parent)])
    assert result.exit_code == 0, result.output
    assert seeds_run(uri, "killed_race") == {BASELINE: [0, 1, 2, 3], EQUIVALENT: [0, 1, 2],
                                             OPEN[0]: [0, 1, 2, 3], OPEN[1]: [0, 1, 2, 3]}


def _finished(uri: str, study: str) -> int:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(study)
    return 0 if experiment is None else len(client.search_runs(
        [experiment.experiment_id], "tags.`ablate.kind` = 'trial' and attributes.status = 'FINISHED'"))


def _logged_race(tmp_path, name: str, lrs: list[float], margin: float, outcome, **searcher):
    """A race over `train.lr` (seeds 3 to 6) whose first seeds are logged as its trials log them, each
    ended by `outcome(opened, trial)`; its searcher, read back from the store."""
    from ablation import tracking
    from ablation.driver.race import RaceSearcher
    from ablation.core import Study, StudySpec

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = StudySpec.model_validate({"name": name, "model": {"attention": "none", "placement": "none"},
                                     "search": {"space": {"train.lr": lrs}, "seeds": {"start": 3, "max": 6},
                                                "race": {"margin": margin, "baseline": f"lr={lrs[0]}"}}})
    experiment_id, parent = tracking.open_study(uri, spec.name, params={}, spec_yaml="")
    study = Study.from_spec(spec)
    for trial in study.trials:
        opened = tracking.open_trial(uri, experiment_id, parent.run_id, name=trial.name, trial_id=trial.id,
                                     params=trial.params())
        opened.run.log(params=opened.params)  # what the trial's start writes first
        outcome(opened, trial)
    return study, RaceSearcher(study, where=(uri, experiment_id, parent.run_id), **searcher)


def test_a_seed_that_diverged_is_never_suggested_again_and_ends_its_arms_race(tmp_path):
    """A divergence is a result of the configuration, not a crash: retrying it would diverge again."""
    from ablation import tracking
    from ablation.driver.race import RaceSearcher

    def outcome(opened, trial):
        if trial.arm == "lr=1000000000.0" and trial.seed == 1:
            opened.fail(tracking.Failure.DIVERGENCE, "Diverged: loss is nan")
            return
        opened.run.log_metrics({"best_val_macro_f1": 0.5 + 0.01 * trial.seed, "test_accuracy": 0.5})
        opened.run.finish()

    heard = []
    study, race = _logged_race(tmp_path, "diverging", [0.01, 1e9], 0.01, outcome,
                               on_change=lambda *a: heard.append(a))
    assert study.arm_names == ["lr=0.01", "lr=1000000000.0"]
    assert race.wanted() == []  # neither the diverged seed again, nor a seed past it
    assert race.suggest("t1") == RaceSearcher.FINISHED
    assert race.most() == 0 and heard[-1][1:] == (0, 0)  # nothing started, and nothing left to start


def test_the_most_a_race_may_start_counts_each_open_arms_seeds_not_yet_given(tmp_path):
    """What the live view's ETA runs to: the trials started, and every seed an open arm (and the
    baseline, while any arm is open) has not been given."""
    def outcome(opened, trial):  # seeds 0-2 of both, too close and too noisy to decide
        opened.run.log_metrics({"best_val_macro_f1": 0.5 + 0.05 * (trial.seed % 2) + (trial.arm == "lr=0.02") * 0.01,
                                "test_accuracy": 0.5})
        opened.run.finish()

    _, race = _logged_race(tmp_path, "open", [0.01, 0.02], 0.001, outcome)
    assert not race.decisions["lr=0.02"].decided
    assert race.most() == 2 * 3  # seeds 3, 4 and 5 of both
    race.suggest("t1")
    assert len(race.started) == 1 and race.most() == 1 + 5
