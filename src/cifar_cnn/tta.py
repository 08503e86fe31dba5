"""Test-time augmentation: class probabilities averaged over several views of each image.

Low in the package: training (to calibrate), evaluation and prediction all use it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cifar_cnn.errors import ConfigError

TTA_MODES = ("flip", "flip_translate")


def tta_mode(tta: bool | str | None, default: str | None = None) -> str | None:
    """Resolve a ``tta`` argument: None -> `default`, True -> `default` or "flip", False -> None.

    Raises:
        ConfigError: for an unknown mode name.
    """
    if tta is None:
        return default
    if tta is True:
        return default or "flip"
    if tta is False or tta == "none":
        return None
    if tta not in TTA_MODES:
        raise ConfigError(f"Unknown test-time augmentation {tta!r}; choose from "
                         f"{', '.join(TTA_MODES)}, or False.")
    return tta


def _forward(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    if hasattr(model, "predict_on_batch") and len(x) <= batch_size:
        return np.asarray(model.predict_on_batch(x), dtype=np.float64)  # no per-call setup
    return model.predict(x, batch_size=batch_size, verbose=0).astype(np.float64)


def _mirrored_probs(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    flipped = np.ascontiguousarray(x[:, :, ::-1])
    return (_forward(model, x, batch_size) + _forward(model, flipped, batch_size)) / 2.0


def predict_probs(model: Any, x: np.ndarray, *, tta: bool | str | None = None,
                  batch_size: int = 500) -> np.ndarray:
    """Class probabilities (float64) for a uint8 batch ``(N, H, W, 3)``.

    Test-time augmentation averages the probabilities of several views:

    - ``"flip"`` (or True): the image and its mirror image.
    - ``"flip_translate"``: as airbench, half the weight on the image and its mirror, a quarter
      each on the mirror pairs of the image shifted one pixel up-left and down-right
      (reflect padding). Six forward passes.
    """
    mode = tta_mode(tta)
    if mode is None:
        return _forward(model, x, batch_size)
    probs = _mirrored_probs(model, x, batch_size)
    if mode == "flip_translate":
        h, w = x.shape[1:3]
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        shifted = [np.ascontiguousarray(padded[:, d:d + h, d:d + w]) for d in (0, 2)]
        probs = 0.5 * probs + 0.25 * sum(_mirrored_probs(model, s, batch_size)
                                         for s in shifted)
    return probs
