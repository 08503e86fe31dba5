"""Shared fixtures: tiny synthetic CIFAR-style data made inside the tests, and isolation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = Path(
    os.environ.get("CIFAR_CNN_TEST_DATA", REPO.parent / "shared/datasets/cifar10"))
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own cache and never sees the user's CIFAR_CNN_DATA."""
    monkeypatch.setenv("CIFAR_CNN_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("CIFAR_CNN_DATA", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Integration tests read the real CIFAR-10 (decoding 60,000 images without a cache):
    they are `slow` too, so the inner loop (-m "not slow") leaves them out."""
    for item in items:
        if item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.slow)


def make_images(n: int, label: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Noisy images whose mean colour depends on the label, so a CNN can learn them."""
    base = np.array([(label * 25) % 256, (label * 70) % 256, (255 - label * 25) % 256])
    noise = rng.integers(-40, 40, size=(n, size, size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_folder_dataset(root: Path, train_per_class: int = 12, test_per_class: int = 4,
                         classes: tuple[str, ...] = CLASSES, seed: int = 0) -> Path:
    """A train/<class>/*.png + test/<class>/*.png tree of 32x32 images."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(make_images(n, label, rng)):
                Image.fromarray(img).save(folder / f"{name}_{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def folder_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CIFAR-style folder tree (10 classes, 12 train and 4 test images each)."""
    return write_folder_dataset(tmp_path_factory.mktemp("tiny-cifar"))


@pytest.fixture(scope="session")
def tiny_data():
    """A small in-memory `CifarData` (10 classes, 20 train and 5 test images each)."""
    from cifar_cnn.data import CifarData

    rng = np.random.default_rng(1)
    xs, ys, xt, yt = [], [], [], []
    for label in range(len(CLASSES)):
        xs.append(make_images(20, label, rng))
        ys += [label] * 20
        xt.append(make_images(5, label, rng))
        yt += [label] * 5
    return CifarData.from_arrays(np.concatenate(xs), ys, np.concatenate(xt), yt, CLASSES)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, tiny_data) -> Path:
    """A finished 2-epoch baseline run on `tiny_data`, shared by tests that only read it."""
    from cifar_cnn import train

    root = tmp_path_factory.mktemp("runs")
    return train("baseline", epochs=2, data=tiny_data, runs_dir=root, val_size=20,
                 verbose=0).path


@pytest.fixture(scope="session")
def one_epoch_run(tmp_path_factory: pytest.TempPathFactory, tiny_data):
    """``one_epoch_run(recipe)``: the run of ``train(recipe, epochs=1, batch_size=64)`` on
    `tiny_data`, trained once per recipe and shared by the tests that only read it."""
    from cifar_cnn import train

    runs: dict = {}

    def get(recipe: str):
        if recipe not in runs:  # a training that raises is tried again by the next test
            runs[recipe] = train(recipe, epochs=1, batch_size=64, data=tiny_data,
                                 runs_dir=tmp_path_factory.mktemp(f"one-epoch-{recipe}"),
                                 verbose=0)
        return runs[recipe]

    return get


def shared_cifar10() -> Path:
    """The real dataset in ../shared, or skip."""
    if not (SHARED_CIFAR10 / "train").is_dir():
        pytest.skip(f"real CIFAR-10 not found at {SHARED_CIFAR10}")
    return SHARED_CIFAR10
