"""Classification metrics for a set of predicted class probabilities.

:func:`classification_metrics` turns labels and softmax outputs into one JSON-serialisable dict
(accuracy, top-k, log-loss, ECE, per-class and averaged precision/recall/F1, confusion matrix),
which is what ``metrics.json`` holds; :func:`format_metrics_table` prints it for the terminal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from cifar_cnn.calibration import expected_calibration_error, validate_probs_and_labels

# Probabilities are clipped to [LOG_LOSS_EPS, 1] and renormalised before the log-loss.
LOG_LOSS_EPS = 1e-15


def _check_class_names(class_names: Sequence[str], num_classes: int) -> list[str]:
    if isinstance(class_names, str):
        raise ValueError("class_names must be a sequence of strings, not a single string.")
    names = [str(name) for name in class_names]
    if len(names) != num_classes:
        raise ValueError(
            f"class_names must have one name per probs column: expected {num_classes} names, "
            f"received {len(names)}."
        )
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"class_names must be unique; received duplicates {duplicates}.")
    return names


def _prf(y_true: np.ndarray, y_pred: np.ndarray, labels: list[int], average: str | None):
    return precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=average, zero_division=0
    )


def classification_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    n_bins: int = 15,
) -> dict:
    """Compute the standard evaluation metrics from labels and class probabilities.

    Args:
        y_true: integer labels, shape ``(N,)``.
        probs: class probabilities (softmax outputs), shape ``(N, C)``; rows need only sum to
            approximately 1.
        class_names: ``C`` unique names, in column order.
        n_bins: number of confidence bins for the expected calibration error.

    Returns:
        A dict of plain Python values with keys ``num_images``, ``accuracy``,
        ``top5_accuracy`` (top-``min(5, C)``), ``log_loss``, ``ece``, ``per_class``
        (name -> precision/recall/f1/support), ``macro`` and ``weighted``
        (precision/recall/f1), ``confusion_matrix`` (rows = true class, columns = predicted)
        and ``class_names``.

    Raises:
        ValueError: on inconsistent shapes, labels out of range, fewer than 2 classes or a
            wrong number of class names.
    """
    p, y = validate_probs_and_labels(probs, y_true)
    num_classes = p.shape[1]
    if num_classes < 2:
        raise ValueError(f"probs must have at least 2 class columns; received {num_classes}.")
    names = _check_class_names(class_names, num_classes)
    labels = list(range(num_classes))
    y_pred = p.argmax(axis=1)

    k = min(5, num_classes)
    # With k == C every label is in the top k; sklearn would warn, so short-cut it.
    top_k = 1.0 if k >= num_classes else top_k_accuracy_score(y, p, k=k, labels=labels)

    clipped = np.clip(p, LOG_LOSS_EPS, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)

    precision, recall, f1, support = _prf(y, y_pred, labels, None)
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }
    averages = {}
    for average in ("macro", "weighted"):
        avg_p, avg_r, avg_f, _ = _prf(y, y_pred, labels, average)
        averages[average] = {"precision": float(avg_p), "recall": float(avg_r), "f1": float(avg_f)}

    cm = confusion_matrix(y, y_pred, labels=labels)
    return {
        "num_images": len(y),
        "accuracy": float(accuracy_score(y, y_pred)),
        "top5_accuracy": float(top_k),
        "log_loss": float(log_loss(y, clipped, labels=labels)),
        "ece": expected_calibration_error(p, y, n_bins=n_bins),
        "per_class": per_class,
        "macro": averages["macro"],
        "weighted": averages["weighted"],
        "confusion_matrix": [[int(v) for v in row] for row in cm],
        "class_names": names,
    }


def finite_or_none(value: Any) -> float | None:
    """Return ``value`` as a finite float, or None if it is missing or not a number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _fmt(value: Any, spec: str, width: int) -> str:
    num = finite_or_none(value)
    return f"{'-' if num is None else format(num, spec):>{width}}"


def _pct(value: Any) -> str:
    num = finite_or_none(value)
    return "-" if num is None else f"{num * 100:.2f}%"


def format_metrics_table(metrics: Mapping[str, Any]) -> str:
    """Format a metrics dict as a fixed-width text table for the terminal.

    One row per class (precision, recall, F1, support), then macro and weighted averages, then
    accuracy, top-5 accuracy, log-loss and ECE (plus ``temperature`` and ``ece_calibrated``
    when present). Missing entries are shown as ``-`` so older ``metrics.json`` files still
    print.

    Args:
        metrics: a dict as returned by :func:`classification_metrics`.

    Returns:
        The table as a multi-line string (no trailing newline).
    """
    per_class: Mapping[str, Mapping[str, Any]] = metrics.get("per_class") or {}
    row_labels = [*per_class, "macro avg", "weighted avg"]
    name_w = max(len("class"), *(len(str(n)) for n in row_labels))
    col_w = 9
    header = (
        f"{'class':<{name_w}}  {'precision':>{col_w}}  {'recall':>{col_w}}  "
        f"{'f1':>{col_w}}  {'support':>{col_w}}"
    )
    rule = "-" * len(header)

    def row(label: str, values: Mapping[str, Any], support: Any) -> str:
        cells = [_fmt(values.get(key), ".4f", col_w) for key in ("precision", "recall", "f1")]
        sup = finite_or_none(support)
        sup_cell = f"{'-' if sup is None else int(sup):>{col_w}}"
        return f"{label:<{name_w}}  " + "  ".join([*cells, sup_cell])

    lines = [header, rule]
    for name, values in per_class.items():
        lines.append(row(str(name), values, values.get("support")))
    total = sum(int(finite_or_none(v.get("support")) or 0) for v in per_class.values()) or None
    if per_class:
        lines.append(rule)
    for key in ("macro", "weighted"):
        if isinstance(metrics.get(key), Mapping):
            lines.append(row(f"{key} avg", metrics[key], total))
    lines.append(rule)

    summary: list[tuple[str, str]] = [
        ("accuracy", _pct(metrics.get("accuracy"))),
        ("top-5 accuracy", _pct(metrics.get("top5_accuracy"))),
        ("log-loss", _fmt(metrics.get("log_loss"), ".4f", 0)),
        ("ECE", _fmt(metrics.get("ece"), ".4f", 0)),
    ]
    if "temperature" in metrics:
        summary.append(("temperature", _fmt(metrics.get("temperature"), ".3f", 0)))
    if "ece_calibrated" in metrics:
        summary.append(("ECE (calibrated)", _fmt(metrics.get("ece_calibrated"), ".4f", 0)))
    if "log_loss_calibrated" in metrics:
        summary.append(("log-loss (calibrated)",
                        _fmt(metrics.get("log_loss_calibrated"), ".4f", 0)))
    if "num_images" in metrics:
        summary.append(("images", _fmt(metrics.get("num_images"), ".0f", 0)))
    label_w = max(len(label) for label, _ in summary)
    value_w = max(len(value) for _, value in summary)
    lines.extend(f"{label:<{label_w}}  {value:>{value_w}}" for label, value in summary)
    return "\n".join(lines)
