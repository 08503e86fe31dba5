"""Stratified train/validation split, for tuning without touching the test set."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from cifar_cnn.errors import DataError


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
