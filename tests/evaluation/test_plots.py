"""Plots: what each figure draws (axes, titles, tick labels, tiles), and that it saves as PNG.

Which items a figure shows is chosen in `cifar_cnn.evaluation.selection` (tested there with
known answers); here the figures are checked to show exactly that choice.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from cifar_cnn.calibration import apply_temperature, expected_calibration_error
from cifar_cnn.evaluation.metrics import classification_metrics
from cifar_cnn.evaluation.plots import (
    history_series,
    plot_confident_mistakes,
    plot_confused_pairs,
    plot_confusion_matrix,
    plot_per_class_metrics,
    plot_reliability,
    plot_training_curves,
    save_figure,
)
from cifar_cnn.evaluation.selection import (
    confused_examples,
    most_confident_mistakes,
    most_confused_pairs,
)


def png_size(fig: Figure, path: Path) -> tuple[int, int]:
    """Save ``fig``; the file is a non-empty PNG Pillow can decode, of plausible size."""
    assert save_figure(fig, path) == path
    assert path.stat().st_size > 1000
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        width, height = image.size
    assert 150 <= width <= 4000 and 150 <= height <= 4000
    return width, height


def titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def tick_texts(labels) -> list[str]:
    return [label.get_text() for label in labels]


def visible_tiles(fig: Figure) -> list:
    """Axes showing an image (galleries switch the unused grid cells off)."""
    return [ax for ax in fig.get_axes() if ax.axison and ax.images]


@pytest.mark.slow  # a fresh interpreter
def test_importing_and_drawing_leave_the_backend_alone(tmp_path: Path) -> None:
    # In a fresh interpreter, as a notebook user would: their backend stays theirs, and no
    # pyplot figure is opened (so nothing is shown twice or leaks).
    code = (
        "import sys, matplotlib; matplotlib.use('svg'); "
        "import cifar_cnn.evaluation.report, cifar_cnn.evaluation.compare as c; "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; "
        "from cifar_cnn.evaluation.plots import plot_confusion_matrix as p, save_figure as s; "
        f"s(p([[1, 0], [0, 1]], ['a', 'b']), {str(tmp_path / 'cm.png')!r}); "
        "c.plot_comparison([{'name': 'a', 'history': {'loss': [1.0]}}]); "
        "import matplotlib.pyplot as plt; "
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend(); "
        "assert plt.get_fignums() == [], plt.get_fignums()"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, check=False)
    assert result.returncode == 0, result.stderr[-2000:]


def test_training_curves(tmp_path: Path, history: dict) -> None:
    fig = plot_training_curves(history)
    assert titles(fig) == ["Loss", "Accuracy"]
    assert fig.get_suptitle() == "Training curves"
    loss_ax, acc_ax = fig.axes
    assert [line.get_label() for line in loss_ax.get_lines()] == ["train", "validation"]
    # The star marks the best held-out accuracy: the last epoch (12) of the rising fixture.
    best = max(history["val_accuracy"])
    labels = [line.get_label() for line in acc_ax.get_lines()]
    assert labels == ["train", "validation", f"best validation {best * 100:.2f}% (epoch 12)"]
    np.testing.assert_allclose(acc_ax.get_lines()[1].get_xdata(), np.arange(1, 13))
    width, height = png_size(fig, tmp_path / "sub" / "curves.png")
    assert width > height  # two panels side by side


def test_training_curves_label_the_monitored_split() -> None:
    fig = plot_training_curves({"loss": [1.0], "val_loss": [1.2]}, val_label="test")
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["train", "test"]


@pytest.mark.parametrize(
    ("columns", "lines"),
    [
        ({"epoch": [0.0, 1.0], "loss": [1.0, 0.5]}, (1, 0)),  # no accuracy, no validation
        ({"loss": [1.0, 0.8, 0.7], "val_accuracy": [0.3, float("nan"), 0.5]}, (1, 2)),
        ({"epoch": [0.0]}, (0, 0)),  # nothing to plot: placeholders
    ],
)
def test_training_curves_with_missing_columns(tmp_path: Path, columns: dict, lines) -> None:
    fig = plot_training_curves(columns)
    assert tuple(len(ax.get_lines()) for ax in fig.axes) == lines
    for ax, n in zip(fig.axes, lines, strict=True):
        if n == 0:
            assert any("no " in text.get_text() for text in ax.texts)  # the placeholder note
    png_size(fig, tmp_path / "curves.png")


def test_history_series_pairs_epochs_with_values() -> None:
    x, y = history_series({"epoch": [0.0, 1.0, 2.0], "loss": [3.0, 2.0]}, "loss")
    assert x.tolist() == [1.0, 2.0] and y.tolist() == [3.0, 2.0]  # 1-based, same length
    assert history_series({"loss": [float("nan")]}, "loss") is None
    assert history_series({"loss": [1.0]}, None) is None


def test_confusion_matrix(tmp_path: Path) -> None:
    names = ["ant", "bee", "cow"]
    cm = [[2, 1, 0], [0, 3, 0], [1, 0, 1]]
    fig = plot_confusion_matrix(cm, names)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["Counts", "Row-normalised (% of true class)"]
    assert len(fig.axes) == 4  # two matrices, two colour bars
    assert fig.get_suptitle() == "Confusion matrix (8 images)"
    counts, normed = panels
    for ax in panels:
        assert tick_texts(ax.get_xticklabels()) == names
        assert tick_texts(ax.get_yticklabels()) == names
        assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    # Cell texts row by row: counts, then percentages of each true class.
    assert [t.get_text() for t in counts.texts] == ["2", "1", "0", "0", "3", "0", "1", "0", "1"]
    assert [t.get_text() for t in normed.texts] == [
        "66.7", "33.3", "0.0", "0.0", "100.0", "0.0", "50.0", "0.0", "50.0"
    ]
    width, height = png_size(fig, tmp_path / "cm.png")
    assert width > 1.5 * height  # counts and normalised panels side by side


def test_confusion_matrix_leaves_out_cell_texts_for_many_classes() -> None:
    names = [f"c{i}" for i in range(26)]
    fig = plot_confusion_matrix(np.eye(26, dtype=int), names)
    assert all(not ax.texts for ax in fig.axes)
    assert tick_texts(fig.axes[0].get_xticklabels()) == names


def test_confusion_matrix_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix([[1, 2, 3], [4, 5, 6]], ["a", "b"])
    with pytest.raises(ValueError, match="class_names must have 2 entries"):
        plot_confusion_matrix([[1, 2], [3, 4]], ["a", "b", "c"])


def test_per_class_metrics(tmp_path: Path, synthetic) -> None:
    metrics = classification_metrics(synthetic.y_true, synthetic.probs, synthetic.class_names)
    fig = plot_per_class_metrics(metrics)
    (ax,) = fig.axes
    assert tick_texts(ax.get_xticklabels()) == synthetic.class_names
    assert len(ax.patches) == 3 * len(synthetic.class_names)  # precision, recall, F1 bars
    legend = tick_texts(ax.get_legend().get_texts())
    assert legend == ["macro F1 = " + f"{metrics['macro']['f1']:.3f}", "precision", "recall", "F1"]
    f1_bars = ax.containers[2]
    np.testing.assert_allclose(
        [bar.get_height() for bar in f1_bars],
        [metrics["per_class"][name]["f1"] for name in synthetic.class_names],
    )
    png_size(fig, tmp_path / "per_class.png")
    with pytest.raises(ValueError, match="per_class"):
        plot_per_class_metrics({})


def test_reliability_with_and_without_temperature(tmp_path: Path, synthetic) -> None:
    probs = synthetic.probs.astype(np.float64)
    y = synthetic.y_true
    single = plot_reliability(probs, y)
    assert len(single.axes) == 2  # diagram and histogram
    ece = expected_calibration_error(probs, y)
    assert single.axes[0].get_title() == f"ECE = {ece:.4f}"

    double = plot_reliability(probs, y, temperature=1.7)
    assert len(double.axes) == 4  # a second column after temperature scaling
    ece_after = expected_calibration_error(apply_temperature(probs, 1.7), y)
    diagram_titles = [t for t in titles(double) if "ECE" in t]
    assert diagram_titles == [
        f"Before calibration\nECE = {ece:.4f}",
        f"After temperature scaling (T=1.700)\nECE = {ece_after:.4f}",
    ]
    w1, h1 = png_size(single, tmp_path / "r1.png")
    w2, h2 = png_size(double, tmp_path / "r2.png")
    assert w2 > 1.6 * w1 and abs(h2 - h1) < 0.1 * h1


def test_confident_mistakes_show_the_selection(tmp_path: Path, synthetic) -> None:
    probs, y, names = synthetic.probs, synthetic.y_true, synthetic.class_names
    errors = int((probs.argmax(axis=1) != y).sum())
    assert errors > 8
    fig = plot_confident_mistakes(synthetic.images, y, probs, names, n=8)
    tiles = visible_tiles(fig)
    assert len(tiles) == 8
    chosen = most_confident_mistakes(y, probs, 8)
    expected = [
        f"true: {names[y[i]]}\npred: {names[probs[i].argmax()]} {probs[i].max():.2f}"
        for i in chosen
    ]
    assert [ax.get_title() for ax in tiles] == expected
    for ax, i in zip(tiles, chosen, strict=True):
        np.testing.assert_array_equal(ax.images[0].get_array(), synthetic.images[i])
    assert fig.get_suptitle() == f"Most confident mistakes (8 of {errors} errors, 48 images)"
    width, height = png_size(fig, tmp_path / "mistakes.png")
    assert width > height  # a single row of 8 tiles


def test_confident_mistakes_grid_wraps_after_eight(synthetic) -> None:
    fig = plot_confident_mistakes(
        synthetic.images, synthetic.y_true, synthetic.probs, synthetic.class_names, n=10
    )
    assert len(visible_tiles(fig)) == 10
    assert len(fig.axes) == 16  # 2 rows of 8, the last 6 switched off


def test_confident_mistakes_when_there_are_none(tmp_path: Path, synthetic) -> None:
    perfect = synthetic.probs.argmax(axis=1)
    fig = plot_confident_mistakes(synthetic.images, perfect, synthetic.probs, synthetic.class_names)
    assert visible_tiles(fig) == []
    assert titles(fig) == ["Most confident mistakes"]
    assert fig.axes[0].texts[0].get_text() == "No mistakes: all 48 predictions are correct."
    png_size(fig, tmp_path / "none.png")


def test_confused_pairs_show_the_selection(tmp_path: Path, synthetic) -> None:
    probs, y, names = synthetic.probs, synthetic.y_true, synthetic.class_names
    cm = classification_metrics(y, probs, names)["confusion_matrix"]
    fig = plot_confused_pairs(
        synthetic.images, y, probs, names, confusion_matrix=cm, pairs=3, per_pair=4
    )
    rows = fig.subfigs
    top = most_confused_pairs(cm, 3)
    assert [row.get_suptitle() for row in rows] == [
        f"{names[t]} → {names[q]} ({n} images)" for t, q, n in top
    ]
    for row, (t, q, n) in zip(rows, top, strict=True):
        assert len(row.axes) == 4
        tiles = visible_tiles(row)
        shown = confused_examples(y, probs, t, q, 4)
        assert len(tiles) == len(shown) == min(n, 4)
        for ax, i in zip(tiles, shown, strict=True):
            np.testing.assert_array_equal(ax.images[0].get_array(), synthetic.images[i])
            assert ax.get_xlabel() == f"p={probs[i].max():.2f}"
    png_size(fig, tmp_path / "pairs.png")


def test_confused_pairs_when_there_are_none(tmp_path: Path, synthetic) -> None:
    perfect = synthetic.probs.argmax(axis=1)
    cm = classification_metrics(perfect, synthetic.probs, synthetic.class_names)[
        "confusion_matrix"
    ]
    fig = plot_confused_pairs(
        synthetic.images, perfect, synthetic.probs, synthetic.class_names, confusion_matrix=cm
    )
    assert titles(fig) == ["Most confused class pairs"]
    png_size(fig, tmp_path / "pairs.png")


def test_gallery_arguments_are_checked(synthetic) -> None:
    args = (synthetic.images, synthetic.y_true, synthetic.probs, synthetic.class_names)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        plot_confident_mistakes(*args, n=0)
    with pytest.raises(ValueError, match="per_pair must be positive"):
        plot_confused_pairs(*args, confusion_matrix=np.eye(10), per_pair=0)
