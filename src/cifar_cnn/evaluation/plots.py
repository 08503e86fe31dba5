"""Figures for evaluation reports: training curves, confusion matrix, its most frequent
confusions, per-class metrics, reliability diagrams, galleries of misclassified images and
the accuracy under common corruptions (CIFAR-10-C).

Figures that show every class stay readable at any number of them: up to `MANY_CLASSES`
they draw as for CIFAR-10; above it (CIFAR-100, say) the confusion matrix becomes a heat map
without numbers (`plot_top_confusions` ranks its cells instead), the per-class bars turn
into a sorted horizontal chart, and sizes, fonts and tick labels scale with bounds.

Every ``plot_*`` function builds and returns a `matplotlib.figure.Figure` without pyplot: no
backend is chosen and no global figure is opened, so importing or calling this module never
changes a notebook's backend, and figures are freed like any other object. `save_figure`
writes one as PNG (with matplotlib's Agg renderer, no display needed).

The inputs are trusted: `cifar_cnn.evaluation.report.write_report` checks probabilities, labels,
images and class names once, then draws. What to show (which mistakes, which class pairs, the
best epoch) is chosen by `cifar_cnn.evaluation.selection`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from sklearn.metrics import ConfusionMatrixDisplay

from cifar_cnn.calibration import apply_temperature, reliability_bins
from cifar_cnn.evaluation.metrics import (
    MANY_CLASSES,
    finite_or_none,
    format_percent,
    top_confusions,
)
from cifar_cnn.evaluation.selection import (
    best_epoch,
    confused_examples,
    most_confident_mistakes,
    most_confused_pairs,
)

DPI = 110
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#d62728"
# Column names that may hold the training accuracy, in order of preference.
ACCURACY_KEYS = ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy")


# --------------------------------------------------------------------------------------------
# helpers, shared with `cifar_cnn.evaluation.compare`


def save_figure(fig: Figure, out_path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``out_path`` (creating parent folders); returns the path."""
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(
        path, dpi=DPI, format="png", bbox_inches="tight", pad_inches=0.15, facecolor="white"
    )
    return path


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


def draw_no_data(ax: Any, text: str) -> None:
    """Replace an empty panel's ticks with a grey note."""
    ax.text(0.5, 0.5, text, ha="center", va="center", color="0.4", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def as_uint8_images(images: Any, n: int) -> np.ndarray:
    """Images as uint8 ``(N, H, W, 3)`` or ``(N, H, W)``; floats in [0, 1] are scaled.

    Raises:
        ValueError: on another shape or a length other than ``n``.
    """
    arr = np.asarray(images)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[-1] == 3)):
        raise ValueError(
            f"images must have shape (N, H, W, 3) or (N, H, W); received shape {arr.shape}."
        )
    if arr.shape[0] != n:
        raise ValueError(
            f"images and labels must have the same length; received {arr.shape[0]} images "
            f"and {n} labels."
        )
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float64)
        if arr.size and np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
    return arr


def _show_image(ax: Any, image: np.ndarray) -> None:
    """Draw one small image crisply (nearest-neighbour upscaling), without ticks."""
    ax.imshow(
        image, interpolation="nearest", cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255
    )
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def tick_layout(n: int, length_in: float, *, largest: float = 9.0,
                smallest: float = 4.5) -> tuple[float, int]:
    """``(font size in points, step)`` for ``n`` tick labels along ``length_in`` inches: the
    font shrinks with the space per label, down to ``smallest``; below that only every
    ``step``-th label is shown."""
    pitch = length_in * 72.0 / max(n, 1)  # points per label
    font = min(largest, max(smallest, 0.8 * pitch))
    return font, max(1, math.ceil(1.15 * font / pitch))


def _label_ticks(axis: Any, names: Sequence[str], font: float, step: int, **kwargs: Any) -> None:
    """Ticks at every ``step``-th position, labelled with those names."""
    positions = range(0, len(names), step)
    axis.set_ticks(list(positions), labels=[names[i] for i in positions], fontsize=font, **kwargs)


