"""Compare several training runs: a text summary table and an overlay plot of their curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from cifar_cnn.evaluation.metrics import finite_or_none, format_number, format_percent
from cifar_cnn.evaluation.plots import (
    accuracy_key,
    history_column,
    history_epochs,
    history_series,
    save_figure,
    style_curve_axes,
)

COLUMNS = ("run", "epochs", "train acc", "held-out acc", "test acc", "macro F1", "ECE")


def _last_finite(history: Mapping[str, Sequence[float]], key: str | None) -> float | None:
    col = history_column(history, key)
    if col is None:
        return None
    finite = col[np.isfinite(col)]
    return float(finite[-1]) if finite.size else None


def _summary(run: Mapping[str, Any]) -> dict[str, Any]:
    history: Mapping[str, Sequence[float]] = run.get("history") or {}
    metrics: Mapping[str, Any] = run.get("metrics") or {}
    acc_key = accuracy_key(history)
    epochs = len(history_epochs(history)) if history else 0
    macro = metrics.get("macro")
    return {
        "name": str(run["name"]),
        "epochs": epochs or None,
        "train_acc": _last_finite(history, acc_key),
        "val_acc": _last_finite(history, f"val_{acc_key}" if acc_key else "val_accuracy"),
        "test_acc": finite_or_none(metrics.get("accuracy")),
        "macro_f1": finite_or_none(macro.get("f1")) if isinstance(macro, Mapping) else None,
        "ece": finite_or_none(metrics.get("ece")),
    }


def plot_comparison(runs: Sequence[Mapping[str, Any]]) -> Figure:
    """Overlay the runs' training curves: loss and accuracy, one colour per run, training
    solid and held-out dashed.

    Args:
        runs: mappings with ``name`` and ``history`` as for `compare_runs`.

    Returns:
        The figure: a "Loss" and an "Accuracy" axes; the legend names each run that has a
        history, then the two line styles.
    """
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    colors = colormaps["tab10"].colors
    panels = (("Loss", "loss", False), ("Accuracy", None, True))
    for ax, (title, key, is_acc) in zip(axes, panels, strict=True):
        drew = False
        for i, run in enumerate(runs):
            history: Mapping[str, Sequence[float]] = run.get("history") or {}
            if not history:
                continue
            train_key = accuracy_key(history) if is_acc else key
            val_key = f"val_{train_key}" if train_key else None
            color = colors[i % len(colors)]
            for col_key, style in ((train_key, "-"), (val_key, "--")):
                series = history_series(history, col_key)
                if series is None:
                    continue
                x, y = series
                ax.plot(x, y, linestyle=style, color=color, linewidth=1.7)
                drew = True
        style_curve_axes(ax, title, is_acc=is_acc, drew=drew,
                         empty=f"no {title.lower()} history in any run")
    # Only runs that drew something get a legend entry.
    handles = [
        Line2D([], [], color=colors[i % len(colors)], linewidth=2.5, label=str(run["name"]))
        for i, run in enumerate(runs)
        if run.get("history")
    ]
    handles += [
        Line2D([], [], color="0.3", linestyle="-", label="train"),
        Line2D([], [], color="0.3", linestyle="--", label="held-out (val or test)"),
    ]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), 6),
        frameon=False,
        fontsize=9,
    )
    fig.suptitle("Run comparison", fontsize=14, fontweight="bold")
    return fig


def compare_runs(
    runs: Sequence[Mapping[str, Any]], out_path: str | Path | None = None
) -> tuple[str, Path | None]:
    """Summarise runs side by side and optionally plot their training curves together.

    Args:
        runs: one mapping per run with ``name`` (str), ``history`` (columns as from
            `cifar_cnn.runs.RunDir.read_history`, may be empty) and ``metrics`` (``metrics.json``
            content, may be empty or partial).
        out_path: if given, where to write the overlay PNG (loss and accuracy; one colour per
            run, training solid, validation dashed).

    Returns:
        ``(table, path)``: a fixed-width text table with one row per run (name, epochs, final
        train and validation accuracy, test accuracy, macro F1, ECE; blank where unknown,
        ``*`` marking the best test accuracy) and the PNG path, or None without ``out_path``.

    Raises:
        ValueError: if ``runs`` is empty or a run has no ``name``.
    """
    if not runs:
        raise ValueError("runs must contain at least one run; received none.")
    for i, run in enumerate(runs):
        if not isinstance(run, Mapping) or not run.get("name"):
            raise ValueError(
                f"runs[{i}] must be a mapping with a non-empty 'name'; received "
                f"{type(run).__name__}."
            )
    summaries = [_summary(run) for run in runs]
    test_accs = [s["test_acc"] for s in summaries if s["test_acc"] is not None]
    best = max(test_accs) if test_accs else None

    rows = []
    for s in summaries:
        test = format_percent(s["test_acc"], missing="")
        if test:  # a trailing marker column keeps the percentages aligned
            test += " *" if s["test_acc"] == best else "  "
        rows.append(
            [
                s["name"],
                "" if s["epochs"] is None else str(s["epochs"]),
                format_percent(s["train_acc"], missing=""),
                format_percent(s["val_acc"], missing=""),
                test,
                format_number(s["macro_f1"], missing=""),
                format_number(s["ece"], missing=""),
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(COLUMNS)]

    def line(cells: Sequence[str]) -> str:
        first = f"{cells[0]:<{widths[0]}}"
        rest = [f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    lines = [line(COLUMNS), "  ".join("-" * w for w in widths)]
    lines += [line(r) for r in rows]
    if best is not None:
        lines.append("* best test accuracy")
    table = "\n".join(lines)

    path = None
    if out_path is not None:
        path = save_figure(plot_comparison(runs), out_path)
    return table, path
