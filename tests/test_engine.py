"""The training loop on its own: no Ray, no MLflow."""

import pytest
import torch

from ablation import engine
from ablation.checkpoints import CheckpointStore
from ablation.core import load_spec

pytestmark = pytest.mark.slow  # each test trains a real model


@pytest.fixture
def spec(tiny_spec):
    return load_spec(tiny_spec, ["train.epochs=2", "model.placement=layer4"])


class Stop(Exception):
    pass


def test_fit_reports_each_epoch_and_tests_the_best_one_at_the_end(spec):
    epochs = []
    final = engine.fit(spec, seed=0, on_epoch=lambda m, c: epochs.append(m))
    assert [m["epoch"] for m in epochs] == [1, 2]
    assert {"train_loss", "val_loss", "val_accuracy", "val_macro_f1", "val_f1_happy"} <= epochs[0].keys()
    assert "test_accuracy" not in epochs[0]
    # Its set-up is reported once, with the first epoch: logged as a metric, a step of its own would mislead.
    assert epochs[0]["setup_time_s"] > 0 and "setup_time_s" not in epochs[1]
    assert final is epochs[-1] and 0 <= final["test_accuracy"] <= 1 and final["best_epoch"] in (1, 2)
    assert final["best_val_macro_f1"] == max(m["val_macro_f1"] for m in epochs)


def test_a_checkpoint_loads_with_weights_only_and_resumes_exactly_where_training_stopped(spec, tmp_path):
    straight = []
    engine.fit(spec, seed=3, on_epoch=lambda m, c: straight.append(m))

    store = CheckpointStore(str(tmp_path / "checkpoint.pt"))

    def stop_after_first(metrics, checkpoint):
        store.save(checkpoint)
        raise Stop

    with pytest.raises(Stop):
        engine.fit(spec, seed=3, on_epoch=stop_after_first)
    store.close()
    checkpoint = CheckpointStore(str(tmp_path / "checkpoint.pt")).load()  # weights_only=True inside
    assert checkpoint["epoch"] == 1
    resumed = []
    engine.fit(spec, seed=3, on_epoch=lambda m, c: resumed.append(m), resume=checkpoint)
    assert [m["epoch"] for m in resumed] == [2]
    for key in ("train_loss", "val_loss", "test_accuracy"):
        assert resumed[0][key] == pytest.approx(straight[1][key], abs=1e-6), key


def test_no_checkpoint_follows_the_last_epoch_so_a_one_epoch_trial_writes_none(spec):
    checkpoints = []
    engine.fit(spec, seed=0, on_epoch=lambda m, c: checkpoints.append(c))
    assert checkpoints[0]["epoch"] == 1 and checkpoints[1] is None
    one = []
    engine.fit(load_spec_with(spec, epochs=1), seed=0, on_epoch=lambda m, c: one.append(c))
    assert one == [None]


def test_seeds_change_the_training_but_not_the_data(spec):
    runs = {}
    for seed in (0, 1):
        runs[seed] = engine.fit(spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 1})}),
                                seed=seed, on_epoch=lambda m, c: None)
    assert runs[0]["train_loss"] != runs[1]["train_loss"]
    a, b = engine.setup(spec, seed=0), engine.setup(spec, seed=1)
    torch.testing.assert_close(a.splits.val[0][0], b.splits.val[0][0])


def test_mixed_precision_and_channels_last_are_chosen_for_cuda_only(spec):
    cpu = engine.Precision.choose(spec, torch.device("cpu"))
    assert cpu == engine.Precision()  # float32, default layout
    fp16 = load_spec_with(spec, precision="fp16")
    assert engine.Precision.choose(fp16, torch.device("cuda")) == engine.Precision(torch.float16, True)
    fp32 = load_spec_with(spec, precision="fp32", channels_last=False)
    assert engine.Precision.choose(fp32, torch.device("cuda")) == engine.Precision(None, False)


