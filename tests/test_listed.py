"""A grid's trials reach Tune through a searcher that suggests each listed trial once, in order: what Tune's
own grid search did, without its copy of every trial's config for each trial it makes."""

import os

from ray.tune.search import Searcher

from ablation.core import Study
from ablation.driver.listed import ListedTrials, as_many_pending
from ablation.driver.trainable import trial_name, trial_of
from studies import write_tiny


def test_each_listed_trial_is_suggested_once_in_order_then_the_search_is_finished(tmp_path):
    study = Study.load(write_tiny(tmp_path), ["search.seeds=[0, 1]"])  # 2 arms x 2 seeds
    searcher = ListedTrials(list(study.trials))
    assert len(study.trials) == 4
    configs = [searcher.suggest(f"tune-{i}") for i in range(len(study.trials))]
    assert [trial_of(study.spec, c).id for c in configs] == [t.id for t in study.trials]
    assert [trial_name(c) for c in configs] == [t.name for t in study.trials]
    assert searcher.suggest("one-more") == Searcher.FINISHED


def test_a_pending_trials_setting_the_user_chose_stands(monkeypatch):
    monkeypatch.setenv("TUNE_MAX_PENDING_TRIALS_PG", "3")
    with as_many_pending():
        assert os.environ["TUNE_MAX_PENDING_TRIALS_PG"] == "3"
    assert os.environ["TUNE_MAX_PENDING_TRIALS_PG"] == "3"
