"""Evaluation outputs for any number of classes: 3, 10 (CIFAR-10) and 100 (CIFAR-100).

Synthetic labels and probabilities only, no model. Above `MANY_CLASSES` classes the outputs
change form (a heat map without numbers, a ranked list of confusions, a sorted per-class
chart, a shortened terminal table); these tests check that they do, with bounded sizes, and
that the most frequent confusions are the right ones on a constructed case.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_cnn.evaluation.metrics import (
    MANY_CLASSES,
    TOP_CONFUSIONS,
    classification_metrics,
    format_metrics_table,
    top_confusions,
)
from cifar_cnn.evaluation.plots import (
    plot_confident_mistakes,
    plot_confused_pairs,
    plot_confusion_matrix,
    plot_per_class_metrics,
    plot_reliability,
    plot_top_confusions,
    save_figure,
    tick_layout,
)
from cifar_cnn.evaluation.report import TOP_CONFUSIONS_PNG, write_report

C = 100
NAMES = [f"class_{i}" for i in range(C)]


def probs_for(y_pred: np.ndarray, num_classes: int, top: float = 0.6) -> np.ndarray:
    """Rows with ``top`` on the predicted class and the rest spread evenly."""
    probs = np.full((len(y_pred), num_classes), (1.0 - top) / (num_classes - 1))
    probs[np.arange(len(y_pred)), y_pred] = top
    return probs


def constructed() -> tuple[np.ndarray, np.ndarray]:
    """10 images per class, all right except: 6 of class 7 -> 42, 4 of class 3 -> 9,
    4 of class 50 -> 51 (a tie with the previous, later in the matrix) and 1 of 99 -> 0."""
    y_true = np.repeat(np.arange(C), 10)
    y_pred = y_true.copy()
    for true, pred, count in ((7, 42, 6), (3, 9, 4), (50, 51, 4), (99, 0, 1)):
        y_pred[np.flatnonzero(y_true == true)[:count]] = pred
    return y_true, y_pred


@pytest.fixture(scope="module")
def hundred() -> tuple[dict, np.ndarray, np.ndarray]:
    y_true, y_pred = constructed()
    probs = probs_for(y_pred, C)
    return classification_metrics(y_true, probs, NAMES), y_true, probs


def saved_size(fig, path: Path) -> tuple[int, int]:
    save_figure(fig, path)
    with Image.open(path) as image:
        image.load()
        return image.size


# ------------------------------------------------------------------------------------------
# metrics


@pytest.mark.parametrize("num_classes", [3, 10, 100])
def test_metrics_have_one_row_per_class(make_data, num_classes: int) -> None:
    data = make_data(n=400, num_classes=num_classes, seed=1)
    metrics = classification_metrics(data.y_true, data.probs, data.class_names)
    assert list(metrics["per_class"]) == data.class_names
    assert len(metrics["confusion_matrix"]) == num_classes
    assert {len(row) for row in metrics["confusion_matrix"]} == {num_classes}
    pairs = metrics["top_confusions"]
    assert 0 < len(pairs) <= min(TOP_CONFUSIONS, num_classes * (num_classes - 1))
    counts = [p["count"] for p in pairs]
    assert counts == sorted(counts, reverse=True)
    assert json.loads(json.dumps(metrics)) == metrics  # plain JSON, as metrics.json


def test_top_confusions_of_a_constructed_case(hundred) -> None:
    metrics, _, _ = hundred
    assert metrics["accuracy"] == pytest.approx(1 - 15 / 1000)
    assert metrics["top_confusions"] == [
        {"true": "class_7", "predicted": "class_42", "count": 6, "rate": 0.6,
         "share_of_errors": 6 / 15},
        {"true": "class_3", "predicted": "class_9", "count": 4, "rate": 0.4,
         "share_of_errors": 4 / 15},
        {"true": "class_50", "predicted": "class_51", "count": 4, "rate": 0.4,
         "share_of_errors": 4 / 15},
        {"true": "class_99", "predicted": "class_0", "count": 1, "rate": 0.1,
         "share_of_errors": 1 / 15},
    ]


def test_top_confusions_of_three_classes() -> None:
    # true ant: ant, ant, bee; true bee: bee x3; true cow: cow, ant.
    cm = [[2, 1, 0], [0, 3, 0], [1, 0, 1]]
    assert top_confusions(cm, ["ant", "bee", "cow"]) == [
        {"true": "ant", "predicted": "bee", "count": 1, "rate": 1 / 3, "share_of_errors": 0.5},
        {"true": "cow", "predicted": "ant", "count": 1, "rate": 0.5, "share_of_errors": 0.5},
    ]
    assert len(top_confusions(cm, ["ant", "bee", "cow"], k=1)) == 1
    assert top_confusions(np.eye(3, dtype=int), ["a", "b", "c"]) == []


def test_metrics_table_at_100_classes_is_short(hundred) -> None:
    metrics, _, _ = hundred
    table = format_metrics_table(metrics)
    lines = table.splitlines()
    assert len(lines) < 60
    assert "100 classes, sorted by F1: the 10 lowest and the 10 highest" in table
    assert any("(80 more classes)" in line for line in lines)
    rows = {line.split()[0]: line for line in lines if line.startswith("class_")}
    assert len(rows) == 20
    # The lowest F1: the classes that lost images, and those that received them.
    for name in ("class_7", "class_3", "class_50", "class_42", "class_9", "class_51"):
        assert name in rows
    assert lines.index(rows["class_7"]) < lines.index(rows["class_3"])  # F1 ascending
    assert "  1. class_7 -> class_42" in table and "60.00% of class_7" in table
    assert any(line.startswith("macro avg") for line in lines)
    # Class rows and the header still line up.
    assert len({len(line) for line in [lines[0], *rows.values()]}) == 1
    # Every class on request.
    full = format_metrics_table(metrics, max_classes=None)
    assert sum(line.startswith("class_") for line in full.splitlines()) == C
    assert "more classes" not in full and "confusions" not in full


def test_metrics_table_for_few_classes_lists_every_class(make_data) -> None:
    data = make_data(n=60, num_classes=3, seed=2)
    table = format_metrics_table(
        classification_metrics(data.y_true, data.probs, data.class_names))
    assert [line.split()[0] for line in table.splitlines()[2:5]] == data.class_names
    assert "more classes" not in table and "confusions" not in table


# ------------------------------------------------------------------------------------------
# plots


def test_tick_layout_shrinks_then_thins() -> None:
    assert tick_layout(10, 6.0) == (9.0, 1)  # plenty of room: the largest font, every label
    font, step = tick_layout(100, 11.0)
    assert 4.5 <= font < 9.0 and step == 1
    font, step = tick_layout(400, 11.0)
    assert font == 4.5 and step >= 2


def test_confusion_heat_map_at_100_classes(tmp_path: Path, hundred) -> None:
    metrics, _, _ = hundred
    fig = plot_confusion_matrix(metrics["confusion_matrix"], NAMES)
    heat_map = fig.axes[0]
    assert len(fig.axes) == 2  # one heat map and its colour bar
    assert heat_map.get_title() == "Row-normalised (% of true class)"
    assert all(not ax.texts for ax in fig.axes)  # no grid of numbers
    assert [t.get_text() for t in heat_map.get_xticklabels()] == NAMES
    assert [t.get_text() for t in heat_map.get_yticklabels()] == NAMES
    (marks,) = heat_map.get_lines()  # the most frequent confusions, outlined
    assert list(zip(marks.get_xdata(), marks.get_ydata(), strict=True)) == [
        (42, 7), (9, 3), (51, 50), (0, 99)]
    assert fig.get_suptitle() == "Confusion matrix (1,000 images, 100 classes)"
    width, height = saved_size(fig, tmp_path / "cm.png")
    assert 1000 <= width <= 2000 and 1000 <= height <= 2000


def test_confusion_heat_map_thins_labels_at_400_classes(tmp_path: Path) -> None:
    names = [f"c{i}" for i in range(400)]
    fig = plot_confusion_matrix(np.eye(400, dtype=int) * 3, names)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    step = names.index(labels[1])
    assert step >= 2 and labels == names[::step]
    width, height = saved_size(fig, tmp_path / "cm400.png")
    assert width <= 2000 and height <= 2000


def test_confusion_matrix_of_few_classes_keeps_its_numbers(tmp_path: Path) -> None:
    fig = plot_confusion_matrix([[2, 1, 0], [0, 3, 0], [1, 0, 1]], ["ant", "bee", "cow"])
    assert len(fig.axes) == 4  # counts and percentages, each with a colour bar
    assert [t.get_text() for t in fig.axes[0].texts][:3] == ["2", "1", "0"]
    saved_size(fig, tmp_path / "cm3.png")


@pytest.mark.parametrize("num_classes", [3, 100])
def test_top_confusions_chart(tmp_path: Path, hundred, num_classes: int) -> None:
    if num_classes == C:
        cm, names = hundred[0]["confusion_matrix"], NAMES
        expected = ["class_7 → class_42", "class_3 → class_9", "class_50 → class_51",
                    "class_99 → class_0"]
    else:
        cm, names = [[2, 1, 0], [0, 3, 0], [1, 0, 1]], ["ant", "bee", "cow"]
        expected = ["ant → bee", "cow → ant"]
    fig = plot_top_confusions(cm, names)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == expected
    assert len(ax.patches) == len(expected)
    assert ax.yaxis_inverted()  # the most frequent on top
    if num_classes == C:
        assert [p.get_width() for p in ax.patches] == [6, 4, 4, 1]
        assert ax.texts[0].get_text().strip() == "6  (60.00% of class_7)"
    width, height = saved_size(fig, tmp_path / "top.png")
    assert width <= 1100 and height <= 1100


def test_top_confusions_chart_is_bounded_and_handles_none(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 50, size=(C, C))
    fig = plot_top_confusions(cm, NAMES, k=20)
    assert len(fig.axes[0].patches) == 20
    assert saved_size(fig, tmp_path / "top20.png")[1] <= 1100
    none = plot_top_confusions(np.eye(C, dtype=int), NAMES)
    assert none.axes[0].texts[0].get_text() == "No confusions: all 100 predictions are correct."
    with pytest.raises(ValueError, match="k must be a positive integer"):
        plot_top_confusions(cm, NAMES, k=0)


def test_per_class_chart_at_100_classes(tmp_path: Path, make_data) -> None:
    data = make_data(n=1000, num_classes=C, seed=3)
    metrics = classification_metrics(data.y_true, data.probs, data.class_names)
    fig = plot_per_class_metrics(metrics)
    (ax,) = fig.axes
    assert len(ax.patches) == C  # one F1 bar per class
    shown = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(shown) == sorted(data.class_names)
    f1 = [metrics["per_class"][name]["f1"] for name in shown]
    assert f1 == sorted(f1, reverse=True)  # best on top
    np.testing.assert_allclose([p.get_width() for p in ax.patches], f1)
    assert [line.get_label() for line in ax.get_lines()][:2] == ["precision", "recall"]
    width, height = saved_size(fig, tmp_path / "per_class.png")
    assert width <= 1100 and height <= 2200


@pytest.mark.parametrize("num_classes", [3, 100])
def test_other_plots_render(tmp_path: Path, make_data, num_classes: int) -> None:
    data = make_data(n=300, num_classes=num_classes, seed=4)
    metrics = classification_metrics(data.y_true, data.probs, data.class_names)
    args = (data.images, data.y_true, data.probs.astype(np.float64), data.class_names)
    figures = {
        "reliability": plot_reliability(args[2], data.y_true, temperature=1.5),
        "mistakes": plot_confident_mistakes(*args),
        "pairs": plot_confused_pairs(*args, confusion_matrix=metrics["confusion_matrix"]),
        "per_class": plot_per_class_metrics(metrics),
    }
    for name, fig in figures.items():
        width, height = saved_size(fig, tmp_path / f"{name}.png")
        assert width <= 2200 and height <= 2200, (name, width, height)


# ------------------------------------------------------------------------------------------
# report


@pytest.fixture(scope="module")
def report_100(tmp_path_factory: pytest.TempPathFactory, hundred):
    metrics, y_true, probs = hundred
    images = np.random.default_rng(5).integers(0, 256, (len(y_true), 32, 32, 3), np.uint8)
    out = write_report(tmp_path_factory.mktemp("r100") / "report", metrics=metrics,
                       images=images, y_true=y_true, probs=probs, class_names=NAMES)
    return out, metrics


def confusion_rows(page: str) -> list[list[str]]:
    table = re.search(r'<table class="top-confusions".*?</table>', page, re.DOTALL)
    assert table, "no top-confusions table"
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(0).split("<tbody>")[1])
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]


def test_report_at_100_classes(report_100) -> None:
    out, metrics = report_100
    assert (out / TOP_CONFUSIONS_PNG).is_file()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["top_confusions"] == metrics["top_confusions"]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Most frequent confusions</h2>" in page
    assert page.index("<h2>Confusion matrix</h2>") < page.index("Most frequent confusions")
    assert confusion_rows(page)[:2] == [
        ["1", "class_7", "class_42", "6", "60.00%", "40.00%"],
        ["2", "class_3", "class_9", "4", "40.00%", "26.67%"],
    ]
    assert len(confusion_rows(page)) == 4
    # The per-class table scrolls under its header, with the extremes named above it.
    assert '<div class="scroll"><table class="per-class">' in page
    assert page.count("<tr><td>class_") == C
    extremes = re.search(r'<p class="muted" id="f1-extremes">(.*?)</p>', page).group(1)
    assert extremes.startswith("100 classes. Lowest F1: class_7 (")
    assert "Red squares mark the 10 most frequent confusions" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 5  # no history


def test_report_for_three_classes(tmp_path: Path, make_data) -> None:
    data = make_data(n=60, num_classes=3, seed=6)
    metrics = classification_metrics(data.y_true, data.probs, data.class_names)
    out = write_report(tmp_path / "report", metrics=metrics, images=data.images,
                       y_true=data.y_true, probs=data.probs, class_names=data.class_names)
    assert not (out / TOP_CONFUSIONS_PNG).exists()
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Most frequent confusions</h2>" in page
    rows = confusion_rows(page)
    assert [(r[1], r[2], r[3]) for r in rows] == [
        (p["true"], p["predicted"], str(p["count"])) for p in metrics["top_confusions"]]
    assert 'class="scroll"' not in page and "f1-extremes" not in page


def test_report_adds_top_confusions_to_an_older_metrics_dict(tmp_path: Path, make_data):
    data = make_data(n=200, num_classes=MANY_CLASSES + 5, seed=7)
    metrics = classification_metrics(data.y_true, data.probs, data.class_names)
    expected = metrics.pop("top_confusions")
    out = write_report(tmp_path / "report", metrics=metrics, images=data.images,
                       y_true=data.y_true, probs=data.probs, class_names=data.class_names)
    assert "top_confusions" not in metrics  # the caller's dict is left alone
    assert json.loads((out / "metrics.json").read_text())["top_confusions"] == expected
    assert (out / TOP_CONFUSIONS_PNG).is_file()
    page = (out / "report.html").read_text(encoding="utf-8")
    assert len(confusion_rows(page)) == len(expected)
