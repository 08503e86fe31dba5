"""Per-class precision, recall and F1: grouped bars up to `MANY_CLASSES` classes, a
sorted horizontal chart above."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from cifar_cnn.evaluation.metrics import MANY_CLASSES
from cifar_cnn.evaluation.plots.common import _label_ticks, tick_layout


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
