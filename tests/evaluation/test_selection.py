"""What the report chooses to show, on inputs small enough to know the answer by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cifar_cnn.evaluation.selection import (
    best_epoch,
    confused_examples,
    most_confident_mistakes,
    most_confused_pairs,
)

# Six images, three classes. Rows: probabilities; the comments give truth -> prediction.
PROBS = np.array(
    [
        [0.90, 0.05, 0.05],  # 0: true 0 -> 0, right
        [0.20, 0.70, 0.10],  # 1: true 0 -> 1, wrong at 0.70
        [0.05, 0.05, 0.90],  # 2: true 1 -> 2, wrong at 0.90
        [0.10, 0.60, 0.30],  # 3: true 1 -> 1, right
        [0.15, 0.80, 0.05],  # 4: true 0 -> 1, wrong at 0.80
        [0.25, 0.70, 0.05],  # 5: true 2 -> 1, wrong at 0.70 (ties with image 1)
    ]
)
Y = np.array([0, 0, 1, 1, 0, 2])


def test_most_confident_mistakes_by_hand() -> None:
    assert most_confident_mistakes(Y, PROBS, 10).tolist() == [2, 4, 1, 5]  # 0.9, 0.8, 0.7, 0.7
    assert most_confident_mistakes(Y, PROBS, 2).tolist() == [2, 4]


def test_most_confident_mistakes_ties_keep_the_earlier_image() -> None:
    assert most_confident_mistakes(Y, PROBS, 3).tolist() == [2, 4, 1]


def test_most_confident_mistakes_none_wrong() -> None:
    assert most_confident_mistakes(PROBS.argmax(axis=1), PROBS, 5).size == 0


def test_most_confident_mistakes_rejects_n() -> None:
    with pytest.raises(ValueError, match="n must be a positive integer"):
        most_confident_mistakes(Y, PROBS, 0)


def test_most_confused_pairs_by_hand() -> None:
    cm = [
        [50, 3, 9],  # true 0: 9 predicted as 2
        [7, 40, 0],  # true 1: 7 predicted as 0
        [3, 0, 60],  # true 2: 3 predicted as 0 (ties with 0 -> 1)
    ]
    assert most_confused_pairs(cm, 2) == [(0, 2, 9), (1, 0, 7)]
    # The diagonal never counts; ties are listed in row-major order.
    assert most_confused_pairs(cm, 10) == [(0, 2, 9), (1, 0, 7), (0, 1, 3), (2, 0, 3)]


def test_most_confused_pairs_skip_empty_cells_and_need_k() -> None:
    assert most_confused_pairs(np.diag([5, 5, 5]), 3) == []
    assert most_confused_pairs([[1, 0], [2, 1]], 5) == [(1, 0, 2)]
    with pytest.raises(ValueError, match="k must be a positive integer"):
        most_confused_pairs([[1, 0], [2, 1]], 0)


def test_most_confused_pairs_leave_the_input_alone() -> None:
    cm = np.array([[4, 1], [2, 3]])
    most_confused_pairs(cm, 1)
    assert cm.tolist() == [[4, 1], [2, 3]]


def test_confused_examples_by_hand() -> None:
    # True 0 predicted as 1: images 4 (0.80) and 1 (0.70).
    assert confused_examples(Y, PROBS, 0, 1, 5).tolist() == [4, 1]
    assert confused_examples(Y, PROBS, 0, 1, 1).tolist() == [4]
    assert confused_examples(Y, PROBS, 2, 0, 5).tolist() == []


def test_best_epoch() -> None:
    assert best_epoch([1, 2, 3, 4], [0.5, 0.7, float("nan"), 0.7]) == (2.0, 0.7)  # first max
    assert best_epoch([1, 2, 3], [0.1, 0.2]) == (2.0, 0.2)  # paired by position
    assert best_epoch([1, 2], [math.nan, math.nan]) is None
