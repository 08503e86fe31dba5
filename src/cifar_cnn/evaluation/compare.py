"""Compare several training runs: a text summary table and an overlay plot of their curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: choose the backend before pyplot is imported

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import PercentFormatter

from cifar_cnn.evaluation.metrics import finite_or_none
from cifar_cnn.evaluation.plots import (
    _column,
    _no_data,
    _save,
    _xy,
    accuracy_key,
    history_epochs,
)

COLUMNS = ("run", "epochs", "train acc", "held-out acc", "test acc", "macro F1", "ECE")


def _last_finite(history: Mapping[str, Sequence[float]], key: str | None) -> float | None:
    col = _column(history, key) if key else None
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


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.2f}%"


def _dec(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _plot_overlay(runs: Sequence[Mapping[str, Any]], names: list[str], out_path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    colors = plt.get_cmap("tab10").colors
    panels = (("Loss", "loss", False), ("Accuracy", None, True))
    for ax, (title, key, is_acc) in zip(axes, panels, strict=True):
        drew = False
        for i, run in enumerate(runs):
            history: Mapping[str, Sequence[float]] = run.get("history") or {}
            if not history:
                continue
            epochs = history_epochs(history)
            train_key = accuracy_key(history) if is_acc else key
            val_key = f"val_{train_key}" if train_key else None
            color = colors[i % len(colors)]
            for col_key, style in ((train_key, "-"), (val_key, "--")):
                col = _column(history, col_key) if col_key else None
                if col is None:
                    continue
                x, y = _xy(epochs, col)
                ax.plot(x, y, linestyle=style, color=color, linewidth=1.7)
                drew = True
        ax.set_title(title, fontsize=12, fontweight="bold")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if is_acc else "loss")
        if not drew:
            _no_data(ax, f"no {title.lower()} history in any run")
            continue
        if is_acc:
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
    # Only runs that drew something get a legend entry.
    handles = [
        Line2D([], [], color=colors[i % len(colors)], linewidth=2.5, label=name)
        for i, (run, name) in enumerate(zip(runs, names, strict=True))
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
    return _save(fig, out_path)


def compare_runs(
    runs: Sequence[Mapping[str, Any]], out_path: str | Path | None = None
) -> tuple[str, Path | None]:
    """Summarise runs side by side and optionally plot their training curves together.

    Args:
        runs: one mapping per run with ``name`` (str), ``history`` (columns as from
            ``plots.read_history_csv``, may be empty) and ``metrics`` (``metrics.json``
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
        test = _pct(s["test_acc"])
        if test:  # a trailing marker column keeps the percentages aligned
            test += " *" if s["test_acc"] == best else "  "
        rows.append(
            [
                s["name"],
                "" if s["epochs"] is None else str(s["epochs"]),
                _pct(s["train_acc"]),
                _pct(s["val_acc"]),
                test,
                _dec(s["macro_f1"]),
                _dec(s["ece"]),
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
        path = _plot_overlay(runs, [s["name"] for s in summaries], Path(out_path))
    return table, path
