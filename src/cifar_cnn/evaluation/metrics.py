"""Classification metrics for a set of predicted class probabilities.

:func:`classification_metrics` turns labels and softmax outputs into one JSON-serialisable dict
(accuracy, top-k, log-loss, ECE, per-class and averaged precision/recall/F1, confusion matrix
and its most frequent confusions), which is what ``metrics.json`` holds;
:func:`format_metrics_table` prints it for the terminal, shortened for many classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    log_loss,
    top_k_accuracy_score,
)

from cifar_cnn.calibration import expected_calibration_error, validate_probs_and_labels
from cifar_cnn.evaluation.selection import most_confused_pairs

# Probabilities are clipped to [LOG_LOSS_EPS, 1] and renormalised before the log-loss.
LOG_LOSS_EPS = 1e-15
# How many (true, predicted) pairs metrics.json lists under "top_confusions".
TOP_CONFUSIONS = 20
# Above this many classes a per-class listing shows a selection (the terminal table: the
# lowest and highest F1) and the report adds a ranked list of confusions to its heat map.
MANY_CLASSES = 20
_PRF = ("precision", "recall", "f1")  # metrics.json's names for sklearn's columns
_SKLEARN_PRF = ("precision", "recall", "f1-score")


def check_class_names(class_names: Sequence[str], num_classes: int) -> list[str]:
    """``class_names`` as a list of ``num_classes`` unique strings.

    Raises:
        ValueError: for a single string, a wrong number of names or duplicates.
    """
    if isinstance(class_names, str):
        raise ValueError("class_names must be a sequence of strings, not a single string.")
    names = [str(name) for name in class_names]
    if len(names) != num_classes:
        raise ValueError(
            f"class_names must have one name per class: expected {num_classes} names, "
            f"received {len(names)}."
        )
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"class_names must be unique; received duplicates {duplicates}.")
    return names


def top_confusions(
    confusion_matrix: Sequence[Sequence[int]], class_names: Sequence[str], k: int = TOP_CONFUSIONS
) -> list[dict[str, Any]]:
    """The ``k`` most frequent confusions (off-diagonal cells) of a confusion matrix.

    Args:
        confusion_matrix: square counts, rows = true class, columns = predicted class.
        class_names: one name per row/column.
        k: how many pairs to list at most.

    Returns:
        ``[{"true", "predicted", "count", "rate", "share_of_errors"}, ...]``, most frequent
        first (ties: the earlier cell first), only cells with a count above zero. ``rate`` is
        the share of the true class's images predicted as ``predicted``; ``share_of_errors``
        the share of all wrong predictions.
    """
    counts = np.asarray(confusion_matrix, dtype=np.int64)
    names = [str(n) for n in class_names]
    row_sums = counts.sum(axis=1)
    errors = int(counts.sum() - np.trace(counts)) if counts.size else 0
    return [
        {
            "true": names[t],
            "predicted": names[q],
            "count": count,
            "rate": count / int(row_sums[t]),
            "share_of_errors": count / errors,
        }
        for t, q, count in (most_confused_pairs(counts, k) if counts.size else [])
    ]


def wilson_interval(correct: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of an accuracy of `correct` out of `n` (SciPy's
    ``binomtest(...).proportion_ci(method="wilson")``): on a holdout of a few hundred
    images a one-point difference is well inside it."""
    from scipy.stats import binomtest

    if n < 1:
        return (0.0, 1.0)
    ci = binomtest(int(correct), int(n)).proportion_ci(confidence_level=confidence,
                                                        method="wilson")
    return (float(ci.low), float(ci.high))


