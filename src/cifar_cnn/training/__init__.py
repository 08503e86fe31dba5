"""Training around Keras ``fit``: progress, CSV log, TensorBoard, checkpoints and resume.

`TrainConfig` imports without TensorFlow (the CLI builds its options from it before
TensorFlow loads); `train` loads it on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["TrainConfig", "train"]
_EXPORTS = {"TrainConfig": "cifar_cnn.training.config", "train": "cifar_cnn.training.trainer"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cifar_cnn.training' has no attribute {name!r}")
