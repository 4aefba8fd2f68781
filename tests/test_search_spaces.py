"""Every study shipped in search_spaces/ validates and trains its first trial (shrunk to a tiny size)."""

from pathlib import Path

import pytest

from ablation import engine
from ablation.data import aihub_layout
from ablation.core import load_study

pytestmark = pytest.mark.slow  # each shipped study is priced and trained for an epoch

SPECS = sorted((Path(__file__).resolve().parents[1] / "search_spaces").glob("*.yaml"))
TINY = ["data.image_size=32", "data.train_per_class=4", "data.val_per_class=2", "data.test_per_class=2",
        "train.epochs=1", "train.batch_size=8"]


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_a_shipped_study_runs_its_first_trial_for_one_epoch(path, tmp_path):
    overrides = list(TINY)
    if path.stem == "paper":  # the paper's dataset, as its archive extracts, written here in miniature
        aihub_layout.write(tmp_path / "aihub", per_class=2, valid_per_class=4, image_size=(160, 120), face_size=48)
        overrides.append(f"data.root={tmp_path / 'aihub'}")
    first = load_study(path, overrides).trials[0]
    epochs = []
    final = engine.fit(first.spec, first.seed, on_epoch=lambda metrics, checkpoint: epochs.append(metrics))
    assert len(epochs) == 1 and 0 <= final["test_accuracy"] <= 1


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_a_shipped_study_is_priced_by_plan_as_written(path):
    from ablation.plan import plan_study

    # paper.yaml reads AI-HUB from ./aihub, which is not here; everything else is as shipped.
    study = load_study(path, ["data.dataset=synthetic", "data.root=null"] if path.stem == "paper" else [])
    plan = plan_study(study)
    assert len(plan.trials) == len(study.trials) and {a.arm for a in plan.arms} == {t.arm for t in plan.trials}
    assert all(a.macs > 0 and a.train_macs > 0 for a in plan.arms) and plan.estimated_seconds > 0
