"""Metrics checked against values worked out by hand, not against scikit-learn itself."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cifar_cnn.calibration import validate_probs_and_labels
from cifar_cnn.evaluation.metrics import (
    check_class_names,
    classification_metrics,
    format_metrics_table,
    format_number,
    format_percent,
)

NAMES = ["ant", "bee", "cow"]
# 8 samples, 3 classes. Predictions (argmax) vs truth:
#   true ant: ant, ant, bee      true bee: bee, bee, bee      true cow: cow, ant
Y_TRUE = np.array([0, 0, 0, 1, 1, 1, 2, 2])
Y_PRED = np.array([0, 0, 1, 1, 1, 1, 2, 0])


def hand_probs(y_pred: np.ndarray, num_classes: int = 3, top: float = 0.6) -> np.ndarray:
    """Rows with ``top`` on the predicted class and the rest spread evenly (float32)."""
    rest = (1.0 - top) / (num_classes - 1)
    probs = np.full((len(y_pred), num_classes), rest)
    probs[np.arange(len(y_pred)), y_pred] = top
    return probs.astype(np.float32)


@pytest.fixture
def metrics() -> dict:
    return classification_metrics(Y_TRUE, hand_probs(Y_PRED), NAMES)


def test_confusion_matrix_and_accuracy(metrics: dict) -> None:
    assert metrics["confusion_matrix"] == [[2, 1, 0], [0, 3, 0], [1, 0, 1]]
    assert metrics["num_images"] == 8
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    assert metrics["class_names"] == NAMES
    # k = min(5, 3) = 3 classes: every label is in the top 3.
    assert metrics["top5_accuracy"] == 1.0


def test_per_class_precision_recall_f1(metrics: dict) -> None:
    # ant: 2 of 3 predicted ants are right, 2 of 3 ants found.
    # bee: 3 of 4 predicted bees right, all 3 bees found -> F1 = 2*.75*1/1.75 = 6/7.
    # cow: the single cow prediction is right, 1 of 2 cows found -> F1 = 2/3.
    expected = {
        "ant": (2 / 3, 2 / 3, 2 / 3, 3),
        "bee": (3 / 4, 1.0, 6 / 7, 3),
        "cow": (1.0, 1 / 2, 2 / 3, 2),
    }
    assert list(metrics["per_class"]) == NAMES
    for name, (precision, recall, f1, support) in expected.items():
        row = metrics["per_class"][name]
        assert row["precision"] == pytest.approx(precision)
        assert row["recall"] == pytest.approx(recall)
        assert row["f1"] == pytest.approx(f1)
        assert row["support"] == support


def test_macro_and_weighted_averages(metrics: dict) -> None:
    assert metrics["macro"]["precision"] == pytest.approx((2 / 3 + 3 / 4 + 1) / 3)  # 29/36
    assert metrics["macro"]["recall"] == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)  # 13/18
    assert metrics["macro"]["f1"] == pytest.approx((2 / 3 + 6 / 7 + 2 / 3) / 3)  # 46/63
    # Weighted by support 3, 3, 2 out of 8.
    assert metrics["weighted"]["precision"] == pytest.approx((3 * 2 / 3 + 3 * 3 / 4 + 2) / 8)
    assert metrics["weighted"]["recall"] == pytest.approx(6 / 8)
    assert metrics["weighted"]["f1"] == pytest.approx((3 * 2 / 3 + 3 * 6 / 7 + 2 * 2 / 3) / 8)


def test_log_loss_and_ece(metrics: dict) -> None:
    # The true class gets 0.6 on the 6 correct rows and 0.2 on the 2 wrong ones.
    assert metrics["log_loss"] == pytest.approx(-(6 * math.log(0.6) + 2 * math.log(0.2)) / 8)
    # Every confidence is 0.6 (one bin): |accuracy 0.75 - confidence 0.6| = 0.15.
    assert metrics["ece"] == pytest.approx(0.15)


def test_result_is_plain_json() -> None:
    metrics = classification_metrics(Y_TRUE, hand_probs(Y_PRED), NAMES)
    assert json.loads(json.dumps(metrics)) == metrics
    assert type(metrics["accuracy"]) is float
    assert type(metrics["per_class"]["ant"]["support"]) is int
    assert type(metrics["confusion_matrix"][0][0]) is int


def test_top5_accuracy_with_more_classes() -> None:
    # 6 classes, so k = 5: a label is missed only when it has the lowest probability.
    probs = np.array(
        [
            [0.50, 0.20, 0.10, 0.10, 0.06, 0.04],  # true 0: rank 1
            [0.50, 0.20, 0.10, 0.10, 0.06, 0.04],  # true 4: rank 5, still in the top 5
            [0.50, 0.20, 0.10, 0.10, 0.06, 0.04],  # true 5: rank 6, missed
            [0.04, 0.06, 0.10, 0.10, 0.20, 0.50],  # true 0: rank 6, missed
        ]
    )
    metrics = classification_metrics(np.array([0, 4, 5, 0]), probs, list("abcdef"))
    assert metrics["top5_accuracy"] == pytest.approx(2 / 4)
    assert metrics["accuracy"] == pytest.approx(1 / 4)


def test_unnormalised_float32_rows_and_keras_shaped_labels() -> None:
    probs = hand_probs(Y_PRED) * np.float32(1.001)  # rows sum to 1.001
    metrics = classification_metrics(Y_TRUE.reshape(-1, 1), probs, NAMES)
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    assert math.isfinite(metrics["log_loss"])


def test_zero_division_for_a_class_never_predicted() -> None:
    probs = hand_probs(np.array([0, 0, 1]))
    metrics = classification_metrics(np.array([0, 2, 1]), probs, NAMES)
    assert metrics["per_class"]["cow"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


@pytest.mark.parametrize(
    ("y_true", "probs", "names", "message"),
    [
        (Y_TRUE, hand_probs(Y_PRED), ["ant", "bee"], "expected 3 names, received 2"),
        (Y_TRUE, hand_probs(Y_PRED), ["ant", "ant", "cow"], "unique"),
        (Y_TRUE[:5], hand_probs(Y_PRED), NAMES, "same number of rows"),
        (np.array([0, 1, 3]), hand_probs(np.array([0, 1, 2])), NAMES, r"\[0, 3\)"),
        (Y_TRUE, hand_probs(Y_PRED)[:, 0], NAMES, "shape"),
        (Y_TRUE, np.full((8, 3), np.nan), NAMES, "finite"),
    ],
)
def test_bad_inputs_raise_clear_errors(y_true, probs, names, message) -> None:
    with pytest.raises(ValueError, match=message):
        classification_metrics(y_true, probs, names)


def test_format_metrics_table(metrics: dict) -> None:
    metrics = {**metrics, "temperature": 1.5, "ece_calibrated": 0.0123}
    table = format_metrics_table(metrics)
    lines = table.splitlines()
    for name in NAMES:
        assert any(line.startswith(name) for line in lines)
    assert any(line.startswith("macro avg") for line in lines)
    assert any(line.startswith("weighted avg") for line in lines)
    # Class rows and the header line up.
    class_rows = [lines[0]] + [line for line in lines if line.split()[0] in NAMES]
    assert len({len(line) for line in class_rows}) == 1
    assert "0.8571" in table  # bee F1 = 6/7
    assert "75.00%" in table  # accuracy
    assert "100.00%" in table  # top-5
    assert "0.1500" in table  # ECE
    assert "1.500" in table and "0.0123" in table  # temperature, calibrated ECE


def test_format_metrics_table_tolerates_partial_dicts() -> None:
    table = format_metrics_table({"accuracy": 0.5})
    assert "50.00%" in table
    assert "temperature" not in table


def test_class_names_that_look_like_report_rows() -> None:
    # sklearn's classification_report has rows "accuracy", "macro avg" and "weighted avg";
    # classes with those names keep their own figures.
    names = ["accuracy", "macro avg", "weighted avg"]
    metrics = classification_metrics(Y_TRUE, hand_probs(Y_PRED), names)
    assert list(metrics["per_class"]) == names
    assert metrics["per_class"]["accuracy"]["recall"] == pytest.approx(2 / 3)  # was "ant"
    assert metrics["per_class"]["macro avg"]["support"] == 3
    assert metrics["macro"]["f1"] == pytest.approx((2 / 3 + 6 / 7 + 2 / 3) / 3)


def test_trusted_input_gives_the_same_metrics(metrics: dict) -> None:
    p, y = validate_probs_and_labels(hand_probs(Y_PRED), Y_TRUE)
    assert classification_metrics(y, p, NAMES, check_input=False) == metrics


def test_check_class_names() -> None:
    assert check_class_names(("a", 2), 2) == ["a", "2"]
    with pytest.raises(ValueError, match="not a single string"):
        check_class_names("ab", 2)
    with pytest.raises(ValueError, match=r"duplicates \['a'\]"):
        check_class_names(["a", "a"], 2)


@pytest.mark.parametrize(
    ("value", "percent", "number"),
    [
        (0.7152, "71.52%", "0.7152"),
        (1, "100.00%", "1.0000"),
        (None, "-", "-"),
        (float("nan"), "-", "-"),
        (True, "-", "-"),  # a flag is not a number
        ("0.5", "50.00%", "0.5000"),
    ],
)
def test_formatters(value, percent: str, number: str) -> None:
    assert format_percent(value) == percent
    assert format_number(value) == number
    assert format_percent(None, missing="") == "" and format_number(None, missing="—") == "—"
    assert format_number(1234, ",.0f") == "1,234"


def test_accuracy_comes_with_its_wilson_interval() -> None:
    from cifar_cnn.evaluation.metrics import format_metrics_table, wilson_interval

    # 540 of 600 right: the interval a holdout of a few hundred photos gives is 5 points wide.
    y = np.repeat(np.arange(3), 200)
    probs = np.eye(3)[np.where(np.arange(600) % 10 == 0, (y + 1) % 3, y)]
    m = classification_metrics(y, probs, ["a", "b", "c"])
    assert m["accuracy"] == 0.9
    z, n, p = 1.959964, 600, 0.9  # Wilson's score interval, by its formula
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    np.testing.assert_allclose(m["accuracy_ci95"], [centre - half, centre + half], atol=1e-6)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert "95% interval (Wilson)  87.3-92.2%" in format_metrics_table(m)
