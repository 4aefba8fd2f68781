"""The training loop on its own: no Ray, no MLflow."""

import pytest
import torch

from ablation import engine
from ablation.spec import load_spec


@pytest.fixture
def spec(tiny_spec):
    return load_spec(tiny_spec, ["train.epochs=2", "model.placement=layer4"])


class Stop(Exception):
    pass


def test_fit_reports_each_epoch_and_tests_the_best_one_at_the_end(spec):
    epochs, summary = [], {}
    final = engine.fit(spec, seed=0, on_epoch=lambda m, c: epochs.append(m), on_start=summary.update)
    assert [m["epoch"] for m in epochs] == [1, 2]
    assert summary["params_total"] > 11_179_590  # resnet18 + one Identity-CBAM
    assert {"train_loss", "val_loss", "val_accuracy", "val_macro_f1", "val_f1_happy"} <= epochs[0].keys()
    assert "test_accuracy" not in epochs[0]
    assert final is epochs[-1] and 0 <= final["test_accuracy"] <= 1 and final["best_epoch"] in (1, 2)
    assert final["best_val_macro_f1"] == max(m["val_macro_f1"] for m in epochs)


def test_a_checkpoint_loads_with_weights_only_and_resumes_exactly_where_training_stopped(spec, tmp_path):
    straight = []
    engine.fit(spec, seed=3, on_epoch=lambda m, c: straight.append(m))

    def stop_after_first(metrics, checkpoint):
        engine.save_checkpoint(checkpoint, tmp_path / "checkpoint.pt")
        raise Stop

    with pytest.raises(Stop):
        engine.fit(spec, seed=3, on_epoch=stop_after_first)
    checkpoint = engine.load_checkpoint(tmp_path / "checkpoint.pt")  # weights_only=True inside
    assert checkpoint["epoch"] == 1
    resumed = []
    engine.fit(spec, seed=3, on_epoch=lambda m, c: resumed.append(m), resume=checkpoint)
    assert [m["epoch"] for m in resumed] == [2]
    for key in ("train_loss", "val_loss", "test_accuracy"):
        assert resumed[0][key] == pytest.approx(straight[1][key], abs=1e-6), key


def test_seeds_change_the_training_but_not_the_data(spec):
    runs = {}
    for seed in (0, 1):
        runs[seed] = engine.fit(spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 1})}),
                                seed=seed, on_epoch=lambda m, c: None)
    assert runs[0]["train_loss"] != runs[1]["train_loss"]
    a, b = engine.setup(spec, seed=0), engine.setup(spec, seed=1)
    torch.testing.assert_close(a.splits.val[0][0], b.splits.val[0][0])
