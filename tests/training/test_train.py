"""Training writes a complete run directory; kill-and-resume continues where it stopped."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from cifar_cnn import train
from cifar_cnn.data import CifarData
from cifar_cnn.data.augment import make_train_dataset
from cifar_cnn.errors import ConfigError, RunError
from cifar_cnn.predict import Classifier


def _history(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_directory_is_complete(trained_run: Path, tiny_data: CifarData) -> None:
    names = {p.name for p in trained_run.iterdir()}
    assert {"model.keras", "metadata.json", "history.csv", "checkpoints", "tensorboard"} <= names
    meta = json.loads((trained_run / "metadata.json").read_text())
    assert meta["status"] == "complete" and meta["epochs_done"] == 2
    assert meta["class_names"] == list(tiny_data.class_names)
    assert meta["input"]["shape"] == [32, 32, 3] and meta["input"]["range"] == [0, 255]
    assert meta["recipe"]["name"] == "baseline" and meta["settings"]["seed"] == 0
    assert meta["settings"]["monitor"] == "validation"
    assert meta["dataset"]["fingerprint"] == tiny_data.fingerprint
    assert meta["dataset"]["num_train"] == 180 and meta["dataset"]["num_val"] == 20
    # the validation split doubles as the calibration split
    assert meta["settings"]["calibration_size"] == 0
    assert meta["calibration"]["fit_on"] == "validation split"
    assert set(meta["calibration"]["modes"]) == {"none", "flip", "flip_translate"}
    assert {"tensorflow", "keras", "numpy", "cpu"} <= meta["environment"].keys()
    assert 0.0 <= meta["final_metrics"]["val_accuracy"] <= 1.0
    rows = _history(trained_run / "history.csv")
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert float(rows[-1]["images_per_sec"]) > 0
    assert any((trained_run / "tensorboard").rglob("events.out.tfevents.*"))


def test_saved_model_takes_raw_pixels(trained_run: Path, tiny_data: CifarData) -> None:
    clf = Classifier.load(trained_run)
    probs = clf.predict(tiny_data.x_test[:4], tta=False, calibrated=False)
    model = keras.saving.load_model(trained_run / "model.keras", compile=False)
    direct = model.predict(tiny_data.x_test[:4].astype("float32"), verbose=0)
    np.testing.assert_allclose(probs, direct, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_learns_the_tiny_task(tiny_data: CifarData, tmp_path: Path) -> None:
    run = train("baseline", epochs=8, data=tiny_data, runs_dir=tmp_path, verbose=0)
    acc = run.read_metadata()["final_metrics"]["test_accuracy"]
    assert acc > 0.5, acc  # colour-coded classes; chance is 0.1


def test_same_seed_same_start(tiny_data: CifarData, tmp_path: Path) -> None:
    a = train("baseline", epochs=1, data=tiny_data, runs_dir=tmp_path, seed=7, verbose=0)
    b = train("baseline", epochs=1, data=tiny_data, runs_dir=tmp_path, seed=7, verbose=0)
    assert a.path != b.path  # numbered, never overwritten
    ha, hb = _history(a.history), _history(b.history)
    assert ha[0]["loss"] == hb[0]["loss"]  # bit-identical on the same machine and threads


def test_augmentation_pipeline_batches(tiny_data: CifarData) -> None:
    ds = make_train_dataset(tiny_data.x_train, tiny_data.y_train, 64, "flip_translate",
                            num_classes=10)
    xb, yb = next(iter(ds))
    assert tuple(xb.shape) == (64, 32, 32, 3) and tuple(yb.shape) == (64, 10)
    assert float(np.max(xb)) <= 255.0
    with pytest.raises(ConfigError, match="Unknown augmentation"):
        make_train_dataset(tiny_data.x_train, tiny_data.y_train, 8, "mixup")


def test_recipe_with_augmentation_and_label_smoothing_trains(tiny_data: CifarData,
                                                             tmp_path: Path) -> None:
    from cifar_cnn.recipes import get_recipe

    recipe = get_recipe("baseline").replace(augmentation="flip_translate",
                                            label_smoothing=0.1, precision="mixed_bfloat16")
    run = train(recipe, epochs=1, data=tiny_data, runs_dir=tmp_path, verbose=0)
    assert run.model.is_file()
    assert keras.config.dtype_policy().name == "float32"  # policy restored afterwards


def test_resume_of_finished_run_is_refused(trained_run: Path) -> None:
    with pytest.raises(RunError, match="already finished"):
        train(resume=trained_run)


class _Died(Exception):
    """Stands for a process killed at a chosen point of an epoch's end."""


