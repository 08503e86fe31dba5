"""Small, uneven and new-class data: batch size, warnings, class weights, fine-tuning from
the packaged model, and a run that fails is marked failed, through the CLI and the API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from cifar_cnn import train
from cifar_cnn.errors import ConfigError
from cifar_cnn.training.trainer import balanced_class_weights
from tests.conftest import write_folder_dataset


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifar_cnn", *args], capture_output=True,
                          text=True, timeout=600)


def test_balanced_class_weights_match_scikit_learn() -> None:
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * 30 + [1] * 10 + [2] * 5)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    got = balanced_class_weights(np.bincount(y))
    np.testing.assert_allclose([got[i] for i in range(3)], expected)


@pytest.mark.slow  # `cifar-cnn evaluate` in a process of its own
def test_a_run_that_fails_before_its_first_epoch_is_marked_failed(tiny_data, tmp_path) -> None:
    class Boom(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            raise ValueError("the disk is full\nsecond line")

    with pytest.raises(ValueError):
        train("baseline", epochs=1, data=tiny_data, runs_dir=tmp_path, verbose=0,
              callbacks=[Boom()])
    meta = json.loads((tmp_path / "baseline" / "metadata.json").read_text())
    assert meta["status"] == "failed" and meta["error"] == "ValueError: the disk is full"
    r = cli("evaluate", str(tmp_path / "baseline"))
    assert r.returncode == 2 and "training failed: ValueError: the disk is full" in r.stderr
    assert "--resume" not in r.stderr


def test_init_of_another_network_is_refused_before_a_run_exists(tiny_data, tmp_path) -> None:
    with pytest.raises(ConfigError, match="--model baseline and --init default disagree"):
        train(model="baseline", epochs=1, data=tiny_data, runs_dir=tmp_path, init="default",
              verbose=0)
    # A bare .keras file records no network: one of other shapes is refused, never half
    # loaded.
    from cifar_cnn.models import create_model

    create_model("airbench", num_classes=10, widths=(32, 128, 128)).save(tmp_path / "q.keras")
    with pytest.raises(ConfigError, match=r"q\.keras records no network, and its weights "
                                          r"do not fit airbench"):
        train("fast94", epochs=1, data=tiny_data, runs_dir=tmp_path / "runs",
              init=str(tmp_path / "q.keras"), verbose=0)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "baseline").exists()


@pytest.mark.slow
def test_small_data_trains_with_a_plan_and_fine_tunes(tmp_path: Path) -> None:
    # 3 new classes of 300 training images.
    data = write_folder_dataset(tmp_path / "data", train_per_class=300, test_per_class=20,
                                classes=("cat", "dog", "ship"))
    # The defaults: the packaged model's network and recipe, batch and epochs sized to 900
    # images, every choice printed and recorded.
    r = cli("train", "--data", str(data), "--epochs", "1", "--runs-dir",
            str(tmp_path / "runs"), "--name", "default")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Starting from the packaged model (robust" in r.stdout
    assert "loaded 26 of 27 weight tensors; new head for 3 classes" in r.stdout
    assert "Plan: 810 images at 32x32: batch 64, 1 epoch = 12 steps" in r.stdout  # 90 calibrate
    meta = json.loads((tmp_path / "runs/default/metadata.json").read_text())
    assert meta["plan"]["init"] == "default" and meta["plan"]["chosen"]["epochs"] == "--epochs"
    assert meta["plan"]["chosen"]["batch_size"] == "the data"
    assert meta["settings"]["init"] == "default" and meta["recipe"]["name"] == "robust"
    assert meta["recipe"]["batch_size"] == 64 and meta["init"]["new_head"]

    # --init none opts out; a batch larger than the data is cut to it, and says so.
    r = cli("train", "--recipe", "quick", "--data", str(data), "--epochs", "1", "--runs-dir",
            str(tmp_path / "runs"), "--name", "scratch", "--calibration-size", "0",
            "--init", "none", "--batch-size", "1000")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Batch size 1000 is more than the 900 training images: using 900." in r.stdout
    assert "packaged model" not in r.stdout
    meta = json.loads((tmp_path / "runs/scratch/metadata.json").read_text())
    assert meta["recipe"]["batch_size"] == 900 and meta["status"] == "complete"
    assert meta["settings"]["init"] == "none" and "init" not in meta

    # From the packaged CIFAR-10 model: its weights, a new 3-class head, frozen batch norm.
    r = cli("train", "--recipe", "fast94", "--data", str(data), "--epochs", "2",
            "--init", "default", "--freeze-epochs", "1", "--runs-dir", str(tmp_path / "runs"),
            "--name", "tuned", "--class-weight", "balanced")
    assert r.returncode == 0, r.stdout + r.stderr
    meta = json.loads((tmp_path / "runs/tuned/metadata.json").read_text())
    assert meta["init"]["new_head"] and meta["init"]["weights_copied"] > 20
    assert meta["settings"]["bn"] == "frozen" and meta["class_names"] == ["cat", "dog", "ship"]
    epochs = [int(row.split(",")[0]) for row in
              (tmp_path / "runs/tuned/history.csv").read_text().splitlines()[1:]]
    assert epochs == [0, 1]  # both phases logged once
    # The next commands in fresh processes: 3 probabilities out.
    img = next((data / "test" / "ship").iterdir())
    r = cli("predict", str(tmp_path / "runs/tuned"), str(img), "--json")
    assert r.returncode == 0, r.stderr
    assert sorted(json.loads(r.stdout)[0]["probabilities"]) == ["cat", "dog", "ship"]
    # The CIFAR-10 weights carried over: the first convolution is the packaged model's.
    tuned = keras.saving.load_model(tmp_path / "runs/tuned/model.keras", compile=False)
    from cifar_cnn.runs import default_run

    packaged = keras.saving.load_model(default_run() / "model.keras", compile=False)
    first = next(i for i, w in enumerate(packaged.weights) if len(w.shape) == 4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(tuned.weights[first]),
                               keras.ops.convert_to_numpy(packaged.weights[first]),
                               atol=1e-2)


@pytest.mark.slow  # `cifar-cnn train` in a process of its own
def test_a_class_of_one_photo_trains_with_a_warning(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, n in (("cat", 12), ("dog", 12), ("owl", 1)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(
                tmp_path / "data" / name / f"{i}.jpg")
    r = cli("train", "--data", str(tmp_path / "data"), "--epochs", "2", "--runs-dir",
            str(tmp_path / "runs"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "classes with fewer than 5 training images: owl (1)" in r.stdout
    assert "(the new head alone for the first 1)" in r.stdout
    meta = json.loads((tmp_path / "runs/robust/metadata.json").read_text())
    assert meta["class_names"] == ["cat", "dog", "owl"] and meta["status"] == "complete"
    assert meta["dataset"]["summary"]["counts"]["train"][2] == 1  # the owl trains, none held