def test_the_mixed_precision_path_trains_and_evaluates(spec):
    # CPU autocast runs bfloat16 like a GPU would, so the code path is exercised here for real.
    import dataclasses

    s = engine.setup(spec, seed=0)
    s = dataclasses.replace(s, precision=engine.Precision(torch.bfloat16, channels_last=True))
    s.model.to(memory_format=torch.channels_last)
    assert engine.train_one_epoch(s)["train_loss"] > 0
    metrics = engine.evaluate(s.model, s.splits.val, s.splits.classes, "val", s.device, precision=s.precision)
    assert 0 <= metrics["val_accuracy"] <= 1


def load_spec_with(spec, **train):
    return spec.model_copy(update={"train": spec.train.model_copy(update=train)})


def test_the_fp16_grad_scaler_lives_through_the_fit_and_resumes_from_the_checkpoint(spec, monkeypatch, tmp_path):
    import dataclasses

    # The scaler fp16 on CUDA gets, on float32 here: float16 convolutions on a CPU take minutes.
    built = engine.setup
    monkeypatch.setattr(engine, "setup", lambda *args: dataclasses.replace(built(*args),
                                                                           scaler=torch.amp.GradScaler("cpu")))
    spec = load_spec_with(spec, epochs=3)  # two checkpoints: none is written after the last epoch
    straight = []
    engine.fit(spec, seed=5, on_epoch=lambda m, c: straight.append(c and c["scaler"]))
    # Its growth tracker counts the unskipped steps of the whole fit, not of one epoch.
    assert straight[1]["_growth_tracker"] > straight[0]["_growth_tracker"] > 0

    store = CheckpointStore(str(tmp_path / "checkpoint.pt"))

    def stop_after_first(metrics, checkpoint):
        store.save(checkpoint)
        raise Stop

    with pytest.raises(Stop):
        engine.fit(spec, seed=5, on_epoch=stop_after_first)
    store.close()
    resumed = []
    engine.fit(spec, seed=5, on_epoch=lambda m, c: resumed.append(c and c["scaler"]),
               resume=CheckpointStore(str(tmp_path / "checkpoint.pt")).load())
    assert resumed == straight[1:]


def test_a_loss_that_blows_up_is_a_divergence(spec):
    wild = load_spec_with(spec, lr=1e9, momentum=0.99)
    with pytest.raises(engine.Diverged, match="the training loss reached"):
        engine.fit(wild, seed=0, on_epoch=lambda m, c: None)


@pytest.mark.parametrize("case", ["balanced", "a class never present", "a class never predicted",
                                  "a class neither present nor predicted", "one class only"])
def test_accuracy_and_f1_agree_with_torchmetrics_on_a_few_hundred_images(case):
    """The scores are counted from a confusion matrix rather than by torchmetrics (which would load
    torchvision and scipy into every worker); torchmetrics is the independent reference."""
    from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

    n, size = 6, 300
    generator = torch.Generator().manual_seed(len(case))
    labels = torch.randint(n, (size,), generator=generator)
    logits = torch.randn(size, n, generator=generator) + 2 * torch.nn.functional.one_hot(labels, n)  # beats chance
    if case == "a class never present":
        labels[labels == 2] = 3
    elif case == "a class never predicted":
        logits[:, 4] = -100
    elif case == "a class neither present nor predicted":
        labels[labels == 5] = 0
        logits[:, 5] = -100
    elif case == "one class only":
        labels[:] = 1
    confusion = torch.bincount(labels * n + logits.argmax(1), minlength=n * n).view(n, n)
    accuracy, macro, per_class = engine.scores(confusion)
    assert accuracy == pytest.approx(MulticlassAccuracy(n, average="micro")(logits, labels).item(), abs=1e-6)
    assert macro == pytest.approx(MulticlassF1Score(n, average="macro")(logits, labels).item(), abs=1e-6)
    assert per_class == pytest.approx(MulticlassF1Score(n, average=None)(logits, labels).tolist(), abs=1e-6)