@pytest.mark.slow
@pytest.mark.parametrize("dies", ["after_checkpoint", "before_checkpoint"])
def test_history_has_every_epoch_after_dying_around_a_checkpoint(
        dies: str, tiny_data: CifarData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cifar_cnn.training.checkpoints import EpochCheckpoint

    save = EpochCheckpoint.on_epoch_end

    def dying_save(self: EpochCheckpoint, epoch: int, logs: dict | None = None) -> None:
        if epoch == 2 and dies == "before_checkpoint":
            raise _Died
        save(self, epoch, logs)
        if epoch == 2:
            raise _Died

    monkeypatch.setattr(EpochCheckpoint, "on_epoch_end", dying_save)
    with pytest.raises(_Died):
        train("baseline", epochs=4, data=tiny_data, runs_dir=tmp_path, name="d", verbose=0)
    monkeypatch.setattr(EpochCheckpoint, "on_epoch_end", save)
    run = train(resume=tmp_path / "d", data=tiny_data, verbose=0)
    assert [int(r["epoch"]) for r in _history(run.history)] == [0, 1, 2, 3]
    assert run.read_metadata()["resumed_from_epoch"] == (3 if dies == "after_checkpoint" else 2)


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "cifar_cnn", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _checkpointed_epoch(run: Path) -> int:
    from cifar_cnn.training.checkpoints import latest_epoch

    return latest_epoch(run / "checkpoints")


def _wait_for_epoch(run: Path, epoch: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training ended early:\n{proc.stdout.read()}")
        if _checkpointed_epoch(run) >= epoch:
            return
        time.sleep(0.05)
    pytest.fail("no checkpoint appeared")


@pytest.mark.slow
def test_killed_training_resumes_with_optimizer_state(folder_dataset: Path,
                                                      tmp_path: Path) -> None:
    epochs = 40
    args = ["train", "--data", str(folder_dataset), "--epochs", str(epochs), "--runs-dir",
            str(tmp_path), "--name", "r", "--batch-size", "16"]
    proc = _cli(*args)
    run = tmp_path / "r"
    _wait_for_epoch(run, 3, proc)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait(timeout=30)
    stopped_at = _checkpointed_epoch(run)
    assert stopped_at < epochs and not (run / "model.keras").exists()

    resumed = _cli("train", "--resume", str(run))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert f"Epoch {stopped_at + 1}/{epochs}" in out and "Epoch 1/" not in out
    epochs_logged = [int(r["epoch"]) for r in _history(run / "history.csv")]
    assert epochs_logged == list(range(epochs))
    model = keras.saving.load_model(run / "model.keras")
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["dataset"]["num_train"] == 108  # 12 of 120 held out for calibration
    steps = int(np.ceil(108 / 16))
    assert int(model.optimizer.iterations.numpy()) == epochs * steps  # state carried over
    assert meta["status"] == "complete" and meta["resumed_from_epoch"] == stopped_at


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume(folder_dataset: Path, tmp_path: Path) -> None:
    proc = _cli("train", "--data", str(folder_dataset), "--epochs", "200", "--runs-dir",
                str(tmp_path), "--name", "c")
    _wait_for_epoch(tmp_path / "c", 1, proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert f"cifar-cnn train --resume {tmp_path / 'c'}" in out
    meta = json.loads((tmp_path / "c/metadata.json").read_text())
    assert meta["status"] == "interrupted"


def test_ctrl_c_stops_between_steps(tiny_data: CifarData, tmp_path: Path) -> None:
    begun: list[tuple[int, int]] = []
    ran_on = []

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch

        def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
            begun.append((self.epoch, batch))

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if (self.epoch, batch) == (1, 0):
                os.kill(os.getpid(), signal.SIGINT)
                ran_on.append(True)  # the default handler would have raised on the line above

    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train("baseline", epochs=3, batch_size=64, data=tiny_data, runs_dir=tmp_path, name="i",
              verbose=0, callbacks=[CtrlC()])
    assert ran_on and begun[-1] == (1, 0)  # no step began after it
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C is the caller's again
    meta = json.loads((tmp_path / "i/metadata.json").read_text())
    assert meta["status"] == "interrupted" and _checkpointed_epoch(tmp_path / "i") == 1


def test_data_dependent_init_is_applied_and_saved(tiny_data: CifarData, tmp_path: Path) -> None:
    run = train("baseline", model="airbench", epochs=1, batch_size=64, data=tiny_data,
                runs_dir=tmp_path, verbose=0)
    model = keras.saving.load_model(run.model, compile=False)
    kernel = np.asarray(model.get_layer("whiten").kernel)
    assert np.abs(kernel).max() > 0  # set from the training images, then saved and reloaded


def test_without_monitoring_nothing_is_evaluated(tiny_data: CifarData, tmp_path: Path) -> None:
    class Count(keras.callbacks.Callback):
        epochs = 0

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            Count.epochs += 1

    run = train("baseline", epochs=1, data=tiny_data, runs_dir=tmp_path, monitor_test=False,
                verbose=0, callbacks=[Count()])
    assert Count.epochs == 1  # the caller's callbacks are called too
    meta = run.read_metadata()
    assert meta["settings"]["monitor"] == "none"
    assert meta["final_metrics"]["monitored_accuracy"] is None
    row = _history(run.history)[0]
    assert {v for k, v in row.items() if k.startswith("val_")} <= {"NA"}  # CSVLogger's blank


@pytest.mark.parametrize("recipe", __import__("cifar_cnn.recipes").recipes.list_recipes())
def test_every_recipe_trains_one_epoch(recipe: str, tiny_data: CifarData,
                                       one_epoch_run) -> None:
    run = one_epoch_run(recipe)  # train(recipe, epochs=1, batch_size=64, data=tiny_data)
    clf = Classifier.load(run.path)
    probs = clf.predict(tiny_data.x_test[:3])
    assert probs.shape == (3, 10) and np.isfinite(probs).all()


def test_calibration_split_is_held_out_by_default(tiny_data: CifarData, tmp_path: Path) -> None:
    run = train("baseline", epochs=1, data=tiny_data, runs_dir=tmp_path, verbose=0,
                monitor_test=False)
    meta = run.read_metadata()
    # the recipe's 1000, capped at a tenth of the 200 training images
    assert meta["settings"]["calibration_size"] == 20
    assert meta["dataset"]["num_train"] == 180 and meta["dataset"]["num_calibration"] == 20
    saved = json.loads(run.calibration.read_text())
    assert saved["fit_on"] == "calibration split" and saved["num_images"] == 20
    for mode in saved["modes"].values():
        assert mode["temperature"] > 0 and mode["ece_calibrated"] <= mode["ece_raw"] + 1e-9
    assert Classifier.load(run.path).is_calibrated
    none = train("baseline", epochs=1, data=tiny_data, runs_dir=tmp_path, verbose=0,
                 monitor_test=False, calibration_size=0, name="uncalibrated")
    assert not none.calibration.exists() and none.read_metadata()["dataset"]["num_train"] == 200
    clf = Classifier.load(none.path)
    np.testing.assert_allclose(clf.predict(tiny_data.x_test[:3]),
                               clf.predict(tiny_data.x_test[:3], calibrated=False))
    with pytest.raises(RunError, match="no calibration"):
        clf.predict(tiny_data.x_test[:3], calibrated=True)
