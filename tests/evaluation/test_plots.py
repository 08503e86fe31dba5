"""Every plot writes a real, sensibly sized PNG and closes its figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from cifar_cnn.evaluation.metrics import classification_metrics
from cifar_cnn.evaluation.plots import (
    plot_confident_mistakes,
    plot_confused_pairs,
    plot_confusion_matrix,
    plot_per_class_metrics,
    plot_reliability,
    plot_training_curves,
    read_history_csv,
)


def assert_png(path: Path, *, min_side: int = 150, max_side: int = 4000) -> tuple[int, int]:
    """The file is a non-empty PNG Pillow can decode, of plausible size; returns (w, h)."""
    assert path.is_file() and path.stat().st_size > 1000
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        width, height = image.size
    assert min_side <= width <= max_side and min_side <= height <= max_side
    assert plt.get_fignums() == [], "figure left open"
    return width, height


def test_training_curves(tmp_path: Path, history: dict) -> None:
    out = plot_training_curves(history, tmp_path / "sub" / "curves.png")
    assert out == tmp_path / "sub" / "curves.png"
    width, height = assert_png(out)
    assert width > height  # two panels side by side


@pytest.mark.parametrize(
    "columns",
    [
        {"epoch": [0.0, 1.0], "loss": [1.0, 0.5]},  # no accuracy, no validation
        {"loss": [1.0, 0.8, 0.7], "val_accuracy": [0.3, float("nan"), 0.5]},  # no epoch column
        {"epoch": [0.0]},  # nothing to plot: placeholders
    ],
)
def test_training_curves_with_missing_columns(tmp_path: Path, columns: dict) -> None:
    assert_png(plot_training_curves(columns, tmp_path / "curves.png"))


def test_read_history_csv(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text(
        "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\n"
        "0,0.41,0.1,1.6,0.5,1.4\n"
        "1,0.55,0.1,1.2,,1.1\n"
    )
    history = read_history_csv(path)
    assert list(history) == [
        "epoch",
        "accuracy",
        "learning_rate",
        "loss",
        "val_accuracy",
        "val_loss",
    ]
    assert history["epoch"] == [0.0, 1.0]
    assert history["loss"] == [1.6, 1.2]
    assert history["val_accuracy"][0] == 0.5 and np.isnan(history["val_accuracy"][1])


@pytest.mark.parametrize("content", [None, "", "epoch,loss\n"])
def test_read_history_csv_errors_name_the_file(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "history.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=r"history\.csv"):
        read_history_csv(path)


def test_confusion_matrix(tmp_path: Path, synthetic) -> None:
    metrics = classification_metrics(synthetic.y_true, synthetic.probs, synthetic.class_names)
    width, height = assert_png(
        plot_confusion_matrix(
            metrics["confusion_matrix"], synthetic.class_names, tmp_path / "cm.png"
        )
    )
    assert width > 1.5 * height  # counts and normalised panels side by side


def test_confusion_matrix_rejects_bad_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix([[1, 2, 3], [4, 5, 6]], ["a", "b"], tmp_path / "cm.png")
    with pytest.raises(ValueError, match="class_names must have 2 entries"):
        plot_confusion_matrix([[1, 2], [3, 4]], ["a", "b", "c"], tmp_path / "cm.png")
    assert plt.get_fignums() == []


def test_per_class_metrics(tmp_path: Path, synthetic) -> None:
    metrics = classification_metrics(synthetic.y_true, synthetic.probs, synthetic.class_names)
    assert_png(plot_per_class_metrics(metrics, tmp_path / "per_class.png"))
    with pytest.raises(ValueError, match="per_class"):
        plot_per_class_metrics({}, tmp_path / "empty.png")


def test_reliability_with_and_without_temperature(tmp_path: Path, synthetic) -> None:
    single = assert_png(plot_reliability(synthetic.probs, synthetic.y_true, tmp_path / "r1.png"))
    double = assert_png(
        plot_reliability(synthetic.probs, synthetic.y_true, tmp_path / "r2.png", temperature=1.7)
    )
    assert double[0] > 1.6 * single[0]  # the "after temperature scaling" panel was added
    assert abs(double[1] - single[1]) < 0.1 * single[1]


def test_confident_mistakes(tmp_path: Path, synthetic) -> None:
    assert (synthetic.probs.argmax(axis=1) != synthetic.y_true).sum() > 8
    width, height = assert_png(
        plot_confident_mistakes(
            synthetic.images,
            synthetic.y_true,
            synthetic.probs,
            synthetic.class_names,
            tmp_path / "mistakes.png",
            n=8,
        )
    )
    assert width > height  # a single row of 8 tiles


def test_confident_mistakes_when_there_are_none(tmp_path: Path, synthetic) -> None:
    perfect = synthetic.probs.argmax(axis=1)
    assert_png(
        plot_confident_mistakes(
            synthetic.images,
            perfect,
            synthetic.probs,
            synthetic.class_names,
            tmp_path / "none.png",
        )
    )


def test_confident_mistakes_validates_images(tmp_path: Path, synthetic) -> None:
    with pytest.raises(ValueError, match="same length"):
        plot_confident_mistakes(
            synthetic.images[:3],
            synthetic.y_true,
            synthetic.probs,
            synthetic.class_names,
            tmp_path / "x.png",
        )
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        plot_confident_mistakes(
            synthetic.images[..., :2],
            synthetic.y_true,
            synthetic.probs,
            synthetic.class_names,
            tmp_path / "x.png",
        )


def test_confused_pairs(tmp_path: Path, synthetic) -> None:
    assert_png(
        plot_confused_pairs(
            synthetic.images,
            synthetic.y_true,
            synthetic.probs,
            synthetic.class_names,
            tmp_path / "pairs.png",
            pairs=3,
            per_pair=4,
        )
    )


def test_confused_pairs_when_there_are_none(tmp_path: Path, synthetic) -> None:
    assert_png(
        plot_confused_pairs(
            synthetic.images,
            synthetic.probs.argmax(axis=1),
            synthetic.probs,
            synthetic.class_names,
            tmp_path / "pairs.png",
        )
    )