def _message_figure(title: str, message: str, size: tuple[float, float] = (7, 2.2)) -> Figure:
    fig = Figure(figsize=size)
    ax = fig.subplots()
    ax.axis("off")
    ax.set_title(title, fontsize=13, fontweight="bold")
    ax.text(0.5, 0.45, message, ha="center", va="center", fontsize=12, transform=ax.transAxes)
    return fig


# --------------------------------------------------------------------------------------------
# training history


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
        ax.set_title(title, fontsize=12, fontweight="bold")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if is_acc else "loss")
        if not drew:
            draw_no_data(ax, f"no {title.lower()} columns in the history")
            continue
        if is_acc:
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=9)
    fig.suptitle("Training curves", fontsize=14, fontweight="bold")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# aggregate metrics


def plot_confusion_matrix(cm: Sequence[Sequence[int]], class_names: Sequence[str]) -> Figure:
    """A confusion matrix as counts and as row-normalised percentages, side by side.

    Drawn with scikit-learn's `ConfusionMatrixDisplay`, every cell annotated. Above
    `MANY_CLASSES` classes a grid of numbers is unreadable: the figure is then one heat map
    of the row-normalised percentages on a square-root colour scale (small confusions stay
    visible), no numbers in the cells, the 10 most frequent confusions outlined in red, and
    a bounded size (`plot_top_confusions` lists the cells' numbers).

    Args:
        cm: square matrix of counts, rows = true class, columns = predicted class.
        class_names: one name per row/column.

    Returns:
        The figure: a "Counts" and a "Row-normalised (% of true class)" axes, each with its
        colour bar, ticks labelled with the class names; above `MANY_CLASSES` only the
        second (ticks thinned out if the names do not fit).

    Raises:
        ValueError: if ``cm`` is not square or does not match ``class_names``.
    """
    counts = np.asarray(cm, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise ValueError(f"cm must be a non-empty square matrix; received shape {counts.shape}.")
    c = counts.shape[0]
    names = [str(n) for n in class_names]
    if len(names) != c:
        raise ValueError(
            f"class_names must have {c} entries to match the data; received {len(names)}."
        )
    row_sums = counts.sum(axis=1, keepdims=True)
    normed = np.divide(
        counts * 100.0, row_sums, out=np.zeros(counts.shape), where=row_sums > 0
    )
    if c > MANY_CLASSES:
        return _confusion_heat_map(counts, normed, names)

    side = max(5.0, 0.55 * c + 2.5)
    fig = Figure(figsize=(2 * side + 1.5, side))
    axes = fig.subplots(1, 2)
    font = 9 if c <= 10 else max(5, 9 - (c - 10) // 3)
    panels = (
        (counts, "Counts", "d", max(int(counts.max()), 1)),
        (normed, "Row-normalised (% of true class)", ".1f", 100.0),
    )
    for ax, (data, title, fmt, vmax) in zip(axes, panels, strict=True):
        display = ConfusionMatrixDisplay(data, display_labels=names).plot(
            ax=ax,
            cmap="Blues",
            include_values=c <= 25,
            values_format=fmt,
            colorbar=False,
            im_kw={"vmin": 0, "vmax": vmax},
            text_kw={"fontsize": font},
        )
        colorbar = fig.colorbar(display.im_, ax=ax, fraction=0.046, pad=0.04)
        if data is normed:
            colorbar.ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.set_title(title, fontsize=12, fontweight="bold")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_xticks(range(c), labels=names, rotation=45, ha="right", rotation_mode="anchor")
    fig.suptitle(f"Confusion matrix ({int(counts.sum()):,} images)", fontsize=14, fontweight="bold")
    fig.tight_layout()
    return fig


def _confusion_heat_map(counts: np.ndarray, normed: np.ndarray, names: list[str]) -> Figure:
    """`plot_confusion_matrix` above `MANY_CLASSES` classes: one heat map, no numbers."""
    c = len(names)
    side = min(max(8.0, 0.11 * c + 3.0), 15.0)  # inches: 8 at 21 classes, 14 at 100
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.subplots()
    image = ax.imshow(normed, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=100),
                      interpolation="nearest", aspect="equal")
    colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    colorbar.ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    colorbar.set_label("% of the true class (square-root scale)")
    font, step = tick_layout(c, side - 2.8)
    _label_ticks(ax.xaxis, names, font, step, rotation=90)
    _label_ticks(ax.yaxis, names, font, step)
    top = top_confusions(counts, names, 10)
    if top:
        index = {name: i for i, name in enumerate(names)}
        marker = max(3.0, 0.9 * (side - 2.8) * 72.0 / c)  # about one cell, in points
        ax.plot([index[p["predicted"]] for p in top], [index[p["true"]] for p in top],
                linestyle="none", marker="s", markersize=marker, markerfacecolor="none",
                markeredgecolor="#d62728", markeredgewidth=1.2)
    ax.set_title("Row-normalised (% of true class)", fontsize=12, fontweight="bold")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.suptitle(f"Confusion matrix ({int(counts.sum()):,} images, {c} classes)",
                 fontsize=14, fontweight="bold")
    fig.tight_layout()
    return fig


def plot_top_confusions(
    cm: Sequence[Sequence[int]], class_names: Sequence[str], *, k: int = 20
) -> Figure:
    """The ``k`` most frequent confusions as a ranked horizontal bar chart.

    One bar per (true, predicted) pair, most frequent at the top, labelled ``"cat → dog"``
    and annotated with the count and its share of the true class
    (`cifar_cnn.evaluation.metrics.top_confusions`). If nothing is wrong the figure says so.

    Args:
        cm: square matrix of counts, rows = true class, columns = predicted class.
        class_names: one name per row/column.
        k: the most pairs to show.

    Returns:
        The figure: one axes, one bar per pair.
    """
    if k < 1:
        raise ValueError(f"k must be a positive integer; received {k!r}.")
    counts = np.asarray(cm, dtype=np.int64)
    pairs = top_confusions(counts, class_names, k)
    total = int(counts.sum())
    if not pairs:
        return _message_figure("Most frequent confusions",
                               f"No confusions: all {total:,} predictions are correct.")
    labels = [f"{p['true']} → {p['predicted']}" for p in pairs]
    values = [p["count"] for p in pairs]
    fig = Figure(figsize=(9.0, 0.34 * len(pairs) + 1.4))
    ax = fig.subplots()
    y = np.arange(len(pairs))
    ax.barh(y, values, color="#4c72b0", height=0.7)
    ax.set_yticks(y, labels=labels, fontsize=9)
    ax.invert_yaxis()  # most frequent on top
    for row, p in zip(y, pairs, strict=True):
        ax.text(p["count"], row, f"  {p['count']:,}  ({format_percent(p['rate'])} of {p['true']})",
                va="center", ha="left", fontsize=8, color="0.25")
    ax.set_xlim(0, max(values) * 1.45)  # room for the annotations
    ax.set_xlabel("images")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    shown = sum(p["share_of_errors"] for p in pairs)
    ax.set_title(f"{len(pairs)} most frequent confusions: {format_percent(shown)} of all "
                 "errors", fontsize=10, color="0.3")
    fig.suptitle("Most frequent confusions (true → predicted)", fontsize=13, fontweight="bold")
    fig.tight_layout()
    return fig


def plot_per_class_metrics(metrics: Mapping[str, Any]) -> Figure:
    """Grouped precision/recall/F1 bars per class, with the macro F1 as a line.

    Args:
        metrics: a dict from :func:`cifar_cnn.evaluation.metrics.classification_metrics`
            (uses ``per_class`` and ``macro``).

    Above `MANY_CLASSES` classes: one horizontal F1 bar per class, sorted by F1 (best on
    top), precision and recall as markers on each row, in a figure whose height grows with
    the classes up to a bound (fonts shrink, then labels thin out).

    Returns:
        The figure: one axes, three bars per class, x ticks labelled with the class names
        (above `MANY_CLASSES`: one bar per class, y ticks labelled).

    Raises:
        ValueError: if ``metrics`` has no ``per_class`` entries.
    """
    per_class = metrics.get("per_class")
    if not per_class:
        raise ValueError("metrics must contain a non-empty 'per_class' dict; received none.")
    names = [str(n) for n in per_class]
    c = len(names)
    if c > MANY_CLASSES:
        return _per_class_ranked(metrics)
    keys = ("precision", "recall", "f1")
    colors = ("#4c72b0", "#55a868", "#dd8452")
    width = 0.27
    x = np.arange(c)
    fig = Figure(figsize=(max(8.0, 0.85 * c + 2.5), 4.8))
    ax = fig.subplots()
    for k, (key, color) in enumerate(zip(keys, colors, strict=True)):
        values = [float(per_class[n].get(key, np.nan)) for n in per_class]
        ax.bar(x + (k - 1) * width, values, width, label=key if key != "f1" else "F1", color=color)
    macro_f1 = (metrics.get("macro") or {}).get("f1")
    if macro_f1 is None:
        f1s = [float(v.get("f1", np.nan)) for v in per_class.values()]
        macro_f1 = float(np.nanmean(f1s))
    ax.axhline(
        macro_f1, color="black", linestyle="--", linewidth=1.3, label=f"macro F1 = {macro_f1:.3f}"
    )
    ax.set_xticks(
        x,
        labels=names,
        rotation=30 if c > 6 else 0,
        ha="right" if c > 6 else "center",
        rotation_mode="anchor",
    )
    ax.set_xlim(-0.6, c - 0.4)
    ax.set_ylim(0, 1.04)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.set_ylabel("score")
    ax.set_title("Per-class precision, recall and F1", fontsize=13, fontweight="bold", pad=30)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, frameon=False, fontsize=10)
    fig.tight_layout()
    return fig


