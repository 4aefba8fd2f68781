"""A trial's checkpoint: a snapshot taken when `save` returns, stored whole, read with weights_only."""

import pytest
import torch

from ablation.checkpoints import CheckpointStore


def test_a_checkpoint_is_the_state_at_save_even_if_training_changes_it_while_it_is_written(tmp_path):
    weights = torch.zeros(1000)
    store = CheckpointStore(str(tmp_path / "study" / "checkpoints" / "trial.pt"))
    store.save({"epoch": 1, "model": {"w": weights}})
    weights += 1  # the next epoch trains in place while the write may still be in flight
    store.close()
    loaded = CheckpointStore(str(tmp_path / "study" / "checkpoints" / "trial.pt")).load()
    assert loaded["epoch"] == 1 and torch.equal(loaded["model"]["w"], torch.zeros(1000))
    assert [p.name for p in (tmp_path / "study" / "checkpoints").iterdir()] == ["trial.pt"]  # no partial file left


def test_a_missing_checkpoint_is_none_and_a_deleted_one_is_gone(tmp_path):
    store = CheckpointStore(str(tmp_path / "trial.pt"))
    assert store.load() is None
    store.save({"epoch": 2})
    store.delete()
    assert store.load() is None and not (tmp_path / "trial.pt").exists()


def test_a_checkpoint_that_is_not_plain_tensors_and_numbers_is_refused_on_load(tmp_path):
    store = CheckpointStore(str(tmp_path / "trial.pt"))
    store.save({"epoch": 1, "sneaky": object()})
    store.close()
    with pytest.raises(Exception, match="weights_only"):
        store.load()


def test_the_writer_holds_one_copy_of_the_state_the_next_save_waits_for_the_last_write(tmp_path, monkeypatch):
    import threading

    import ablation.checkpoints as checkpoints

    store = CheckpointStore(str(tmp_path / "trial.pt"))
    release, copies, in_flight = threading.Event(), [], []
    write = store._write

    def slow_write(checkpoint):
        in_flight.append(checkpoint)
        release.wait()  # storage is slow: the first write is still going when the next epoch saves
        write(checkpoint)
        in_flight.remove(checkpoint)

    def counting_copy(value):
        copies.append(len(in_flight))  # how many copies the writer still held when this one was made
        return copy(value)

    copy = checkpoints.copy.deepcopy
    monkeypatch.setattr(store, "_write", slow_write)
    monkeypatch.setattr(checkpoints.copy, "deepcopy", counting_copy)
    store.save({"epoch": 1})
    second = threading.Thread(target=store.save, args=({"epoch": 2},))
    second.start()
    second.join(timeout=0.5)
    assert second.is_alive() and copies == [0]  # waiting for the first write before copying the second
    release.set()
    second.join()
    store.close()
    assert copies == [0, 0] and store.load()["epoch"] == 2
