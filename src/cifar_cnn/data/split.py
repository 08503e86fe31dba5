"""The splits of a run: what it trains on, monitors each epoch, holds out for calibration,
and is evaluated on; all stratified and seeded, so resume and evaluate see the same images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sklearn.model_selection import train_test_split

from cifar_cnn.errors import ConfigError, DataError, RunError


class CifarData(Protocol):
    """What the splits read of a `cifar_cnn.data.CifarData` (named so, without importing
    it: the dataset module imports this one)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray


def split_validation(
    x: np.ndarray, y: np.ndarray, val_size: int, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out `val_size` images with the class proportions of `y`.

    The split depends only on `seed` and the data, so a run can be resumed or evaluated
    again on exactly the same validation images.

    Returns:
        ``(x_train, y_train, x_val, y_val)``.

    Raises:
        DataError: if `val_size` is not between the number of classes and ``len(y) - 1``.
    """
    n_classes = len(np.unique(y))
    if not n_classes <= val_size < len(y):
        raise DataError(
            f"val_size must be at least the number of classes ({n_classes}) and less than the "
            f"number of training images ({len(y)}). Received: val_size={val_size}"
        )
    idx = np.arange(len(y))
    tr, va = train_test_split(idx, test_size=val_size, stratify=y, random_state=seed)
    tr.sort()
    va.sort()
    return x[tr], y[tr], x[va], y[va]


def stratified_subset(y: np.ndarray, n: int, *, seed: int = 0) -> np.ndarray:
    """Sorted indices of `n` of the images of `y`, in its class proportions, chosen by `seed`.

    A short evaluation on "the first n images" sees one class when the data comes class by
    class (a folder tree always does; so does a stratified split); this sees every class.
    All images when `n` is at least their number; a plain seeded sample when a class is too
    small to stratify (fewer than two images, or fewer images than classes in the subset).
    """
    y = np.asarray(y).reshape(-1)
    if n >= len(y):
        return np.arange(len(y))
    idx = np.arange(len(y))
    try:
        _, chosen = train_test_split(idx, test_size=int(n), stratify=y, random_state=seed)
    except ValueError:  # a class of one image, or n below the number of classes
        chosen = np.random.default_rng(seed).choice(idx, int(n), replace=False)
    return np.sort(chosen)


def stratified_holdout(y: np.ndarray, fraction: float, *,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hold out `fraction` of each class's images, at random but reproducibly.

    Each class with n images gives ``round(fraction * n)`` of them, at least one when
    ``n >= 2`` and never all of them; a class with one image keeps it for training. The
    choice depends only on `seed` and the class's own images, in order (for a folder
    dataset: its sorted file listing), so the same files and seed give the same split.

    Returns:
        ``(keep, held)``: sorted indices into `y` of the images kept for training and of
        those held out.

    Raises:
        ConfigError: if `fraction` is not in [0, 1).
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"val_split must be at least 0 and less than 1. Received: "
                          f"val_split={fraction}")
    y = np.asarray(y).reshape(-1)
    held: list[np.ndarray] = []
    if fraction > 0:
        for label in np.unique(y):
            idx = np.flatnonzero(y == label)
            n = len(idx)
            if n < 2:
                continue
            k = min(max(math.floor(fraction * n + 0.5), 1), n - 1)
            # One generator per class: a class's split does not depend on the others.
            rng = np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, int(label)])
            held.append(rng.permutation(idx)[:k])
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[held_idx] = False
    return np.flatnonzero(mask), held_idx


@dataclass(frozen=True)
class TrainSplits:
    """The images a run trains on, monitors each epoch, and calibrates on afterwards."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None  # monitored after each epoch (`monitor` says which set)
    y_val: np.ndarray | None
    x_hold: np.ndarray | None  # held out from training: the validation or calibration split
    y_hold: np.ndarray | None
    monitor: str  # "validation", "test" or "none"


def calibration_holdout(calibration_size: int, num_train: int, num_classes: int) -> int:
    """How many training images to hold out for calibration: `calibration_size`, at most a
    tenth of the training set, and none if that leaves fewer than one per class."""
    n = min(calibration_size, num_train // 10)
    return n if n >= num_classes else 0


def train_splits(ds: CifarData, *, val_size: int, calibration_size: int, monitor_test: bool,
                 seed: int) -> TrainSplits:
    """Hold out the validation split, else the calibration split; choose what is monitored:
    the validation split if there is one, else the test set (`monitor_test`) or nothing."""
    if ds.x_val is not None and len(ds.x_val) and not val_size:
        # The data's own validation split (a val/ folder, or held out by `load_dataset`):
        # monitored each epoch and calibrated on, as a --val-size split would be.
        return TrainSplits(ds.x_train, ds.y_train, ds.x_val, ds.y_val, ds.x_val, ds.y_val,
                           "validation")
    x_train, y_train, x_hold, y_hold = ds.x_train, ds.y_train, None, None
    if val_size or calibration_size:
        x_train, y_train, x_hold, y_hold = split_validation(
            x_train, y_train, val_size or calibration_size, seed=seed)
    if val_size:
        return TrainSplits(x_train, y_train, x_hold, y_hold, x_hold, y_hold, "validation")
    if monitor_test and len(ds.x_test):
        return TrainSplits(x_train, y_train, ds.x_test, ds.y_test, x_hold, y_hold, "test")
    return TrainSplits(x_train, y_train, None, None, x_hold, y_hold, "none")


def evaluation_split(ds: CifarData, settings: dict[str, Any],
                     split: str) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of a trained run's `split`: "test", or "val" (its validation
    split, as `train_splits` held it out with the run's recorded `settings`).

    Raises:
        RunError: for "val" on a run trained without a validation split.
        ValueError: for another split name.
    """
    if split == "test":
        if not len(ds.x_test):
            raise RunError("This data has no test split (no test/ folder); evaluate on the "
                           "validation split with --split val.")
        return ds.x_test, ds.y_test
    if split == "val":
        if ds.x_val is not None and len(ds.x_val) and not settings.get("val_size"):
            return ds.x_val, ds.y_val  # the data's own validation split
        if not settings.get("val_size"):
            raise RunError("This run was trained without a validation split; train with "
                           "--val-size N to evaluate on one, or use --split test.")
        _, _, x_val, y_val = split_validation(ds.x_train, ds.y_train, settings["val_size"],
                                              seed=settings["seed"])
        return x_val, y_val
    raise ValueError(f"split must be 'test' or 'val'. Received: split={split!r}")
