"""Shared fixtures for the evaluation tests: small synthetic CIFAR-like data, no TensorFlow."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest

from tests.conftest import CLASSES as CIFAR10_CLASSES


class Synthetic(NamedTuple):
    """A fake evaluation set: images, labels, model probabilities and class names."""

    images: np.ndarray  # uint8 (N, 32, 32, 3)
    y_true: np.ndarray  # int64 (N,)
    probs: np.ndarray  # float32 (N, C), rows sum to ~1
    class_names: list[str]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def make_synthetic(
    n: int = 48, num_classes: int = 10, *, seed: int = 0, signal: float = 2.0
) -> Synthetic:
    """Random images and plausible softmax outputs that are right more often than chance."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, size=n)
    logits = rng.normal(size=(n, num_classes))
    logits[np.arange(n), y] += signal
    probs = softmax(logits).astype(np.float32)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    names = (
        list(CIFAR10_CLASSES) if num_classes == 10 else [f"class_{i}" for i in range(num_classes)]
    )
    return Synthetic(images, y, probs, names)


@pytest.fixture(scope="session")
def make_data() -> Callable[..., Synthetic]:
    """Factory fixture: ``make_data(n=48, num_classes=10, seed=0, signal=2.0)``."""
    return make_synthetic


@pytest.fixture
def synthetic() -> Synthetic:
    """48 images, 10 classes, roughly 50% accuracy."""
    return make_synthetic()


@pytest.fixture
def history() -> dict[str, list[float]]:
    """Columns as Keras' CSVLogger writes them (0-based epochs, extra columns included)."""
    epochs = np.arange(12, dtype=float)
    return {
        "epoch": epochs.tolist(),
        "accuracy": (0.9 - 0.6 * np.exp(-epochs / 4)).tolist(),
        "images_per_sec": [5000.0] * 12,
        "learning_rate": [0.1] * 12,
        "loss": (0.3 + 1.8 * np.exp(-epochs / 4)).tolist(),
        "val_accuracy": (0.8 - 0.5 * np.exp(-epochs / 4)).tolist(),
        "val_loss": (0.6 + 1.6 * np.exp(-epochs / 4)).tolist(),
    }
