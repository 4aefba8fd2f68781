"""The study relay spares each trial two searches of the store: whether it is the first to open a run, and
which weights its arm keeps. It must answer as the store would, from what the store held when the driver
started and what trials told it since."""

import math

from ablation import tracking
from ablation.driver.relay import StudyRelay
from ablation.driver.study import _known_runs


def test_a_trial_is_the_first_to_open_its_run_once_and_never_when_the_store_had_one():
    relay = StudyRelay(opened=["ran-before"])
    assert relay.claim("new") is True
    assert relay.claim("new") is False  # its retry, or the driver recording a memory kill: they search
    assert relay.claim("ran-before") is False


def test_an_arms_kept_weights_are_what_the_store_held_and_what_trials_kept_since():
    relay = StudyRelay(kept={"placement=none": {"t0": 0.5}})
    relay.kept("placement=none", "t1", 0.7)
    relay.kept("placement=layer4", "t2", 0.6)
    relay.kept("placement=none", "t1", 0.8)  # a retry of its last epoch: the trial's own score is replaced
    assert relay.kept_scores("placement=none") == {"t0": 0.5, "t1": 0.8}
    assert relay.kept_scores("placement=layer1") == {}
    relay.kept_scores("placement=none").clear()  # a copy: the caller cannot change the relay's account
    assert relay.kept_scores("placement=none") == {"t0": 0.5, "t1": 0.8}


def test_the_relay_starts_from_the_runs_and_kept_weights_the_store_holds(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id, parent = tracking.open_study(uri, "seeded", params={}, spec_yaml="name: seeded\n")

    def known():
        return _known_runs(tracking.study_trials(uri, experiment_id, parent.run_id), "val_macro_f1")

    assert known() == ([], {})  # a new study: every trial is the first of its id

    def trial(trial_id: str, arm: str, model: tracking.ModelKept | None, score: float) -> None:
        opened = tracking.open_trial(uri, experiment_id, parent.run_id, name=trial_id, trial_id=trial_id,
                                     params={"arm": arm})
        opened.start(node_id="n", pid=1, device="cpu", gpu_ids=[], resumed_from_epoch=0)
        opened.log_epoch({tracking.best("val_macro_f1"): score}, 1, {tracking.Tag.MODEL: model} if model else {})
        opened.finish()

    trial("a0", "placement=none", tracking.ModelKept.KEPT, 0.7)
    trial("a1", "placement=none", tracking.ModelKept.NOT_KEPT, 0.5)
    trial("b0", "placement=layer4", tracking.ModelKept.SUPERSEDED, 0.9)
    trial("b1", "placement=layer4", None, math.nan)  # killed before its last epoch: a run, nothing kept
    opened, kept = known()
    assert sorted(opened) == ["a0", "a1", "b0", "b1"]
    assert kept == {"placement=none": {"a0": 0.7}}
