"""compare_runs: summary table and overlay plot."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from cifar_cnn.evaluation.compare import compare_runs, plot_comparison


def make_runs(history: dict) -> list[dict]:
    short = {key: values[:5] for key, values in history.items()}
    return [
        {
            "name": "baseline",
            "history": history,
            "metrics": {"accuracy": 0.7152, "macro": {"f1": 0.71}, "ece": 0.045},
        },
        {"name": "wide", "history": short, "metrics": {"accuracy": 0.8031}},
        {"name": "no-history", "history": {}, "metrics": {}},
    ]


def rows_by_name(table: str) -> dict[str, str]:
    return {line.split()[0]: line for line in table.splitlines()[2:] if line.strip()}


def test_table_rows_and_best_marker(history: dict) -> None:
    table, path = compare_runs(make_runs(history))
    assert path is None
    header = table.splitlines()[0]
    for column in ("run", "epochs", "train acc", "held-out acc", "test acc", "macro F1", "ECE"):
        assert column in header
    rows = rows_by_name(table)
    base, wide, empty = rows["baseline"], rows["wide"], rows["no-history"]
    # baseline: 12 epochs, final train/val accuracy from the history fixture.
    final_train = history["accuracy"][-1] * 100
    final_val = history["val_accuracy"][-1] * 100
    assert base.split()[1:4] == ["12", f"{final_train:.2f}%", f"{final_val:.2f}%"]
    assert "71.52%" in base and "0.7100" in base and "0.0450" in base and "*" not in base
    assert "80.31% *" in wide and wide.split()[1] == "5"
    assert empty.split() == ["no-history"]  # everything unknown is blank
    assert table.splitlines()[-1] == "* best test accuracy"
    # Percentages stay right-aligned despite the marker.
    assert base.index("71.52%") == wide.index("80.31%")


def test_overlay_png(tmp_path: Path, history: dict) -> None:
    _, path = compare_runs(make_runs(history), tmp_path / "compare.png")
    assert path == tmp_path / "compare.png"
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert 600 < width < 4000 and 200 < height < 3000


def test_overlay_draws_each_run_with_history(history: dict) -> None:
    fig = plot_comparison(make_runs(history))
    loss_ax, acc_ax = fig.axes
    assert [loss_ax.get_title(), acc_ax.get_title()] == ["Loss", "Accuracy"]
    # Two runs have a history: a training and a held-out line each, in the run's colour.
    for ax in (loss_ax, acc_ax):
        lines = ax.get_lines()
        assert [line.get_linestyle() for line in lines] == ["-", "--", "-", "--"]
        assert [len(line.get_xdata()) for line in lines] == [12, 12, 5, 5]
        assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color()
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert legend == ["baseline", "wide", "train", "held-out (val or test)"]


def test_overlay_without_history_says_so() -> None:
    fig = plot_comparison([{"name": "a"}])
    for ax in fig.axes:
        assert ax.get_lines() == []
        assert ax.texts[0].get_text().startswith("no ")


def test_runs_without_any_history_or_metrics(tmp_path: Path) -> None:
    table, path = compare_runs([{"name": "a"}, {"name": "b", "metrics": {}}], tmp_path / "c.png")
    assert "*" not in table and path is not None and path.is_file()


@pytest.mark.parametrize("runs", [[], [{"history": {}}], [{"name": ""}]])
def test_bad_runs(runs: list) -> None:
    with pytest.raises(ValueError, match="run"):
        compare_runs(runs)
