"""Which items an evaluation report shows: pure numpy choices, kept out of the drawing code.

Inputs are trusted (the report's entry point validated them): probabilities ``(N, C)`` and
integer labels ``(N,)`` as `cifar_cnn.calibration.validate_probs_and_labels` returns them.
Ties are broken by position (the earlier image, the earlier class pair), so a choice never
depends on the sorting algorithm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _most_confident(confidence: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` candidate indices with the highest confidence, highest first."""
    return candidates[np.argsort(-confidence[candidates], kind="stable")][:k]


def most_confident_mistakes(y_true: Any, probs: Any, n: int) -> np.ndarray:
    """Indices of the ``n`` wrong predictions with the highest top-1 probability.

    Args:
        y_true: integer labels, shape ``(N,)``.
        probs: class probabilities, shape ``(N, C)``.
        n: how many to return at most (a positive integer).

    Returns:
        An int array of at most ``n`` indices into ``y_true``, most confident first; empty
        if every prediction is right.
    """
    if n < 1:
        raise ValueError(f"n must be a positive integer; received {n!r}.")
    p, y = np.asarray(probs), np.asarray(y_true)
    wrong = np.flatnonzero(p.argmax(axis=1) != y)
    return _most_confident(p.max(axis=1), wrong, n)


def most_confused_pairs(
    confusion_matrix: Sequence[Sequence[int]], k: int
) -> list[tuple[int, int, int]]:
    """The ``k`` most frequent confusions in a confusion matrix.

    Args:
        confusion_matrix: square counts, rows = true class, columns = predicted class (as
            ``metrics.json`` holds it).
        k: how many pairs to return at most (a positive integer).

    Returns:
        ``[(true class, predicted class, count), ...]``, most frequent first; only off-diagonal
        cells with a count above zero.
    """
    if k < 1:
        raise ValueError(f"k must be a positive integer; received {k!r}.")
    counts = np.array(confusion_matrix, dtype=np.int64)
    np.fill_diagonal(counts, 0)
    c = counts.shape[1]
    flat = counts.ravel()
    order = np.argsort(-flat, kind="stable")[:k]
    return [(int(i // c), int(i % c), int(flat[i])) for i in order if flat[i] > 0]


def confused_examples(
    y_true: Any, probs: Any, true_class: int, predicted_class: int, k: int
) -> np.ndarray:
    """Indices of up to ``k`` images of ``true_class`` predicted as ``predicted_class``,
    most confident first."""
    p, y = np.asarray(probs), np.asarray(y_true)
    members = np.flatnonzero((y == true_class) & (p.argmax(axis=1) == predicted_class))
    return _most_confident(p.max(axis=1), members, k)


def best_epoch(epochs: Sequence[float], values: Sequence[float]) -> tuple[float, float] | None:
    """``(epoch, value)`` where ``values`` is highest (the first such epoch), ignoring NaN;
    None if no value is finite. ``epochs`` and ``values`` are paired by position."""
    x, y = np.asarray(epochs, dtype=np.float64), np.asarray(values, dtype=np.float64)
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    if not np.any(np.isfinite(y)):
        return None
    best = int(np.nanargmax(y))
    return float(x[best]), float(y[best])
