"""Per-epoch checkpoints: the model's weights with the optimizer's state, named by epoch.

The epoch is in the file name and each file is written atomically, so the newest file is
always a complete checkpoint of the epoch it names: no separate counter can disagree
with it.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import keras

from cifar_cnn.errors import RunError
from cifar_cnn.files import atomic_path

_NAME = "epoch-{:04d}.weights.h5"
_PATTERN = re.compile(r"epoch-(\d+)\.weights\.h5")


def saved_epochs(directory: Path) -> list[int]:
    """The epochs that have a checkpoint in `directory`, in increasing order."""
    if not directory.is_dir():
        return []
    found = (_PATTERN.fullmatch(p.name) for p in directory.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def latest_epoch(directory: Path) -> int:
    """Epochs done according to the newest checkpoint; 0 if there is none."""
    epochs = saved_epochs(directory)
    return epochs[-1] if epochs else 0


def restore(model: keras.Model, directory: Path, epoch: int) -> None:
    """Load the checkpoint of `epoch` (weights and optimizer state) into a compiled model.

    Raises:
        RunError: if the file cannot be read, naming it and the way out.
    """
    path = directory / _NAME.format(epoch)
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(path)
    except (OSError, ValueError) as e:
        older = [n for n in saved_epochs(directory) if n < epoch]
        hint = (f" Delete it to resume from epoch {older[-1]} instead." if older
                else " Delete the run's checkpoints/ folder to start again.")
        raise RunError(f"Checkpoint {path} cannot be read ({e}).{hint}") from e


class EpochCheckpoint(keras.callbacks.Callback):
    """Save weights and optimizer state after every epoch, keeping the newest `keep` files."""

    async_safe = True  # no batch hooks

    def __init__(self, directory: Path, keep: int = 2) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.keep = keep

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        with atomic_path(self.directory / _NAME.format(epoch + 1)) as tmp:
            self.model.save_weights(tmp)
        for old in saved_epochs(self.directory)[:-self.keep]:
            (self.directory / _NAME.format(old)).unlink(missing_ok=True)


def trim_history(path: Path, epochs_done: int) -> None:
    """Drop history.csv rows of epochs that the last checkpoint does not cover (a run killed
    between writing an epoch's row and its checkpoint), so a resume logs each epoch once."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < epochs_done]
    if len(keep) != len(rows):
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(keep)
