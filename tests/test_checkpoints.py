"""A trial's checkpoint: a snapshot taken when `save` returns, stored whole, read with weights_only."""

import pytest
import torch

from ablation.checkpoints import CheckpointStore, remove_partial_writes


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


class Planted:
    """A pickle that would create `marker` if it were ever unpickled."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("content", ["a pickle payload", "garbage", "truncated"])
def test_a_checkpoint_that_cannot_be_read_is_set_aside_unrun_so_the_trial_begins_again(tmp_path, content):
    """Raising instead failed the trial at every attempt and every resume, the bad file still in place."""
    path = tmp_path / "trial.pt"
    marker = tmp_path / "ran"
    if content == "a pickle payload":
        torch.save({"epoch": 1, "model": Planted(marker)}, path)
    elif content == "garbage":
        path.write_bytes(b"\x80\x04not a checkpoint at all" * 40)
    else:
        good = tmp_path / "good.pt"
        torch.save({"epoch": 1, "model": {"w": torch.zeros(1000)}}, good)
        path.write_bytes(good.read_bytes()[:2000])
    store = CheckpointStore(str(path))
    assert store.load() is None
    assert not marker.exists()  # nothing in it ran
    assert store.set_aside == f"{path}.unreadable" and (tmp_path / "trial.pt.unreadable").exists()
    assert not path.exists() and store.load() is None  # the next attempt starts clean


def test_a_model_file_that_is_not_ablates_says_so_without_suggesting_unsafe_loading(tmp_path):
    from ablation.checkpoints import CheckpointError, unpack_model

    with pytest.raises(CheckpointError) as refused:
        unpack_model(b"\x80\x04garbage", "run abc's best_model.pt")
    assert "run abc's best_model.pt is not a file ablate wrote" in str(refused.value)
    assert "weights_only=False" not in str(refused.value)


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


def test_the_halves_of_writes_a_killed_trial_left_are_removed_and_its_checkpoints_kept(tmp_path):
    """A trial killed mid-write (its study halted for a full disk, its worker killed) leaves `<id>.pt.partial`,
    which nothing reads or finishes; the driver removes such halves once no trial runs."""
    folder = tmp_path / "checkpoints"
    store = CheckpointStore(str(folder / "kept.pt"))
    store.save({"epoch": 1, "model": {"w": torch.ones(3)}})
    store.close()
    (folder / "killed.pt.partial").write_bytes(b"half a checkpoint")
    assert remove_partial_writes(str(folder)) == [str(folder / "killed.pt.partial")]
    assert sorted(p.name for p in folder.iterdir()) == ["kept.pt"]
    assert CheckpointStore(str(folder / "kept.pt")).load()["epoch"] == 1
    assert remove_partial_writes(str(tmp_path / "never-made")) == []  # a study that wrote none has no folder
