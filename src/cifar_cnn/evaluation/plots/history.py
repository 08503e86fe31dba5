"""Training curves, and the helpers that read a history's columns (shared with
`cifar_cnn.evaluation.compare`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from cifar_cnn.evaluation.metrics import format_percent
from cifar_cnn.evaluation.plots.common import draw_no_data
from cifar_cnn.evaluation.selection import best_epoch

TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#d62728"
# Column names that may hold the training accuracy, in order of preference.
ACCURACY_KEYS = ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy")


def history_column(history: Mapping[str, Sequence[float]], key: str | None) -> np.ndarray | None:
    """A history column as a float array, or None if absent, empty or all-NaN."""
    values = history.get(key) if key else None
    if values is None:
        return None
    arr = np.asarray(list(values), dtype=np.float64).ravel()
    if arr.size == 0 or not np.any(np.isfinite(arr)):
        return None
    return arr


def history_epochs(history: Mapping[str, Sequence[float]]) -> np.ndarray:
    """1-based epoch numbers for a history dict (Keras' CSVLogger writes 0-based epochs)."""
    epoch = history_column(history, "epoch")
    if epoch is not None and np.all(np.isfinite(epoch)):
        return epoch + 1
    lengths = [len(v) for k, v in history.items() if k != "epoch" and v is not None]
    return np.arange(1, max(lengths, default=0) + 1, dtype=np.float64)


def accuracy_key(history: Mapping[str, Any]) -> str | None:
    """The name of the training-accuracy column in ``history``, or None."""
    return next((k for k in ACCURACY_KEYS if k in history), None)


def history_series(
    history: Mapping[str, Sequence[float]], key: str | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(epochs, values)`` of one history column, cut to the same length; None if the
    column is absent, empty or all-NaN."""
    col = history_column(history, key)
    if col is None:
        return None
    epochs = history_epochs(history)
    n = min(len(epochs), len(col))
    return epochs[:n], col[:n]



def style_curve_axes(ax: Any, title: str, *, is_acc: bool, drew: bool, empty: str) -> bool:
    """Title, labels, ticks and grid of one panel of training curves (accuracy as percent), or
    the `empty` message where nothing was drawn; returns `drew`."""
    ax.set_title(title, fontsize=12, fontweight="bold")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy" if is_acc else "loss")
    if not drew:
        draw_no_data(ax, empty)
        return False
    if is_acc:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, alpha=0.3)
    return True

def plot_training_curves(
    history: Mapping[str, Sequence[float]], *, val_label: str = "validation"
) -> Figure:
    """Loss and accuracy against epoch, training solid and validation dashed.

    Args:
        history: columns as from `cifar_cnn.runs.RunDir.read_history`; uses ``epoch``
            (0-based, shown 1-based), ``loss``, ``val_loss``, ``accuracy`` and
            ``val_accuracy`` when present and ignores any other column.
        val_label: what the ``val_*`` columns measured ("validation", or "test" for a run
            that monitored the test set).

    Returns:
        The figure: two axes, "Loss" and "Accuracy"; the best held-out accuracy is starred.
    """
    acc_key = accuracy_key(history)
    panels = [
        ("Loss", "loss", "val_loss", False),
        ("Accuracy", acc_key, f"val_{acc_key}" if acc_key else "val_accuracy", True),
    ]
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    for ax, (title, train_key, val_key, is_acc) in zip(axes, panels, strict=True):
        drew = False
        for key, label, color, style in (
            (train_key, "train", TRAIN_COLOR, "-"),
            (val_key, val_label, VAL_COLOR, "--"),
        ):
            series = history_series(history, key)
            if series is None:
                continue
            x, y = series
            marker = "o" if len(x) <= 30 else None
            ax.plot(
                x,
                y,
                linestyle=style,
                color=color,
                label=label,
                marker=marker,
                markersize=3,
                linewidth=1.8,
            )
            drew = True
            best = best_epoch(x, y) if is_acc and label == val_label else None
            if best is not None:
                epoch, value = best
                ax.plot(
                    epoch,
                    value,
                    marker="*",
                    markersize=13,
                    color=color,
                    linestyle="none",
                    label=f"best {val_label} {format_percent(value)} (epoch {epoch:g})",
                )
        if style_curve_axes(ax, title, is_acc=is_acc, drew=drew,
                            empty=f"no {title.lower()} columns in the history"):
            ax.legend(loc="best", fontsize=9)
    fig.suptitle("Training curves", fontsize=14, fontweight="bold")
    fig.tight_layout()
    return fig
