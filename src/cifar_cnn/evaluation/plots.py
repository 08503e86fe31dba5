"""PNG plots for evaluation reports: training curves, confusion matrix, per-class metrics,
reliability diagrams and galleries of misclassified images.

Every ``plot_*`` function writes one PNG to ``out_path`` (creating parent directories), closes
its figure and returns the path, so they can be called in a loop without leaking memory.
Matplotlib runs on the non-interactive Agg backend: no display is needed.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: choose the backend before pyplot is imported

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from cifar_cnn.calibration import (
    apply_temperature,
    expected_calibration_error,
    reliability_bins,
    validate_probs_and_labels,
)

DPI = 110
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#d62728"
# Column names that may hold the training accuracy, in order of preference.
ACCURACY_KEYS = ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy")


# --------------------------------------------------------------------------------------------
# helpers


def _save(fig: Figure, out_path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``out_path`` and close it, even if saving fails."""
    path = Path(out_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(
            path, dpi=DPI, format="png", bbox_inches="tight", pad_inches=0.15, facecolor="white"
        )
    finally:
        plt.close(fig)
    return path


def _column(history: Mapping[str, Sequence[float]], key: str) -> np.ndarray | None:
    """Return a history column as a float array, or None if absent, empty or all-NaN."""
    values = history.get(key)
    if values is None:
        return None
    arr = np.asarray(list(values), dtype=np.float64).ravel()
    if arr.size == 0 or not np.any(np.isfinite(arr)):
        return None
    return arr


def history_epochs(history: Mapping[str, Sequence[float]]) -> np.ndarray:
    """1-based epoch numbers for a history dict (Keras' CSVLogger writes 0-based epochs)."""
    epoch = _column(history, "epoch")
    if epoch is not None and np.all(np.isfinite(epoch)):
        return epoch + 1
    lengths = [len(v) for k, v in history.items() if k != "epoch" and v is not None]
    return np.arange(1, max(lengths, default=0) + 1, dtype=np.float64)


def accuracy_key(history: Mapping[str, Any]) -> str | None:
    """The name of the training-accuracy column in ``history``, or None."""
    return next((k for k in ACCURACY_KEYS if k in history), None)


def _xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(x), len(y))
    return x[:n], y[:n]


