"""Accuracy under the CIFAR-10-C corruptions, per family and severity and per corruption
(the scores of `cifar_cnn.evaluation.corruptions.score_corruptions`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from cifar_cnn.evaluation.metrics import finite_or_none, format_percent

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
