"""A trial's last checkpoint, kept in the study's storage (a folder or any pyarrow URI) and written in
the background while the next epoch trains.

Tune's own checkpoints are written to a temporary folder and then copied to storage as the trial
reports: for a ResNet-18 that is ~90 MB twice per epoch, which cost 0.3-0.4 s of every epoch on
this project's 2-core benchmark. Here the checkpoint is copied in memory (the snapshot: training
changes the tensors as soon as `save` returns, ~0.03 s), then a thread serializes it straight to
storage under a temporary name and moves it into place, so a reader never sees half a file. Read
back with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import io
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch


class StorageFull(OSError):
    """The storage has no room for a checkpoint (ENOSPC, or EDQUOT: a quota): a retry would fill it again.
    `strerror` says which, `filename` is the folder."""


_NO_ROOM = {errno.ENOSPC: "no space left", errno.EDQUOT: "the disk quota is exceeded"}


class _Recording:
    """A stream that keeps the first OSError its writes raise: torch.save reports a failed write as its own
    RuntimeError ("unexpected pos ..."), which says nothing of the disk."""

    def __init__(self, stream) -> None:
        self.stream, self.error = stream, None

    def write(self, data) -> int:
        try:
            return self.stream.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self.stream.flush()


class CheckpointError(ValueError):
    """A file that is not a checkpoint ablate wrote: truncated, damaged, or holding more than tensors and
    numbers (which `weights_only` refuses to unpickle, so nothing in it ran)."""


def load_plain(data: bytes, what: str) -> dict[str, Any]:
    """A checkpoint or model file ablate wrote, read back with `weights_only=True`."""
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of a file it then refuses
            warnings.simplefilter("ignore", UserWarning)
            loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError... by what is wrong
        # Not torch's own message: it suggests weights_only=False, which would run whatever the file holds.
        raise CheckpointError(f"{what} is not a file ablate wrote (truncated, damaged, or holding more than "
                              f"tensors and numbers: {type(err).__name__}); it was not loaded") from None
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{what} is not a file ablate wrote (it holds a {type(loaded).__name__}); "
                              "it was not loaded")
    return loaded


class Background:
    """Writes off the training thread, one at a time: `submit` first waits for the one before, so
    a write that was submitted and then waited for is stored, in order."""

    def __init__(self) -> None:
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer")
        self._pending: Future | None = None

    def submit(self, write: Callable[..., None], *args: Any) -> None:
        self.wait()
        self._pending = self._writer.submit(write, *args)

    def wait(self) -> None:
        """Block until the last write is done; raises what went wrong in it."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        self.wait()
        self._writer.shutdown()


def remove_partial_writes(folder: str) -> list[str]:
    """Delete the half-written checkpoints (`*.partial`) in `folder` (a path or URI) and return them. A
    trial killed in the middle of a write (its study halted or interrupted, its worker or driver killed)
    leaves one that nothing will read or finish, holding the room it took. Call it only while no trial
    of the study runs: the study's driver, once its trials have stopped or before they start."""
    fs, path = pafs.FileSystem.from_uri(folder)
    removed = []
    for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
        if info.type == pafs.FileType.File and info.path.endswith(".partial"):
            with contextlib.suppress(FileNotFoundError):
                fs.delete_file(info.path)
                removed.append(info.path)
    return removed


class CheckpointStore:
    """The checkpoint at `location` (`<folder or URI>/<name>.pt`): saved in the background, so a
    `save` that returns means the previous one is safely stored."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.fs, self.path = pafs.FileSystem.from_uri(location)
        self._background = Background()
        self.set_aside: str | None = None  # where `load` moved a checkpoint it could not read

    def save(self, checkpoint: dict[str, Any]) -> None:
        # The previous write ends, and frees its copy, before the next copy is made: one per trial at most.
        self._background.wait()
        self._background.submit(self._write, copy.deepcopy(checkpoint))

    def wait(self) -> None:
        self._background.wait()

    def _write(self, checkpoint: dict[str, Any]) -> None:
        folder, _, _ = self.path.rpartition("/")
        partial = f"{self.path}.partial"
        sink = None
        try:
            self.fs.create_dir(folder, recursive=True)
            with self.fs.open_output_stream(partial) as out:
                sink = _Recording(out)
                torch.save(checkpoint, sink)
            self.fs.move(partial, self.path)
        except Exception as err:
            # A half-written file would keep the room it took from Tune's own files and the other trials;
            # the checkpoint before it is still in place.
            with contextlib.suppress(OSError):
                self.fs.delete_file(partial)
            cause = (sink and sink.error) or err
            if isinstance(cause, OSError) and cause.errno in _NO_ROOM:
                raise StorageFull(cause.errno, _NO_ROOM[cause.errno], folder) from None
            raise

    def load(self) -> dict[str, Any] | None:
        """The stored checkpoint, or None if there is none yet. One that cannot be read is renamed
        `<name>.pt.unreadable` (`set_aside`) and None returned, so the trial begins again rather than
        failing on it at every attempt and every resume."""
        try:
            with self.fs.open_input_stream(self.path) as stream:
                data = stream.read()
        except FileNotFoundError:
            return None
        try:
            return load_plain(data, self.location)
        except CheckpointError:
            self.set_aside = f"{self.path}.unreadable"
            self.fs.move(self.path, self.set_aside)
            return None

    def delete(self) -> None:
        self.wait()
        try:
            self.fs.delete_file(self.path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        self._background.close()


def save_model(file: Path, trial_spec: str, classes: list[str], epoch: int, weights: dict[str, torch.Tensor]) -> None:
    """A trained model as one file: its weights (the epoch validation chose), the trial's resolved spec
    as JSON (to rebuild the network and its data) and its class names; plain types only, so it loads
    with weights_only=True. Written straight to the file: serialised in memory first, a ResNet-18's
    45 MB were held twice more by the worker at its peak."""
    torch.save({"spec": trial_spec, "classes": list(classes), "epoch": epoch, "model": weights}, file)


def unpack_model(data: bytes, what: str = "the model file") -> dict[str, Any]:
    """A file `save_model` wrote; a CheckpointError for anything else."""
    packed = load_plain(data, what)
    if missing := {"spec", "classes", "model"} - packed.keys():
        raise CheckpointError(f"{what} is not a model ablate saved: it lacks {', '.join(sorted(missing))}")
    return packed