def _names(class_names: Sequence[str], num_classes: int) -> list[str]:
    names = [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(
            f"class_names must have {num_classes} entries to match the data; received {len(names)}."
        )
    return names


def _check_images(images: Any, n: int) -> np.ndarray:
    """Return images as uint8 (N, H, W, 3) or (N, H, W); floats in [0, 1] are scaled."""
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


def _message_figure(title: str, message: str, size: tuple[float, float] = (7, 2.2)) -> Figure:
    fig, ax = plt.subplots(figsize=size)
    ax.axis("off")
    ax.set_title(title, fontsize=13, fontweight="bold")
    ax.text(0.5, 0.45, message, ha="center", va="center", fontsize=12, transform=ax.transAxes)
    return fig


def _no_data(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", color="0.4", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


# --------------------------------------------------------------------------------------------
# training history


def read_history_csv(path: str | Path) -> dict[str, list[float]]:
    """Read a Keras ``CSVLogger`` file into a dict of float columns.

    Cells that are empty or not numbers become NaN, so a partly written row does not break
    plotting.

    Args:
        path: the ``history.csv`` file.

    Returns:
        ``{column name: list of floats}`` in file order, e.g. ``{"epoch": [0.0, 1.0], ...}``.

    Raises:
        ValueError: naming the file if it cannot be read, has no header or has no data rows.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [row for row in reader if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"could not read training history {path}: {err}") from err
    if not rows:
        raise ValueError(f"training history {path} is empty; expected a CSV header and rows.")
    header = [name.strip() for name in rows[0]]
    if len(rows) < 2:
        raise ValueError(
            f"training history {path} has a header ({', '.join(header)}) but no data rows."
        )
    columns: dict[str, list[float]] = {name: [] for name in header}
    for row in rows[1:]:
        for i, name in enumerate(header):
            cell = row[i].strip() if i < len(row) else ""
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            columns[name].append(value)
    return columns


def plot_training_curves(history: Mapping[str, Sequence[float]], out_path: str | Path, *,
                         val_label: str = "validation") -> Path:
    """Plot loss and accuracy against epoch, training solid and validation dashed.

    Args:
        history: columns as from :func:`read_history_csv`; uses ``epoch`` (0-based, shown
            1-based), ``loss``, ``val_loss``, ``accuracy`` and ``val_accuracy`` when present
            and ignores any other column.
        out_path: where to write the PNG.
        val_label: what the ``val_*`` columns measured ("validation", or "test" for a run
            that monitored the test set).

    Returns:
        ``Path(out_path)``.
    """
    epochs = history_epochs(history)
    acc_key = accuracy_key(history)
    panels = [
        ("Loss", "loss", "val_loss", False),
        ("Accuracy", acc_key, f"val_{acc_key}" if acc_key else "val_accuracy", True),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (title, train_key, val_key, is_acc) in zip(axes, panels, strict=True):
        drew = False
        for key, label, color, style in (
            (train_key, "train", TRAIN_COLOR, "-"),
            (val_key, val_label, VAL_COLOR, "--"),
        ):
            col = _column(history, key) if key else None
            if col is None:
                continue
            x, y = _xy(epochs, col)
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
            if is_acc and label == val_label and np.any(np.isfinite(y)):
                best = int(np.nanargmax(y))
                best_label = f"best {val_label} {y[best] * 100:.2f}% (epoch {x[best]:g})"
                ax.plot(
                    x[best],
                    y[best],
                    marker="*",
                    markersize=13,
                    color=color,
                    linestyle="none",
                    label=best_label,
                )
        ax.set_title(title, fontsize=12, fontweight="bold")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if is_acc else "loss")
        if not drew:
            _no_data(ax, f"no {title.lower()} columns in the history")
            continue
        if is_acc:
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=9)
    fig.suptitle("Training curves", fontsize=14, fontweight="bold")
    fig.tight_layout()
    return _save(fig, out_path)


# --------------------------------------------------------------------------------------------
# aggregate metrics


def plot_confusion_matrix(
    cm: Sequence[Sequence[int]], class_names: Sequence[str], out_path: str | Path
) -> Path:
    """Plot a confusion matrix as counts and as row-normalised percentages, side by side.

    Args:
        cm: square matrix of counts, rows = true class, columns = predicted class.
        class_names: one name per row/column.
        out_path: where to write the PNG.

    Returns:
        ``Path(out_path)``.

    Raises:
        ValueError: if ``cm`` is not square or does not match ``class_names``.
    """
    counts = np.asarray(cm, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise ValueError(f"cm must be a non-empty square matrix; received shape {counts.shape}.")
    c = counts.shape[0]
    names = _names(class_names, c)
    row_sums = counts.sum(axis=1, keepdims=True)
    normed = np.divide(counts * 100.0, row_sums, out=np.zeros_like(counts), where=row_sums > 0)

    side = max(5.0, 0.55 * c + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1.5, side))
    annotate = c <= 25
    font = 9 if c <= 10 else max(5, 9 - (c - 10) // 3)
    panels = (
        (counts, "Counts", "Blues", "{:.0f}", counts.max() if counts.max() > 0 else 1.0),
        (normed, "Row-normalised (% of true class)", "Blues", "{:.1f}", 100.0),
    )
    for ax, (data, title, cmap, fmt, vmax) in zip(axes, panels, strict=True):
        image = ax.imshow(data, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
        colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        if data is normed:
            colorbar.ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.set_title(title, fontsize=12, fontweight="bold")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_xticks(range(c), labels=names, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(c), labels=names)
        if annotate:
            threshold = vmax / 2
            for i in range(c):
                for j in range(c):
                    value = data[i, j]
                    ax.text(
                        j,
                        i,
                        fmt.format(value),
                        ha="center",
                        va="center",
                        fontsize=font,
                        color="white" if value > threshold else "black",
                    )
    fig.suptitle(f"Confusion matrix ({int(counts.sum()):,} images)", fontsize=14, fontweight="bold")
    fig.tight_layout()
    return _save(fig, out_path)


def plot_per_class_metrics(metrics: Mapping[str, Any], out_path: str | Path) -> Path:
    """Plot grouped precision/recall/F1 bars per class, with the macro F1 as a line.

    Args:
        metrics: a dict from :func:`cifar_cnn.evaluation.metrics.classification_metrics`
            (uses ``per_class`` and ``macro``).
        out_path: where to write the PNG.

    Returns:
        ``Path(out_path)``.

    Raises:
        ValueError: if ``metrics`` has no ``per_class`` entries.
    """
    per_class = metrics.get("per_class")
    if not per_class:
        raise ValueError("metrics must contain a non-empty 'per_class' dict; received none.")
    names = [str(n) for n in per_class]
    c = len(names)
    keys = ("precision", "recall", "f1")
    colors = ("#4c72b0", "#55a868", "#dd8452")
    width = 0.27
    x = np.arange(c)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.85 * c + 2.5), 4.8))
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
    return _save(fig, out_path)


def _draw_reliability(
    ax: Any, hist_ax: Any, probs: np.ndarray, y: np.ndarray, n_bins: int, title: str
) -> None:
    bins = reliability_bins(probs, y, n_bins)
    ece = expected_calibration_error(probs, y, n_bins)
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
    out_path: str | Path,
    *,
    temperature: float | None = None,
    n_bins: int = 15,
) -> Path:
    """Plot a reliability diagram: accuracy per confidence bin against the diagonal.

    Below each diagram a histogram shows how many images fall in each bin. With a
    ``temperature``, a second panel shows the same after temperature scaling.

    Args:
        probs: class probabilities, shape ``(N, C)``.
        y_true: integer labels, shape ``(N,)``.
        out_path: where to write the PNG.
        temperature: optional fitted temperature for the "after" panel.
        n_bins: number of equal-width confidence bins.

    Returns:
        ``Path(out_path)``.
    """
    p, y = validate_probs_and_labels(probs, y_true)
    panels = [("Before calibration" if temperature is not None else "", p)]
    if temperature is not None:
        panels.append(
            (
                f"After temperature scaling (T={float(temperature):.3f})",
                apply_temperature(p, temperature),
            )
        )
    ncols = len(panels)
    fig, axes = plt.subplots(
        2,
        ncols,
        figsize=(5.4 * ncols, 6.6),
        squeeze=False,
        gridspec_kw={"height_ratios": [4, 1.2]},
        sharex="col",
    )
    for col, (title, panel_probs) in enumerate(panels):
        _draw_reliability(axes[0, col], axes[1, col], panel_probs, y, n_bins, title)
    fig.suptitle("Reliability diagram", fontsize=14, fontweight="bold")
    fig.tight_layout()
    return _save(fig, out_path)


# --------------------------------------------------------------------------------------------
# image galleries


def plot_confident_mistakes(
    images: np.ndarray,
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    out_path: str | Path,
    *,
    n: int = 24,
) -> Path:
    """Show the ``n`` wrong predictions the model was most confident about.

    Each tile is titled ``"true: cat\\npred: dog 0.97"``. If nothing is wrong the figure says so.

    Args:
        images: uint8 images, shape ``(N, H, W, 3)`` (CIFAR-10: 32x32).
        y_true: integer labels, shape ``(N,)``.
        probs: class probabilities, shape ``(N, C)``.
        class_names: ``C`` class names.
        out_path: where to write the PNG.
        n: maximum number of tiles.

    Returns:
        ``Path(out_path)``.
    """
    p, y = validate_probs_and_labels(probs, y_true)
    imgs = _check_images(images, len(y))
    names = _names(class_names, p.shape[1])
    if n < 1:
        raise ValueError(f"n must be a positive integer; received {n!r}.")
    pred = p.argmax(axis=1)
    conf = p.max(axis=1)
    wrong = np.flatnonzero(pred != y)
    if wrong.size == 0:
        fig = _message_figure(
            "Most confident mistakes", f"No mistakes: all {len(y):,} predictions are correct."
        )
        return _save(fig, out_path)
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:n]
    cols = min(8, len(order))
    rows = math.ceil(len(order) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.55 * cols, 1.95 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    # Long class names get a smaller font so neighbouring tile titles do not collide.
    font = 8 if max(len(name) for name in names) <= 12 else 6.5
    for ax, idx in zip(axes.flat, order, strict=False):
        ax.axis("on")
        _show_image(ax, imgs[idx])
        ax.set_title(
            f"true: {names[y[idx]]}\npred: {names[pred[idx]]} {conf[idx]:.2f}",
            fontsize=font,
            color="#b00020",
            linespacing=1.2,
        )
    fig.suptitle(
        f"Most confident mistakes ({len(order)} of {wrong.size:,} errors, {len(y):,} images)",
        fontsize=12,
        fontweight="bold",
    )
    fig.tight_layout(h_pad=0.6, w_pad=0.4)
    return _save(fig, out_path)


def plot_confused_pairs(
    images: np.ndarray,
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    out_path: str | Path,
    *,
    pairs: int = 6,
    per_pair: int = 6,
) -> Path:
    """Show example images for the most frequent (true, predicted) confusions.

    One row per pair, labelled ``"cat → dog (123 images)"``, with up to ``per_pair`` examples,
    most confident first.

    Args:
        images: uint8 images, shape ``(N, H, W, 3)``.
        y_true: integer labels, shape ``(N,)``.
        probs: class probabilities, shape ``(N, C)``.
        class_names: ``C`` class names.
        out_path: where to write the PNG.
        pairs: number of confusion pairs (rows).
        per_pair: maximum number of examples per pair.

    Returns:
        ``Path(out_path)``.
    """
    p, y = validate_probs_and_labels(probs, y_true)
    imgs = _check_images(images, len(y))
    c = p.shape[1]
    names = _names(class_names, c)
    if pairs < 1 or per_pair < 1:
        raise ValueError(
            f"pairs and per_pair must be positive integers; received {pairs!r}, {per_pair!r}."
        )
    pred = p.argmax(axis=1)
    conf = p.max(axis=1)
    counts = np.zeros((c, c), dtype=np.int64)
    np.add.at(counts, (y, pred), 1)
    np.fill_diagonal(counts, 0)
    flat = np.argsort(-counts.ravel(), kind="stable")
    top = [(int(i // c), int(i % c)) for i in flat[:pairs] if counts.ravel()[i] > 0]
    if not top:
        fig = _message_figure(
            "Most confused class pairs", f"No confusions: all {len(y):,} predictions are correct."
        )
        return _save(fig, out_path)

    cols = per_pair
    fig = plt.figure(figsize=(max(1.4 * cols, 6.0), 1.9 * len(top) + 0.6), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(len(top), 1))
    for subfig, (t, q) in zip(subfigs, top, strict=True):
        members = np.flatnonzero((y == t) & (pred == q))
        members = members[np.argsort(-conf[members], kind="stable")][:per_pair]
        subfig.suptitle(
            f"{names[t]} → {names[q]} ({counts[t, q]:,} images)",
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
            _show_image(ax, imgs[idx])
            ax.set_xlabel(f"p={conf[idx]:.2f}", fontsize=8, labelpad=2)
    fig.suptitle("Most confused class pairs (true → predicted)", fontsize=13, fontweight="bold")
    return _save(fig, out_path)
