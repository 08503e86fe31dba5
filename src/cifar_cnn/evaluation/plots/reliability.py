"""Reliability diagrams: accuracy per confidence bin with a histogram of the bins, before
and (given a temperature) after temperature scaling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from cifar_cnn.calibration import apply_temperature, reliability_bins


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
