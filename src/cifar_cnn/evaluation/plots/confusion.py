"""The confusion matrix (numbers up to `MANY_CLASSES` classes, a heat map above) and its
most frequent confusions as a ranked bar chart."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from sklearn.metrics import ConfusionMatrixDisplay

from cifar_cnn.evaluation.metrics import MANY_CLASSES, format_percent, top_confusions
from cifar_cnn.evaluation.plots.common import _label_ticks, _message_figure, tick_layout


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
