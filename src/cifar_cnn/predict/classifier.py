"""`Classifier`: a trained model with its class names, ready to label new images."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cifar_cnn.data.sources import CLASS_NAMES
from cifar_cnn.errors import RunError
from cifar_cnn.files import read_json
from cifar_cnn.predict.images import load_image, prepare_image
from cifar_cnn.runs import RunDir

ImageLike = str | os.PathLike | Image.Image | np.ndarray


TTA_MODES = ("flip", "flip_translate")


def tta_mode(tta: bool | str | None, default: str | None = None) -> str | None:
    """Resolve a ``tta`` argument: None -> `default`, True -> `default` or "flip", False -> None.

    Raises:
        ValueError: for an unknown mode name.
    """
    if tta is None:
        return default
    if tta is True:
        return default or "flip"
    if tta is False or tta == "none":
        return None
    if tta not in TTA_MODES:
        raise ValueError(f"Unknown test-time augmentation {tta!r}; choose from "
                         f"{', '.join(TTA_MODES)}, or False.")
    return tta


def _mirrored_probs(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    probs = model.predict(x, batch_size=batch_size, verbose=0).astype(np.float64)
    flipped = np.ascontiguousarray(x[:, :, ::-1])
    return (probs + model.predict(flipped, batch_size=batch_size, verbose=0)) / 2.0


def predict_probs(model: Any, x: np.ndarray, *, tta: bool | str | None = None,
                  batch_size: int = 500) -> np.ndarray:
    """Class probabilities for a uint8 batch ``(N, H, W, 3)``.

    Test-time augmentation averages the probabilities of several views:

    - ``"flip"`` (or True): the image and its mirror image.
    - ``"flip_translate"``: as airbench, half the weight on the image and its mirror, a quarter
      each on the mirror pairs of the image shifted one pixel up-left and down-right
      (reflect padding). Six forward passes.
    """
    mode = tta_mode(tta)
    if mode is None:
        return model.predict(x, batch_size=batch_size, verbose=0).astype(np.float64)
    probs = _mirrored_probs(model, x, batch_size)
    if mode == "flip_translate":
        h, w = x.shape[1:3]
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        shifted = [np.ascontiguousarray(padded[:, d:d + h, d:d + w]) for d in (0, 2)]
        probs = 0.5 * probs + 0.25 * sum(_mirrored_probs(model, s, batch_size)
                                         for s in shifted)
    return probs


class Classifier:
    """A trained model plus what is needed to use it: class names, input size, TTA, calibration.

    Example:
        >>> clf = Classifier.load("runs/baseline")  # doctest: +SKIP
        >>> clf.classify(["cat.jpg"], top_k=3)  # doctest: +SKIP
        [[('cat', 0.81), ('dog', 0.12), ('frog', 0.03)]]
    """

    def __init__(self, model: Any, class_names: Sequence[str], *, tta: bool | str = False,
                 temperature: float | None = None, source: str = "") -> None:
        self.model = model
        self.class_names = tuple(class_names)
        self.tta = tta_mode(tta)  # the run's default test-time augmentation, or None
        self.temperature = temperature
        self.source = source
        shape = model.input_shape
        self.input_size = (int(shape[2]), int(shape[1]))  # (width, height) as Pillow counts

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Classifier:
        """Load from a run directory, or from a ``.keras`` file (beside a metadata.json if any).

        Raises:
            RunError: if no model is found there.
        """
        import keras

        p = Path(path)
        if p.is_dir():
            run = RunDir(p)
            model_file = run.model
        else:
            run = RunDir(p.parent)
            model_file = p
        if not model_file.is_file():
            raise RunError(f"No trained model at {model_file}. Give a run directory written by "
                           "`cifar-cnn train` or a .keras model file.")
        model = keras.saving.load_model(model_file, compile=False)
        meta = run.read_metadata() if run.metadata.is_file() else {}
        n_out = int(model.output_shape[-1])
        names = meta.get("class_names") or (
            CLASS_NAMES if n_out == len(CLASS_NAMES) else [f"class_{i}" for i in range(n_out)])
        temperature = None
        if run.calibration.is_file():
            temperature = float(read_json(run.calibration)["temperature"])
        return cls(model, names, tta=meta.get("recipe", {}).get("tta", False),
                   temperature=temperature, source=str(model_file))

    def _batch(self, images: ImageLike | Sequence[ImageLike]) -> np.ndarray:
        if isinstance(images, np.ndarray) and images.ndim == 4:
            if images.shape[1:3] == self.input_size[::-1] and images.shape[3] == 3:
                return images.astype(np.uint8, copy=False)
            return np.stack([prepare_image(Image.fromarray(a.astype(np.uint8)), self.input_size)
                             for a in images])
        if isinstance(images, str | os.PathLike | Image.Image) or (
                isinstance(images, np.ndarray) and images.ndim in (2, 3)):
            images = [images]
        out = []
        for im in images:
            if isinstance(im, Image.Image):
                out.append(prepare_image(im, self.input_size))
            elif isinstance(im, np.ndarray):
                out.append(prepare_image(Image.fromarray(im.astype(np.uint8)), self.input_size))
            else:
                out.append(load_image(im, self.input_size))
        return np.stack(out)

    def predict(self, images: ImageLike | Sequence[ImageLike], *,
                tta: bool | str | None = None,
                calibrated: bool = False) -> np.ndarray:
        """Class probabilities, shape ``(N, num_classes)``.

        Args:
            images: file paths, PIL images, uint8 arrays ``(H, W, 3)``, or a batch
                ``(N, H, W, 3)``; any size and mode (see `cifar_cnn.predict.RESIZE_METHOD`).
            tta: test-time augmentation (see `predict_probs`); None: what the run's recipe
                used; True: that, or "flip" if it used none; False: none.
            calibrated: apply the temperature learned on the run's validation split.

        Raises:
            ImageError: for an unreadable file (use `classify_files` to skip bad files).
            RunError: if `calibrated` but the run has no calibration.
        """
        x = self._batch(images)
        probs = predict_probs(self.model, x, tta=tta_mode(tta, self.tta))
        if calibrated:
            if self.temperature is None:
                raise RunError(f"{self.source} has no calibration. Train with --val-size N and "
                               "run `cifar-cnn evaluate` to learn a temperature first.")
            from cifar_cnn.evaluation.calibration import apply_temperature

            probs = apply_temperature(probs, self.temperature)
        return probs

    def top_k(self, probs: np.ndarray, k: int = 3) -> list[list[tuple[str, float]]]:
        """The `k` most likely ``(class name, probability)`` pairs for each row of `probs`."""
        k = max(1, min(k, len(self.class_names)))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.class_names[j], float(row[j])) for j in idx]
                for row, idx in zip(probs, order, strict=True)]

    def classify(self, images: ImageLike | Sequence[ImageLike], top_k: int = 3,
                 **kwargs: Any) -> list[list[tuple[str, float]]]:
        """Top-k ``(class name, probability)`` pairs for each image."""
        return self.top_k(self.predict(images, **kwargs), top_k)
