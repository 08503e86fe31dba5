"""The run directory's file names and readers (no TensorFlow needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cifar_cnn.calibration import Calibration, read_calibration, write_calibration
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


# --- What a path is: one answer for predict, serve, evaluate and export -----------------

def _fake_run(path: Path, *, status: str = "complete", model: bool = True) -> Path:
    path.mkdir(parents=True)
    (path / "metadata.json").write_text(json.dumps({"name": path.name, "status": status}))
    if model:
        (path / "model.keras").write_bytes(b"not read here")
    return path


def test_resolve_artifact_tells_every_kind_apart(tmp_path: Path) -> None:
    from cifar_cnn.runs import default_run, resolve_artifact

    run = _fake_run(tmp_path / "r")
    art = resolve_artifact(run)
    assert (art.kind, art.format, art.model, art.run.path) == ("run", "keras",
                                                              run / "model.keras", run)
    keras_file = resolve_artifact(run / "model.keras")
    assert (keras_file.kind, keras_file.run.path) == ("keras", run)  # described by its run
    bare = tmp_path / "m.keras"
    bare.write_bytes(b"x")
    assert resolve_artifact(bare).run is None and resolve_artifact(bare).name == "m"
    export = tmp_path / "export" / "litert"
    export.mkdir(parents=True)
    (export / "model.tflite").write_bytes(b"x")
    for given in (export, export / "model.tflite"):
        art = resolve_artifact(given)
        assert (art.kind, art.format, art.model) == ("export", "litert",
                                                    export / "model.tflite")
        assert art.metadata_file == export / "metadata.json" and art.run is None
    saved = tmp_path / "sm"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"x")
    assert resolve_artifact(saved).format == "savedmodel"
    packaged = resolve_artifact(None)
    assert packaged.kind == "packaged" and packaged.run.path == default_run()
    assert resolve_artifact(default_run()).kind == "packaged"


@pytest.mark.parametrize("status,words", [
    ("running", "--resume"), ("failed", "training failed: ValueError: bad"), (None, "no such")])
def test_resolve_artifact_says_why_there_is_no_model(tmp_path: Path, status: str | None,
                                                     words: str) -> None:
    from cifar_cnn.runs import resolve_artifact

    path = tmp_path / "r"
    if status is not None:
        _fake_run(path, status=status, model=False)
        meta = json.loads((path / "metadata.json").read_text())
        meta["error"] = "ValueError: bad"
        (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(RunError) as e:
        resolve_artifact(path)
    assert (words in str(e.value)) if status else ("No trained model" in str(e.value))


def test_split_model_and_inputs(tmp_path: Path) -> None:
    from cifar_cnn.cli import split_model_and_inputs
    from cifar_cnn.errors import CifarCnnError

    run = _fake_run(tmp_path / "r")
    image = tmp_path / "cat.png"
    image.write_bytes(b"x")
    assert split_model_and_inputs([str(run), str(image)]) == (str(run), [str(image)])
    assert split_model_and_inputs([str(image)]) == (None, [str(image)])
    assert split_model_and_inputs(["*.png", "b.jpg"]) == (None, ["*.png", "b.jpg"])
    # A mistyped run (no such path, not an image name) is reported as a model, not an image.
    assert split_model_and_inputs(["runs/typo", "a.png"]) == ("runs/typo", ["a.png"])
    with pytest.raises(CifarCnnError, match="No images given"):
        split_model_and_inputs([str(run)])


def test_calibration_has_one_format(tmp_path: Path) -> None:
    path = RunDir(tmp_path).calibration
    assert read_calibration(path) is None
    cal = {"fit_on": "calibration split", "num_images": 10, "seed": 0,
           "modes": {"none": {"temperature": 0.5, "ece_raw": 0.1, "ece_calibrated": 0.02}},
           "seconds": 1.0}
    write_calibration(path, Calibration.from_dict(cal))
    assert json.loads(path.read_text()) == cal
    assert read_calibration(path) == Calibration.from_dict(cal)
    # A run from before per-mode calibration: its one temperature serves every mode.
    path.write_text(json.dumps({"temperature": 2.0, "fit_on": "validation split"}))
    assert read_calibration(path).temperatures == {"none": 2.0, "flip": 2.0,
                                                   "flip_translate": 2.0}
    path.write_text("{oops")
    with pytest.raises(RunError, match=r"calibration\.json is unreadable"):
        read_calibration(path)


def test_recorded_data_is_one_rule(tmp_path: Path) -> None:
    from cifar_cnn.card import ModelCard

    def recorded_data(meta, data=None):
        return ModelCard.from_metadata(meta).recorded_data(data)

    meta = {"settings": {"data": str(tmp_path)}}
    assert recorded_data(meta, "given") == "given"
    assert recorded_data(meta) == str(tmp_path)
    assert recorded_data({"settings": {"data": str(tmp_path / "gone")}}) is None
    assert recorded_data({}) is None