def _macro_f1(metrics: Mapping[str, Any]) -> float:
    macro_f1 = (metrics.get("macro") or {}).get("f1")
    if macro_f1 is None:
        f1s = [float(v.get("f1", np.nan)) for v in metrics["per_class"].values()]
        macro_f1 = float(np.nanmean(f1s))
    return float(macro_f1)


def _per_class_ranked(metrics: Mapping[str, Any]) -> Figure:
    """`plot_per_class_metrics` above `MANY_CLASSES` classes: sorted horizontal bars."""
    per_class: Mapping[str, Mapping[str, Any]] = metrics["per_class"]

    def value(name: str, key: str) -> float:
        v = per_class[name].get(key)
        return np.nan if v is None else float(v)

    # Best F1 first (on top); a missing F1 sorts last; ties stay in the model's order.
    order = sorted(per_class, key=lambda n: -np.nan_to_num(value(n, "f1"), nan=-1.0))
    c = len(order)
    height = min(max(5.0, 0.16 * c + 1.8), 34.0)
    fig = Figure(figsize=(9.0, height))
    ax = fig.subplots()
    y = np.arange(c)
    ax.barh(y, [value(n, "f1") for n in order], height=0.75, color="#dd8452", label="F1")
    marker = min(5.0, max(2.0, 0.5 * (height - 1.8) * 72.0 / c))
    ax.plot([value(n, "precision") for n in order], y, linestyle="none", marker="o",
            markersize=marker, color="#4c72b0", label="precision")
    ax.plot([value(n, "recall") for n in order], y, linestyle="none", marker="D",
            markersize=marker, color="#55a868", label="recall")
    macro_f1 = _macro_f1(metrics)
    ax.axvline(macro_f1, color="black", linestyle="--", linewidth=1.2,
               label=f"macro F1 = {macro_f1:.3f}")
    font, step = tick_layout(c, height - 1.8)
    _label_ticks(ax.yaxis, [str(n) for n in order], font, step)
    ax.set_ylim(c - 0.5, -0.5)  # the first (best) class on top
    ax.set_xlim(0, 1.02)
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.set_xlabel("score")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(f"Per-class precision, recall and F1 ({c} classes, sorted by F1)",
                 fontsize=13, fontweight="bold", pad=24)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, frameon=False, fontsize=9)
    fig.tight_layout()
    return fig


