"""The run directory's file names and readers (no TensorFlow needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cifar_cnn.errors import RunError
from cifar_cnn.runs import RunDir, read_history_csv


def test_paths_inside_a_run(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.report == tmp_path / "report"
    assert run.metrics == tmp_path / "report" / "metrics.json"
    assert run.report_html == tmp_path / "report" / "report.html"
    assert run.history == tmp_path / "history.csv"
    assert run.calibration == tmp_path / "calibration.json"
    assert (run.checkpoints.name, run.tensorboard.name) == ("checkpoints", "tensorboard")


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
    assert RunDir(tmp_path).read_history().keys() == history.keys()


def test_short_rows_and_text_cells_become_nan(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_loss\n0,1.5\n1,oops,0.9\n\n")
    history = read_history_csv(path)
    assert history["epoch"] == [0.0, 1.0]
    assert np.isnan(history["val_loss"][0]) and np.isnan(history["loss"][1])


@pytest.mark.parametrize("content", [None, "", "epoch,loss\n"])
def test_read_history_csv_errors_name_the_file(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "history.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(RunError, match=r"history\.csv"):
        read_history_csv(path)


def test_run_without_history_or_report(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.read_history() == {}
    assert run.read_metrics() == {}
    (tmp_path / "history.csv").write_text("epoch,loss\n")  # stopped before the first epoch
    with pytest.raises(RunError, match="no data rows"):
        run.read_history()


def test_read_metrics(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.report.mkdir()
    run.metrics.write_text(json.dumps({"accuracy": 0.5}))
    assert run.read_metrics() == {"accuracy": 0.5}
