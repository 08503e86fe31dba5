"""Image galleries: the most confident mistakes, and examples of the most confused class
pairs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cifar_cnn.evaluation.plots.common import _message_figure
from cifar_cnn.evaluation.selection import (
    confused_examples,
    most_confident_mistakes,
    most_confused_pairs,
)


def _show_image(ax: Any, image: np.ndarray) -> None:
    """Draw one small image crisply (nearest-neighbour upscaling), without ticks."""
    ax.imshow(
        image, interpolation="nearest", cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255
    )
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


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
