"""`Classifier`: a trained model with its class names, ready to label new images."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cifar_cnn.calibration import apply_temperature, temperatures_from, tta_key
from cifar_cnn.data.sources import CLASS_NAMES
from cifar_cnn.errors import ConfigError, ImageError, RunError
from cifar_cnn.files import read_json
from cifar_cnn.predict.images import MAX_PIXELS, expand_inputs, load_image, prepare_image
from cifar_cnn.predict.runtimes import export_format, open_export
from cifar_cnn.runs import RunDir
from cifar_cnn.tta import predict_probs, tta_mode

ImageLike = str | os.PathLike | Image.Image | np.ndarray


@dataclass(frozen=True)
class Prediction:
    """The result for one input file: every class's probability, or why there is none."""

    file: str
    probabilities: dict[str, float] | None = None  # all classes, in the model's order
    top_k: list[tuple[str, float]] | None = None  # the most likely, most likely first
    calibrated: bool = False
    error: str | None = None

    @property
    def label(self) -> str | None:
        """The most likely class."""
        return self.top_k[0][0] if self.top_k else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``cifar-cnn predict --json/--jsonl``."""
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        return {"file": self.file, "label": self.label, "probabilities": self.probabilities,
                "top_k": [{"class": c, "probability": p} for c, p in self.top_k or ()],
                "calibrated": self.calibrated}


class Classifier:
    """A trained model plus what is needed to use it: class names, input size, TTA, calibration.

    Probabilities are calibrated by default: training fits a temperature for each
    test-time augmentation mode on held-out images (``calibration.json`` in the run).

    Example:
        >>> clf = Classifier.load("runs/fast94")  # doctest: +SKIP
        >>> clf.classify(["cat.jpg"], top_k=3)  # doctest: +SKIP
        [[('cat', 0.81), ('dog', 0.12), ('frog', 0.03)]]
    """

    def __init__(self, model: Any, class_names: Sequence[str], *, tta: bool | str = False,
                 temperatures: dict[str, float] | None = None, source: str = "",
                 baked_temperature: float | None = None) -> None:
        self.model = model
        self.class_names = tuple(class_names)
        self.tta = tta_mode(tta)  # the run's default test-time augmentation, or None
        self.temperatures = dict(temperatures or {})  # {tta key: temperature}
        self.source = source
        # An export computes calibrated probabilities itself (`cifar_cnn.export`): the
        # temperature it applies, for no test-time augmentation; None for a Keras model.
        self.baked_temperature = baked_temperature
        if baked_temperature is not None:
            self.temperatures = {tta_key(None): baked_temperature}
        shape = model.input_shape
        self.input_size = (int(shape[2]), int(shape[1]))  # (width, height) as Pillow counts

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Classifier:
        """Load from a run directory, or from a ``.keras`` file (beside a metadata.json if any);
        None loads the packaged default model (`cifar_cnn.pretrained.default_run`).

        An exported model (`cifar_cnn.export`) loads too: a SavedModel folder, a ``.tflite``
        or ``.onnx`` file (or the folder holding it), run by its own runtime with the same
        preprocessing; its probabilities are calibrated in the graph, without test-time
        augmentation.

        The model is loaded in Keras' safe mode (no arbitrary code from the file).

        Raises:
            RunError: if no model is found there, or it cannot be loaded.
        """
        import keras

        if path is None:
            from cifar_cnn.pretrained import default_run

            path = default_run()
        p = Path(path)
        if export_format(p) is not None:
            return cls._load_export(p)
        if p.is_dir():
            run = RunDir(p)
            model_file = run.model
        else:
            run = RunDir(p.parent)
            model_file = p
        if not model_file.is_file():
            raise RunError(f"No trained model at {model_file}. Give a run directory written by "
                           "`cifar-cnn train` or a .keras model file.")
        try:
            model = keras.saving.load_model(model_file, compile=False, safe_mode=True)
        except Exception as e:
            raise RunError(f"{model_file} could not be loaded as a Keras model "
                           f"({type(e).__name__}: {str(e).splitlines()[0]}).") from e
        meta = run.read_metadata() if run.metadata.is_file() else {}
        n_out = int(model.output_shape[-1])
        names = meta.get("class_names") or (
            CLASS_NAMES if n_out == len(CLASS_NAMES) else [f"class_{i}" for i in range(n_out)])
        temperatures = (temperatures_from(read_json(run.calibration))
                        if run.calibration.is_file() else {})
        return cls(model, names, tta=meta.get("recipe", {}).get("tta", False),
                   temperatures=temperatures, source=str(model_file))

    @classmethod
    def _load_export(cls, path: Path) -> Classifier:
        runner, meta, model_path = open_export(path)
        n_out = len(meta.get("class_names") or CLASS_NAMES)
        names = meta.get("class_names") or [f"class_{i}" for i in range(n_out)]
        output = meta.get("output", {})
        baked = output.get("temperature") if output.get("calibrated") else None
        return cls(runner, names, tta=False, source=str(model_path), baked_temperature=baked)

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

    def calibrate(self, probs: np.ndarray, *, tta: str | None) -> np.ndarray:
        """Apply the run's temperature for test-time augmentation mode `tta` to `probs`.

        Raises:
            RunError: if the run has no calibration (trained with ``calibration_size=0``,
                or before calibration existed).
        """
        key = tta_key(tta)
        if key not in self.temperatures:
            raise RunError(f"{self.source} has no calibration for test-time augmentation "
                           f"{key!r}. Train with a calibration split (the default) or "
                           "--val-size N, or ask for uncalibrated probabilities.")
        return apply_temperature(probs, self.temperatures[key])

    @property
    def is_calibrated(self) -> bool:
        """Whether the run has calibration temperatures."""
        return bool(self.temperatures)

    def predict(self, images: ImageLike | Sequence[ImageLike], *,
                tta: bool | str | None = None,
                calibrated: bool | None = None) -> np.ndarray:
        """Class probabilities, shape ``(N, num_classes)``, each row summing to 1.

        Args:
            images: file paths, PIL images, uint8 arrays ``(H, W, 3)``, or a batch
                ``(N, H, W, 3)``; any size and mode (see `cifar_cnn.predict.RESIZE_METHOD`).
            tta: test-time augmentation (see `cifar_cnn.tta.predict_probs`); None: what
                the run's recipe used; True: that, or "flip" if it used none; False: none.
            calibrated: None (default): calibrated when the run has a calibration; True:
                calibrated, or an error; False: the model's raw probabilities.

        Raises:
            ImageError: for an unreadable file (`predict_files` reports bad files instead).
            RunError: if `calibrated` is True but the run has no calibration.
        """
        mode = tta_mode(tta, self.tta)
        if mode is not None and self.baked_temperature is not None:
            raise RunError(f"{self.source} is an export calibrated for no test-time "
                           f"augmentation, which is not in its graph. Received: tta={mode!r}; "
                           "use tta=False (--no-tta), or the run's .keras model.")
        probs = predict_probs(self.model, self._batch(images), tta=mode)
        if self.baked_temperature is not None:
            want = calibrated is not False
            return probs if want else apply_temperature(probs, 1.0 / self.baked_temperature)
        if calibrated or (calibrated is None and self.is_calibrated):
            probs = self.calibrate(probs, tta=mode)
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

    def predict_files(self, inputs: Iterable[str | os.PathLike[str]], *, top_k: int = 3,
                      tta: bool | str | None = None, calibrated: bool | None = None,
                      batch_size: int = 1000, workers: int | None = None,
                      max_pixels: int = MAX_PIXELS) -> Iterator[Prediction]:
        """A `Prediction` for every image file in `inputs`, in order, as they are ready.

        `inputs` may name files, directories (read recursively) and glob patterns (see
        `cifar_cnn.predict.images.expand_inputs`). Files are decoded by `workers` threads
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
        if calibrated and not self.is_calibrated:
            self.calibrate(np.ones((1, len(self.class_names))), tta=None)  # raises
        use_calibration = self.is_calibrated if calibrated is None else calibrated
        entries = expand_inputs(inputs)

        def decode(entry: tuple[str, str | None]) -> np.ndarray | str:
            name, error = entry
            if error is not None:
                return error
            try:
                return load_image(name, self.input_size, max_pixels=max_pixels)
            except ImageError as e:
                return str(e)

        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            for start in range(0, len(entries), batch_size):
                chunk = entries[start:start + batch_size]
                decoded = list(pool.map(decode, chunk))
                good = [d for d in decoded if isinstance(d, np.ndarray)]
                rows = iter(self.predict(np.stack(good), tta=tta, calibrated=use_calibration)
                            if good else ())
                for (name, _), d in zip(chunk, decoded, strict=True):
                    if isinstance(d, str):
                        yield Prediction(name, error=d)
                        continue
                    row = next(rows)
                    yield Prediction(
                        name, probabilities=dict(zip(self.class_names, map(float, row),
                                                     strict=True)),
                        top_k=self.top_k(row[None], top_k)[0], calibrated=use_calibration)