def _draw_reliability(ax: Any, hist_ax: Any, bins: Mapping[str, Any], title: str) -> None:
    ece = bins["ece"]
    edges = np.asarray(bins["bin_edges"])
    lefts, width = edges[:-1], np.diff(edges)
    acc = np.array([np.nan if a is None else a for a in bins["accuracy"]])
    conf = np.array([np.nan if a is None else a for a in bins["confidence"]])
    count = np.asarray(bins["count"], dtype=np.float64)
    full = count > 0

    ax.bar(
        lefts[full],
        acc[full],
        width=width[full],
        align="edge",
        color="#4c72b0",
        edgecolor="white",
        linewidth=0.8,
        label="accuracy",
    )
    gap_bottom = np.minimum(acc, conf)[full]
    gap_height = np.abs(conf - acc)[full]
    ax.bar(
        lefts[full],
        gap_height,
        bottom=gap_bottom,
        width=width[full],
        align="edge",
        facecolor=(0.84, 0.15, 0.16, 0.22),
        edgecolor="#d62728",
        hatch="//",
        linewidth=0.8,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.3", linewidth=1.2, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    heading = f"ECE = {ece:.4f}" if not title else f"{title}\nECE = {ece:.4f}"
    ax.set_title(heading, fontsize=12, fontweight="bold")
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.set_axisbelow(True)
    ax.tick_params(labelbottom=False)

    fractions = count / max(count.sum(), 1.0)
    hist_ax.bar(
        lefts, fractions, width=width, align="edge", color="0.55", edgecolor="white", linewidth=0.8
    )
    hist_ax.set_xlim(0, 1)
    hist_ax.set_xlabel("confidence (max predicted probability)")
    hist_ax.set_ylabel("share of\nimages")
    hist_ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    hist_ax.grid(True, axis="y", alpha=0.3)
    hist_ax.set_axisbelow(True)


def plot_reliability(
    probs: np.ndarray,
    y_true: np.ndarray,
    *,
    temperature: float | None = None,
    n_bins: int = 15,
) -> Figure:
    """A reliability diagram: accuracy per confidence bin against the diagonal.

    Below each diagram a histogram shows how many images fall in each bin. With a
    ``temperature``, a second column shows the same after temperature scaling. Each title
    gives the ECE of the bins drawn (`cifar_cnn.calibration.reliability_bins`).

    Args:
        probs: class probabilities, float64 ``(N, C)``.
        y_true: integer labels, ``(N,)``.
        temperature: optional fitted temperature for the "after" column.
        n_bins: number of equal-width confidence bins.

    Returns:
        The figure: a 2 x 1 (or 2 x 2 with a temperature) grid of axes, diagrams on top.
    """
    panels = [("Before calibration" if temperature is not None else "", probs)]
    if temperature is not None:
        panels.append(
            (
                f"After temperature scaling (T={float(temperature):.3f})",
                apply_temperature(probs, temperature, check_input=False),
            )
        )
    ncols = len(panels)
    fig = Figure(figsize=(5.4 * ncols, 6.6))
    axes = fig.subplots(
        2,
        ncols,
        squeeze=False,
        gridspec_kw={"height_ratios": [4, 1.2]},
        sharex="col",
    )
    for col, (title, panel_probs) in enumerate(panels):
        bins = reliability_bins(panel_probs, y_true, n_bins, check_input=False)
        _draw_reliability(axes[0, col], axes[1, col], bins, title)
    fig.suptitle("Reliability diagram", fontsize=14, fontweight="bold")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# image galleries


def plot_confident_mistakes(
    images: np.ndarray,
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    n: int = 24,
) -> Figure:
    """The ``n`` wrong predictions the model was most confident about.

    Each tile is titled ``"true: cat\npred: dog 0.97"``; the choice is
    `cifar_cnn.evaluation.selection.most_confident_mistakes`. If nothing is wrong the
    figure says so.

    Args:
        images: uint8 images, shape ``(N, H, W, 3)`` (CIFAR-10: 32x32).
        y_true: integer labels, shape ``(N,)``.
        probs: class probabilities, shape ``(N, C)``.
        class_names: ``C`` class names.
        n: maximum number of tiles.

    Returns:
        The figure: a grid of up to 8 columns; one visible axes per tile, titled as above.
    """
    names = [str(name) for name in class_names]
    chosen = most_confident_mistakes(y_true, probs, n)
    if chosen.size == 0:
        return _message_figure(
            "Most confident mistakes", f"No mistakes: all {len(y_true):,} predictions are correct."
        )
    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    errors = int(np.count_nonzero(pred != y_true))
    cols = min(8, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig = Figure(figsize=(1.55 * cols, 1.95 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    # Long class names get a smaller font so neighbouring tile titles do not collide.
    font = 8 if max(len(name) for name in names) <= 12 else 6.5
    for ax, idx in zip(axes.flat, chosen, strict=False):
        ax.axis("on")
        _show_image(ax, images[idx])
        ax.set_title(
            f"true: {names[y_true[idx]]}\npred: {names[pred[idx]]} {conf[idx]:.2f}",
            fontsize=font,
            color="#b00020",
            linespacing=1.2,
        )
    fig.suptitle(
        f"Most confident mistakes ({len(chosen)} of {errors:,} errors, {len(y_true):,} images)",
        fontsize=12,
        fontweight="bold",
    )
    fig.tight_layout(h_pad=0.6, w_pad=0.4)
    return fig


def plot_confused_pairs(
    images: np.ndarray,
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    confusion_matrix: Sequence[Sequence[int]],
    pairs: int = 6,
    per_pair: int = 6,
) -> Figure:
    """Example images for the most frequent (true, predicted) confusions.

    One row per pair, labelled ``"cat → dog (123 images)"``, with up to ``per_pair`` examples,
    most confident first (`cifar_cnn.evaluation.selection.most_confused_pairs` and
    `~cifar_cnn.evaluation.selection.confused_examples`).

    Args:
        images: uint8 images, shape ``(N, H, W, 3)``.
        y_true: integer labels, shape ``(N,)``.
        probs: class probabilities, shape ``(N, C)``.
        class_names: ``C`` class names.
        confusion_matrix: the counts of these predictions (``metrics["confusion_matrix"]``).
        pairs: number of confusion pairs (rows).
        per_pair: maximum number of examples per pair.

    Returns:
        The figure: one subfigure per pair, titled as above, with ``per_pair`` axes each.
    """
    if pairs < 1 or per_pair < 1:
        raise ValueError(
            f"pairs and per_pair must be positive integers; received {pairs!r}, {per_pair!r}."
        )
    names = [str(name) for name in class_names]
    top = most_confused_pairs(confusion_matrix, pairs)
    if not top:
        return _message_figure(
            "Most confused class pairs",
            f"No confusions: all {len(y_true):,} predictions are correct.",
        )
    conf = probs.max(axis=1)
    cols = per_pair
    fig = Figure(figsize=(max(1.4 * cols, 6.0), 1.9 * len(top) + 0.6), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(len(top), 1))
    for subfig, (t, q, count) in zip(subfigs, top, strict=True):
        members = confused_examples(y_true, probs, t, q, per_pair)
        subfig.suptitle(
            f"{names[t]} → {names[q]} ({count:,} images)",
            x=0.01,
            ha="left",
            fontsize=11,
            fontweight="bold",
        )
        axes = np.atleast_1d(subfig.subplots(1, cols))
        for ax in axes:
            ax.axis("off")
            ax.set_anchor("N")  # images hug their row title; spare height goes below
        for ax, idx in zip(axes, members, strict=False):
            ax.axis("on")
            _show_image(ax, images[idx])
            ax.set_xlabel(f"p={conf[idx]:.2f}", fontsize=8, labelpad=2)
    fig.suptitle("Most confused class pairs (true → predicted)", fontsize=13, fontweight="bold")
    return fig


# --------------------------------------------------------------------------------------------
# corruption robustness

FAMILY_COLORS = {"noise": "#4c72b0", "blur": "#55a868", "weather": "#8172b2",
                 "digital": "#dd8452"}


def _number(values: Sequence[Any]) -> float:
    """The first of ``values`` as a float, NaN (no bar) if absent or not a finite number."""
    value = finite_or_none(values[0]) if len(values) else None
    return np.nan if value is None else value


def plot_corruptions(result: Mapping[str, Any]) -> Figure:
    """Accuracy under the CIFAR-10-C corruptions: per family and severity, and per corruption.

    Args:
        result: ``metrics["corruptions"]`` as `cifar_cnn.evaluate` writes it (from
            `cifar_cnn.evaluation.corruptions.score_corruptions`).

    Returns:
        The figure. Left: one group per family (then the mean over the benchmark corruptions
        and the held-out ones), one bar per severity 1..5, with the clean accuracy as a dashed
        line. Right: each corruption's accuracy averaged over the severities, coloured by
        family (held-out ones hatched), and the JPEG round trips in grey.
    """
    clean = finite_or_none((result.get("clean") or {}).get("accuracy"))
    groups = [(f, s) for f, s in (result.get("per_family") or {}).items() if s]
    if result.get("mean"):
        groups.append(("mean of 15" if result["mean"].get("complete") else "benchmark mean",
                       result["mean"]))
    if result.get("held_out"):
        groups.append(("held-out", result["held_out"]))
    per = result.get("per_corruption") or {}
    jpeg = result.get("jpeg") or {}
    rows = [(name, r.get("mean_accuracy"), FAMILY_COLORS.get(r.get("family"), "#777777"),
             not r.get("benchmark", True)) for name, r in per.items()]
    rows += [(f"JPEG q{q}", s.get("accuracy"), "#999999", False) for q, s in jpeg.items()]
    fig = Figure(figsize=(13.5, max(4.8, 0.27 * len(rows) + 1.6)))
    left, right = fig.subplots(1, 2, width_ratios=(1.35, 1))
    shades = ("#c6dbef", "#9ecae1", "#6baed6", "#3182bd", "#08519c")
    width = 0.16
    x = np.arange(len(groups))
    for s, shade in enumerate(shades):
        values = [_number(list(g.get("accuracy") or ())[s:s + 1]) for _, g in groups]
        left.bar(x + (s - 2) * width, values, width, color=shade, label=f"severity {s + 1}")
    if clean is not None:
        left.axhline(clean, color="black", linestyle="--", linewidth=1.2,
                     label=f"clean {format_percent(clean)}")
    left.set_xticks(x, labels=[g for g, _ in groups], rotation=20, ha="right",
                    rotation_mode="anchor")
    left.set_ylim(0, 1.04)
    left.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    left.set_ylabel("accuracy")
    left.set_title("By family and severity", fontsize=12, fontweight="bold")
    left.grid(True, axis="y", alpha=0.3)
    left.set_axisbelow(True)
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, frameon=False,
                fontsize=9)
    y = np.arange(len(rows))[::-1]
    for yi, (_, value, color, held_out) in zip(y, rows, strict=True):
        right.barh(yi, _number([value]), color=color,
                   hatch="//" if held_out else None, edgecolor="white" if held_out else None)
    if clean is not None:
        right.axvline(clean, color="black", linestyle="--", linewidth=1.2)
    right.set_yticks(y, labels=[name + (" *" if held else "") for name, _, _, held in rows],
                     fontsize=9)
    right.set_xlim(0, 1.0)
    right.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    right.set_xlabel("accuracy, mean over severities 1-5")
    right.set_title("By corruption (* held out)", fontsize=12, fontweight="bold")
    right.grid(True, axis="x", alpha=0.3)
    right.set_axisbelow(True)
    images = finite_or_none(result.get("images"))
    fig.suptitle("Robustness to common corruptions (CIFAR-10-C"
                 + (f", {images:,.0f} images)" if images is not None else ")"),
                 fontsize=13, fontweight="bold")
    fig.tight_layout()
    return fig