def classification_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    n_bins: int = 15,
    check_input: bool = True,
) -> dict:
    """Compute the standard evaluation metrics from labels and class probabilities.

    Args:
        y_true: integer labels, shape ``(N,)``.
        probs: class probabilities (softmax outputs), shape ``(N, C)``; rows need only sum to
            approximately 1.
        class_names: ``C`` unique names, in column order.
        n_bins: number of confidence bins for the expected calibration error.
        check_input: False skips checking the inputs, for a caller that ran
            `cifar_cnn.calibration.validate_probs_and_labels` and `check_class_names`.

    Returns:
        A dict of plain Python values with keys ``num_images``, ``accuracy``,
        ``accuracy_ci95`` (the 95% Wilson interval of the accuracy, see `wilson_interval`),
        ``top5_accuracy`` (top-``min(5, C)``), ``log_loss``, ``ece``, ``per_class``
        (name -> precision/recall/f1/support), ``macro`` and ``weighted``
        (precision/recall/f1), ``confusion_matrix`` (rows = true class, columns = predicted),
        ``top_confusions`` (its most frequent off-diagonal cells, see :func:`top_confusions`)
        and ``class_names``.

    Raises:
        ValueError: on inconsistent shapes, labels out of range, fewer than 2 classes or a
            wrong number of class names.
    """
    if check_input:
        p, y = validate_probs_and_labels(probs, y_true)
        if p.shape[1] < 2:
            raise ValueError(f"probs must have at least 2 class columns; received {p.shape[1]}.")
        names = check_class_names(class_names, p.shape[1])
    else:
        p, y, names = probs, y_true, list(class_names)
    num_classes = p.shape[1]
    labels = list(range(num_classes))
    y_pred = p.argmax(axis=1)

    k = min(5, num_classes)
    # With k == C every label is in the top k; sklearn would warn, so short-cut it.
    top_k = 1.0 if k >= num_classes else top_k_accuracy_score(y, p, k=k, labels=labels)

    clipped = np.clip(p, LOG_LOSS_EPS, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)

    # Keyed by label index ("0", "1", ...), not by name: a class called "accuracy" or
    # "macro avg" must not collide with the report's own rows.
    report = classification_report(y, y_pred, labels=labels, output_dict=True, zero_division=0)

    def prf(row: Mapping[str, Any]) -> dict[str, float]:
        return {ours: float(row[theirs]) for ours, theirs in zip(_PRF, _SKLEARN_PRF, strict=True)}

    per_class = {
        name: {**prf(report[str(i)]), "support": int(report[str(i)]["support"])}
        for i, name in enumerate(names)
    }
    cm = confusion_matrix(y, y_pred, labels=labels)
    correct = int(np.trace(cm))
    return {
        "num_images": len(y),
        "accuracy": float(accuracy_score(y, y_pred)),
        "accuracy_ci95": list(wilson_interval(correct, len(y))),
        "top5_accuracy": float(top_k),
        "log_loss": float(log_loss(y, clipped, labels=labels)),
        "ece": expected_calibration_error(p, y, n_bins=n_bins, check_input=False),
        "per_class": per_class,
        "macro": prf(report["macro avg"]),
        "weighted": prf(report["weighted avg"]),
        "confusion_matrix": [[int(v) for v in row] for row in cm],
        "top_confusions": top_confusions(cm, names),
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


def format_number(value: Any, spec: str = ".4f", *, missing: str = "-") -> str:
    """``format(value, spec)``, or ``missing`` if ``value`` is not a finite number."""
    num = finite_or_none(value)
    return missing if num is None else format(num, spec)


def format_interval(ci: Any, *, missing: str = "") -> str:
    """A ``[low, high]`` fraction interval as ``"91.6-95.4%"``, or `missing`."""
    if not isinstance(ci, list | tuple) or len(ci) != 2:
        return missing
    low, high = (finite_or_none(v) for v in ci)
    if low is None or high is None:
        return missing
    return f"{low * 100:.1f}-{high * 100:.1f}%"


def format_percent(value: Any, *, missing: str = "-") -> str:
    """A fraction as a percentage with two decimals (``0.7152`` -> ``"71.52%"``), or
    ``missing`` if ``value`` is not a finite number."""
    num = finite_or_none(value)
    return missing if num is None else f"{num * 100:.2f}%"


def _f1_sort_key(item: tuple[str, Mapping[str, Any]]) -> float:
    f1 = finite_or_none(item[1].get("f1"))
    return -math.inf if f1 is None else f1


def format_metrics_table(
    metrics: Mapping[str, Any], *, max_classes: int | None = MANY_CLASSES
) -> str:
    """Format a metrics dict as a fixed-width text table for the terminal.

    One row per class (precision, recall, F1, support), then macro and weighted averages, then
    accuracy, top-5 accuracy, log-loss and ECE (plus ``temperature`` and ``ece_calibrated``
    when present). Missing entries are shown as ``-`` so older ``metrics.json`` files still
    print.

    With more than ``max_classes`` classes (CIFAR-100, say) the class rows are sorted by F1
    and only the lowest and the highest ``max_classes // 2`` are shown, with one line for
    those left out; the most frequent confusions follow the summary.

    Args:
        metrics: a dict as returned by :func:`classification_metrics`.
        max_classes: the most class rows to print; None prints every class.

    Returns:
        The table as a multi-line string (no trailing newline).
    """
    per_class: Mapping[str, Mapping[str, Any]] = metrics.get("per_class") or {}
    shown: list[tuple[str, Mapping[str, Any]] | None] = list(per_class.items())
    many = max_classes is not None and len(per_class) > max(max_classes, 2)
    if many:
        ranked = sorted(per_class.items(), key=_f1_sort_key)  # stable: ties in model order
        half = max(max_classes // 2, 1)
        shown = [*ranked[:half], None, *ranked[-half:]]  # None: the rows left out
    row_labels = [name for name, _ in filter(None, shown)] + ["macro avg", "weighted avg"]
    name_w = max(len("class"), *(len(str(n)) for n in row_labels))
    col_w = 9
    header = (
        f"{'class':<{name_w}}  {'precision':>{col_w}}  {'recall':>{col_w}}  "
        f"{'f1':>{col_w}}  {'support':>{col_w}}"
    )
    rule = "-" * len(header)

    def row(label: str, values: Mapping[str, Any], support: Any) -> str:
        cells = [f"{format_number(values.get(key)):>{col_w}}" for key in _PRF]
        sup = finite_or_none(support)
        sup_cell = f"{'-' if sup is None else int(sup):>{col_w}}"
        return f"{label:<{name_w}}  " + "  ".join([*cells, sup_cell])

    lines = [header, rule]
    if many:
        lines.append(f"{len(per_class)} classes, sorted by F1: the {half} lowest and the "
                     f"{half} highest (all in metrics.json)")
    for item in shown:
        if item is None:
            lines.append(f"{'...':<{name_w}}  ({len(per_class) - 2 * half} more classes)")
            continue
        name, values = item
        lines.append(row(str(name), values, values.get("support")))
    total = sum(int(finite_or_none(v.get("support")) or 0) for v in per_class.values()) or None
    if per_class:
        lines.append(rule)
    for key in ("macro", "weighted"):
        if isinstance(metrics.get(key), Mapping):
            lines.append(row(f"{key} avg", metrics[key], total))
    lines.append(rule)

    interval = format_interval(metrics.get("accuracy_ci95"))
    summary: list[tuple[str, str]] = [
        ("accuracy", format_percent(metrics.get("accuracy"))),
        *([("95% interval (Wilson)", interval)] if interval else []),
        ("top-5 accuracy", format_percent(metrics.get("top5_accuracy"))),
        ("log-loss", format_number(metrics.get("log_loss"))),
        ("ECE", format_number(metrics.get("ece"))),
    ]
    if "temperature" in metrics:
        summary.append(("temperature", format_number(metrics.get("temperature"), ".3f")))
    if "ece_calibrated" in metrics:
        summary.append(("ECE (calibrated)", format_number(metrics.get("ece_calibrated"))))
    if "log_loss_calibrated" in metrics:
        summary.append(("log-loss (calibrated)", format_number(metrics.get("log_loss_calibrated"))))
    if "num_images" in metrics:
        summary.append(("images", format_number(metrics.get("num_images"), ".0f")))
    label_w = max(len(label) for label, _ in summary)
    value_w = max(len(value) for _, value in summary)
    lines.extend(f"{label:<{label_w}}  {value:>{value_w}}" for label, value in summary)
    if many:
        lines.extend(_confusion_lines(metrics, limit=max(max_classes // 2, 1)))
    return "\n".join(lines)


def _confusion_lines(metrics: Mapping[str, Any], *, limit: int) -> list[str]:
    """The most frequent confusions as ranked text lines (none if there are none)."""
    pairs = metrics.get("top_confusions")
    if pairs is None and metrics.get("confusion_matrix") and metrics.get("class_names"):
        pairs = top_confusions(metrics["confusion_matrix"], metrics["class_names"], limit)
    pairs = [p for p in pairs or () if isinstance(p, Mapping)][:limit]
    if not pairs:
        return []
    pair_w = max(len(f"{p.get('true')} -> {p.get('predicted')}") for p in pairs)
    count_w = max(len(format_number(p.get("count"), ",.0f")) for p in pairs)
    lines = ["", f"most frequent confusions (true -> predicted, top {len(pairs)}):"]
    for rank, p in enumerate(pairs, 1):
        pair = f"{p.get('true')} -> {p.get('predicted')}"
        lines.append(
            f"{rank:>3}. {pair:<{pair_w}}  {format_number(p.get('count'), ',.0f'):>{count_w}}"
            f"  {format_percent(p.get('rate')):>7} of {p.get('true')}"
        )
    return lines
