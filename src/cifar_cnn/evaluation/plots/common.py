"""What every figure shares: the PNG writer (`save_figure` at `DPI`), the image and
no-data helpers, tick-label sizing for many classes (`tick_layout`) and the one-message
figure drawn when there is nothing to plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

DPI = 110


def save_figure(fig: Figure, out_path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``out_path`` (creating parent folders); returns the path."""
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(
        path, dpi=DPI, format="png", bbox_inches="tight", pad_inches=0.15, facecolor="white"
    )
    return path


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
