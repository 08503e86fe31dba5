"""Distributed training: sharding, the strategies' set-up, and whole runs in fresh processes.

The mirrored runs split this machine's CPU into two logical devices; the multi-worker run
starts two worker processes on 127.0.0.1, as two machines would run them.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from cifar_cnn.data.augment import AlternatingFlipTranslate, make_train_dataset
from cifar_cnn.errors import ConfigError
from cifar_cnn.recipes import get_recipe, list_recipes
from cifar_cnn.training.distribute import make_cluster, read_tf_config
from tests.conftest import SHARED_CIFAR10
from tests.test_cli import assert_quiet, cli


def test_tf_config_is_required_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="needs the TF_CONFIG"):
        read_tf_config()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid"):
        read_tf_config()
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}))
    with pytest.raises(ConfigError, match="not one of its cluster's tasks"):
        read_tf_config()
    config = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert read_tf_config() == config


def test_strategy_names_and_devices_are_checked() -> None:
    assert make_cluster("default") is None
    with pytest.raises(ConfigError, match="Unknown strategy 'horovod'"):
        make_cluster("horovod")
    with pytest.raises(ConfigError, match="--devices needs --strategy mirrored"):
        make_cluster("default", ["GPU:0"])


def test_workers_share_each_global_batch_without_overlap() -> None:
    x = np.zeros((100, 8, 8, 3), np.uint8)
    y = np.arange(100)
    whole = AlternatingFlipTranslate(x, y, 20, seed=5)
    parts = [AlternatingFlipTranslate(x, y, 20, seed=5, shard=(w, 2)) for w in (0, 1)]
    for _ in range(2):  # epochs
        for i in range(len(whole)):
            halves = [p[i][1] for p in parts]
            assert len(halves[0]) == len(halves[1]) == 10
            assert sorted(np.concatenate(halves)) == sorted(whole[i][1])
        for seq in (whole, *parts):
            seq.on_epoch_end()
    with pytest.raises(ConfigError, match="multiple of the 3 workers"):
        AlternatingFlipTranslate(x, y, 20, shard=(0, 3))


def test_per_device_batches_of_the_tf_data_pipeline() -> None:
    """Each worker sees its own images, the same number of steps, split per device."""
    x = np.zeros((90, 8, 8, 3), np.uint8)
    seen = []
    for worker in (0, 1):
        ds = make_train_dataset(x, np.arange(90), 20, "flip", shard=(worker, 2), replicas=2)
        batches = [yb.numpy() for _, yb in ds]
        assert len(batches) == 90 // 20 * 2 and all(len(b) == 5 for b in batches)
        seen.append(np.concatenate(batches))
    assert not set(seen[0]) & set(seen[1])
    alt = make_train_dataset(x, np.arange(90), 20, "alternating_flip_translate",
                             shard=(1, 2), replicas=2)
    assert [len(yb) for _, yb in alt] == [5] * 8
    for augmentation in (None, "alternating_flip_translate"):  # one worker, one device
        ds = make_train_dataset(x, np.arange(90), 20, augmentation, shard=(0, 1))
        assert [len(yb) for _, yb in ds] == [20] * 4


def _history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def _one_recipe_per_network() -> list[str]:
    """A recipe for each registered network, one with progressive resizing where there is
    one (two epochs of it train one downscaled and one full-size epoch). The recipes of a
    network share its code path under a strategy; every recipe goes through the CLI in
    tests/test_cli.py."""
    chosen: dict[str, str] = {}
    for name in list_recipes():
        recipe = get_recipe(name)
        if recipe.model not in chosen or recipe.train_sizes:
            chosen[recipe.model] = name
    return sorted(chosen.values())


@pytest.mark.slow
@pytest.mark.parametrize("recipe", _one_recipe_per_network())
def test_mirrored_on_two_devices_equals_one_device(recipe: str, folder_dataset: Path,
                                                   tmp_path: Path) -> None:
    """Two epochs of one global batch of all 100 training images (so the order of the images
    cannot differ), in float32: two logical CPU devices end where one device does, on the
    20 validation images too. The two trainings are separate processes that share nothing
    but the (atomically written) data cache, so they run at the same time."""
    from concurrent.futures import ThreadPoolExecutor

    common = ("train", "--recipe", recipe, "--epochs", "2", "--batch-size", "100",
              "--precision", "float32", "--val-size", "20",
              "--data", str(folder_dataset), "--runs-dir", str(tmp_path))
    with ThreadPoolExecutor(2) as pool:
        one, two = pool.map(lambda extra: cli(*common, *extra), [
            ("--name", "one"),
            ("--name", "two", "--strategy", "mirrored", "--devices", "CPU:0,CPU:1")])
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert_quiet(two.stderr)
    meta = json.loads((tmp_path / "two/metadata.json").read_text())
    assert meta["distribution"] == {"strategy": "mirrored", "num_workers": 1,
                                    "num_replicas": 2, "devices_per_worker": 2}
    for a, b in zip(_history(tmp_path / "one"), _history(tmp_path / "two"), strict=True):
        for key in ("loss", "val_loss", "val_accuracy"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-3, abs=1e-6), key
    from cifar_cnn.data import load_cifar10

    x = load_cifar10(folder_dataset).x_test
    probs = [keras.saving.load_model(tmp_path / n / "model.keras").predict(x, verbose=0)
             for n in ("one", "two")]
    assert np.abs(probs[0] - probs[1]).max() < 0.02


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _start_workers(args: list[str], cwd: Path, logs: Path) -> list[subprocess.Popen]:
    ports = _free_ports(2)
    procs = []
    for index in (0, 1):
        env = os.environ.copy()
        env["TF_CONFIG"] = json.dumps({
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index}})
        log = open(logs / f"worker{index}-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "cifar_cnn", "train", *args], cwd=cwd, env=env,
            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True))
    return procs


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=60)


def _subset(root: Path, train: int, test: int) -> Path:
    """A class-folder tree of the first images of each class of the real CIFAR-10."""
    for split, n in (("train", train), ("test", test)):
        for folder in sorted((SHARED_CIFAR10 / split).iterdir()):
            (root / split / folder.name).mkdir(parents=True)
            for f in sorted(folder.iterdir())[:n]:
                (root / split / folder.name / f.name).symlink_to(f)
    return root


@pytest.mark.slow
@pytest.mark.integration
def test_two_workers_train_resume_after_a_crash_and_finish(tmp_path: Path) -> None:
    """fast94's network on 2,000 real images, 2 workers: one is killed after the first
    checkpoint, both are restarted with the same command, and the run carries on from the
    checkpoint to a model that a fresh process loads and that beats chance by far.

    Two epochs: the first before the crash, the second after the restart (the kill lands
    within 50 ms of the first checkpoint, an epoch takes far longer)."""
    if not (SHARED_CIFAR10 / "train").is_dir():
        pytest.skip(f"no CIFAR-10 image folders at {SHARED_CIFAR10}")
    data = _subset(tmp_path / "data", train=200, test=50)
    args = ["--recipe", "fast94", "--epochs", "2", "--batch-size", "250", "--data", str(data),
            "--runs-dir", "runs", "--name", "job", "--no-monitor", "--quiet",
            "--strategy", "multi-worker"]
    run = tmp_path / "runs/job"
    procs = _start_workers(args, tmp_path, tmp_path)
    try:
        deadline = time.monotonic() + 300
        while not (run / "checkpoints/epoch-0001.weights.h5").is_file():
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            assert all(p.poll() is None for p in procs), "a worker ended early"
            time.sleep(0.05)
        os.killpg(procs[1].pid, signal.SIGKILL)  # a worker dies mid-run
        assert procs[0].wait(timeout=120) != 0  # the other one notices and stops
    finally:
        _stop(procs)
    assert json.loads((run / "metadata.json").read_text())["status"] == "interrupted"

    procs = _start_workers(args, tmp_path, tmp_path)  # the job is restarted
    try:
        codes = [p.wait(timeout=600) for p in procs]
    finally:
        _stop(procs)
    logs = {p.name: p.read_text() for p in tmp_path.glob("worker*.log")}
    assert codes == [0, 0], logs
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["status"] == "complete" and meta["epochs_done"] == 2
    assert meta["resumed_from_epoch"] == 1  # the second epoch was trained after the restart
    assert meta["distribution"]["num_workers"] == 2
    assert [int(r["epoch"]) for r in _history(run)] == [0, 1]
    assert sorted(p.name for p in run.iterdir()) == [
        "calibration.json", "checkpoints", "history.csv", "metadata.json", "model.keras",
        "tensorboard"]

    ev = cli("evaluate", str(run), "--json", "--no-report")  # a fresh process loads it
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["accuracy"] > 0.35  # chance is 0.10
