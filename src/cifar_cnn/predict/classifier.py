"""`Classifier`: the one inference core. A trained model with its input spec, test-time
augmentation and calibration, ready to label new images.

The CLI (`cifar-cnn predict`), the HTTP service (`cifar_cnn.serve`), evaluation and the
Python API all go through it: images are prepared by the model's `InputSpec`, options are
resolved by `Classifier.options`, probabilities are computed by `Classifier.predict` (or
its two halves, `raw_probs` and `finish`, which the service's batcher splits), and every
per-image result is built by `predictions`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from cifar_cnn.calibration import apply_temperature, tta_key
from cifar_cnn.card import ModelCard, read_card
from cifar_cnn.data.sources import CLASS_NAMES
from cifar_cnn.errors import ConfigError, ImageError, RunError
from cifar_cnn.images import MAX_PIXELS, InputSpec, expand_inputs
from cifar_cnn.runs import Artifact, resolve_artifact
from cifar_cnn.runtimes import open_runner
from cifar_cnn.tta import predict_probs, tta_mode

ImageLike = str | os.PathLike | Image.Image | np.ndarray


@dataclass(frozen=True)
class Prediction:
    """The result for one input: every class's probability, or why there is none."""

    file: str
    probabilities: dict[str, float] | None = None  # all classes, in the model's order
    top_k: list[tuple[str, float]] | None = None  # the most likely, most likely first
    calibrated: bool = False
    tta: str | None = None  # the test-time augmentation used
    error: str | None = None

    @property
    def label(self) -> str | None:
        """The most likely class."""
        return self.top_k[0][0] if self.top_k else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON record of ``cifar-cnn predict --json/--jsonl`` and ``POST /v1/predict``."""
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        return {"file": self.file, "label": self.label, "probabilities": self.probabilities,
                "top_k": [{"class": c, "probability": p} for c, p in self.top_k or ()],
                "calibrated": self.calibrated, "tta": self.tta}


def top_k(probs: np.ndarray, class_names: Sequence[str],
          k: int = 3) -> list[list[tuple[str, float]]]:
    """The `k` most likely ``(class name, probability)`` pairs for each row of `probs`."""
    k = max(1, min(k, len(class_names)))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(class_names[j], float(row[j])) for j in idx]
            for row, idx in zip(probs, order, strict=True)]


def predictions(names: Sequence[str], probs: np.ndarray, class_names: Sequence[str], *,
                k: int, calibrated: bool, tta: str | None) -> list[Prediction]:
    """A `Prediction` per row of `probs` (the one place records are built)."""
    return [Prediction(name, probabilities=dict(zip(class_names, map(float, row), strict=True)),
                       top_k=top, calibrated=calibrated, tta=tta)
            for name, row, top in zip(names, probs, top_k(probs, class_names, k), strict=True)]


class Classifier:
    """A trained model plus what is needed to use it: input spec, TTA, calibration.

    Probabilities are calibrated by default: training fits a temperature for each
    test-time augmentation mode on held-out images (the run's calibration).

    Example:
        >>> clf = Classifier.load("runs/fast94")  # doctest: +SKIP
        >>> clf.classify(["cat.jpg"], top_k=3)  # doctest: +SKIP
        [[('cat', 0.81), ('dog', 0.12), ('frog', 0.03)]]
    """

    def __init__(self, model: Any, card: ModelCard, *, source: str = "") -> None:
        self.model = model
        self.card = card  # what the model is: classes, input spec, TTA, calibration, ...
        self.source = source

    @property
    def spec(self) -> InputSpec:
        return self.card.input

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.card.class_names

    @property
    def input_size(self) -> tuple[int, int]:
        """``(width, height)`` of the model's input, as Pillow counts."""
        return self.card.input.size

    @property
    def name(self) -> str:
        """What the model is served and reported as: its run's name, else its file's."""
        return self.card.name

    @property
    def tta(self) -> str | None:
        """The model's default test-time augmentation (its recipe's), or None."""
        return tta_mode(self.card.default_tta)

    @property
    def baked_temperature(self) -> float | None:
        """The temperature an export applies itself (calibrated probabilities out, for no
        test-time augmentation); None for a Keras model."""
        return self.card.baked_temperature

    @property
    def temperatures(self) -> dict[str, float]:
        """``{tta key: temperature}``: the run's calibration, or an export's baked one."""
        if self.baked_temperature is not None:
            return {tta_key(None): self.baked_temperature}
        return self.card.temperatures

    @classmethod
    def load(cls, path: str | os.PathLike[str] | Artifact | None = None) -> Classifier:
        """Load any model: a run directory, a ``.keras`` file (beside a metadata.json if
        any), an export (a SavedModel folder, a ``.tflite`` or ``.onnx`` file, or the folder
        holding it), or, for None, the packaged default model (see
        `cifar_cnn.runs.resolve_artifact`).

        Exports run in their own runtime with the same input spec; their probabilities are
        calibrated in the graph, without test-time augmentation. Keras models are loaded
        in Keras' safe mode (no arbitrary code from the file).

        Raises:
            RunError: if no model is found there, or it cannot be loaded.
        """
        art = path if isinstance(path, Artifact) else resolve_artifact(path)
        if art.kind == "export":
            runner = open_runner(art)
            card = read_card(art, model_shape=runner.input_shape,
                             num_classes=len(CLASS_NAMES), default_class_names=CLASS_NAMES)
            return cls(runner, card, source=str(art.model))
        import keras

        try:
            model = keras.saving.load_model(art.model, compile=False, safe_mode=True)
        except Exception as e:
            raise RunError(f"{art.model} could not be loaded as a Keras model "
                           f"({type(e).__name__}: {str(e).splitlines()[0]}).") from e
        card = read_card(art, model_shape=model.input_shape,
                         num_classes=int(model.output_shape[-1]),
                         default_class_names=CLASS_NAMES)
        return cls(model, card, source=str(art.model))

    def _batch(self, images: ImageLike | Sequence[ImageLike]) -> np.ndarray:
        return self.spec.batch(images)

    @property
    def is_calibrated(self) -> bool:
        """Whether the model has calibration temperatures."""
        return bool(self.temperatures)

    def options(self, tta: bool | str | None = None,
                calibrated: bool | None = None) -> tuple[str | None, bool]:
        """The test-time augmentation mode and whether to calibrate, for a call's options.

        Args:
            tta: None or "default": the run's own (its recipe's); True: that, or "flip" if
                it has none; False or "none": none; else a mode name.
            calibrated: None: calibrated when the model has a calibration; True: calibrated,
                or an error; False: the model's raw probabilities.

        Raises:
            RunError: for calibrated=True without calibration, or TTA on an export.
            ConfigError: for an unknown mode.
        """
        mode = tta_mode(None if tta == "default" else tta, self.tta)
        if mode is not None and self.baked_temperature is not None:
            raise RunError(f"{self.source} is an export calibrated for no test-time "
                           f"augmentation, which is not in its graph. Received: tta={mode!r}; "
                           "use tta=False (--no-tta), or the run's .keras model.")
        if calibrated and tta_key(mode) not in self.temperatures:
            raise RunError(f"{self.source} has no calibration for test-time augmentation "
                           f"{tta_key(mode)!r}. Train with a calibration split (the default) or "
                           "--val-size N, or ask for uncalibrated probabilities "
                           "(calibrated=false; --uncalibrated).")
        return mode, self.is_calibrated if calibrated is None else bool(calibrated)

    def raw_probs(self, x: np.ndarray, tta: str | None) -> np.ndarray:
        """What the model computes for a prepared batch with TTA mode `tta` (a resolved
        mode, see `options`): raw probabilities for a Keras model, an export's own
        (calibrated) ones."""
        return predict_probs(self.model, x, tta=tta)

    def finish(self, probs: np.ndarray, tta: str | None, calibrated: bool) -> np.ndarray:
        """`raw_probs`' output made into what was asked: calibrated with the temperature of
        mode `tta`, or not."""
        if self.baked_temperature is not None:  # the export calibrated them
            return probs if calibrated else apply_temperature(probs, 1.0 / self.baked_temperature)
        return self.calibrate(probs, tta=tta) if calibrated else probs

    def calibrate(self, probs: np.ndarray, *, tta: str | None) -> np.ndarray:
        """Apply the run's temperature for test-time augmentation mode `tta` to `probs`.

        Raises:
            RunError: if the run has no calibration (trained with ``calibration_size=0``,
                or before calibration existed).
        """
        self.options(tta, True)  # raises without calibration
        return apply_temperature(probs, self.temperatures[tta_key(tta)])

    def predict(self, images: ImageLike | Sequence[ImageLike], *,
                tta: bool | str | None = None,
                calibrated: bool | None = None) -> np.ndarray:
        """Class probabilities, shape ``(N, num_classes)``, each row summing to 1.

        Args:
            images: file paths, PIL images, uint8 arrays ``(H, W, 3)``, or a batch
                ``(N, H, W, 3)``; any size and mode, prepared by the model's `InputSpec`.
            tta: test-time augmentation (see `options`).
            calibrated: see `options`.

        Raises:
            ImageError: for an unreadable file (`predict_files` reports bad files instead).
            RunError: if `calibrated` is True but the run has no calibration.
        """
        mode, use_calibration = self.options(tta, calibrated)
        return self.finish(self.raw_probs(self._batch(images), mode), mode, use_calibration)

    def top_k(self, probs: np.ndarray, k: int = 3) -> list[list[tuple[str, float]]]:
        """The `k` most likely ``(class name, probability)`` pairs for each row of `probs`."""
        return top_k(probs, self.class_names, k)

    def predictions(self, names: Sequence[str], probs: np.ndarray, *, top_k: int = 3,
                    calibrated: bool, tta: str | None) -> list[Prediction]:
        """The `Prediction` records of `probs` (see `predictions`)."""
        return predictions(names, probs, self.class_names, k=top_k, calibrated=calibrated,
                           tta=tta)

    def records(self, names: Sequence[str], raw: np.ndarray, *, tta: str | None,
                calibrated: bool, top_k: int = 3) -> list[Prediction]:
        """The `Prediction` records of a batch from `raw_probs` (mode `tta`): calibrated as
        asked, then made into records; what a server asks once per request."""
        return self.predictions(names, self.finish(raw, tta, calibrated), top_k=top_k,
                                calibrated=calibrated, tta=tta)

    def classify(self, images: ImageLike | Sequence[ImageLike], top_k: int = 3,
                 **kwargs: Any) -> list[list[tuple[str, float]]]:
        """Top-k ``(class name, probability)`` pairs for each image."""
        return self.top_k(self.predict(images, **kwargs), top_k)

    def predict_files(self, inputs: Iterable[str | os.PathLike[str]], *, top_k: int = 3,
                      tta: bool | str | None = None, calibrated: bool | None = None,
                      batch_size: int = 1000, workers: int | None = None,
                      max_pixels: int = MAX_PIXELS) -> Iterator[Prediction]:
        """A `Prediction` for every image file in `inputs`, in order, as they are ready.

        `inputs` may name files, directories (read recursively) and glob patterns (see
        `cifar_cnn.images.expand_inputs`). Files are decoded by `workers` threads
        (default: one per CPU core) `batch_size` at a time, and each batch goes through the
        model in one call; results stream out batch by batch, so memory stays flat for any
        number of files. A file that cannot be read (missing, not an image, over
        `max_pixels`) yields a `Prediction` with its `error`; the others are unaffected.

        Raises:
            RunError: if `calibrated` is True but the run has no calibration.
            ConfigError: for a `batch_size`, `workers` or `max_pixels` below 1.
        """
        if batch_size < 1 or (workers is not None and workers < 1) or max_pixels < 1:
            raise ConfigError("batch_size, workers and max_pixels must be >= 1. Received: "
                              f"batch_size={batch_size}, workers={workers}, "
                              f"max_pixels={max_pixels}")
        mode, use_calibration = self.options(tta, calibrated)
        entries = expand_inputs(inputs)

        def decode(entry: tuple[str, str | None]) -> np.ndarray | str:
            name, error = entry
            if error is not None:
                return error
            try:
                return self.spec.load(name, max_pixels=max_pixels)
            except ImageError as e:
                return str(e)

        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            for start in range(0, len(entries), batch_size):
                chunk = entries[start:start + batch_size]
                decoded = list(pool.map(decode, chunk))
                good = [(name, d) for (name, _), d in zip(chunk, decoded, strict=True)
                        if isinstance(d, np.ndarray)]
                records = iter(self.predictions(
                    [name for name, _ in good],
                    self.finish(self.raw_probs(np.stack([d for _, d in good]), mode), mode,
                                use_calibration),
                    top_k=top_k, calibrated=use_calibration, tta=mode) if good else ())
                for (name, _), d in zip(chunk, decoded, strict=True):
                    yield Prediction(name, error=d) if isinstance(d, str) else next(records)

