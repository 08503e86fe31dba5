"""Running exported models (`cifar_cnn.export`): a SavedModel folder, a .tflite or .onnx file.

Below predict and export, which both run exports: `Classifier` for users, the parity gate
before an export is kept.

Each runner takes uint8 pixel batches ``(N, H, W, 3)`` and returns the probabilities the
export computes (calibrated when its metadata.json says so), through the same
``predict(x, batch_size=..., verbose=0)`` and ``input_shape`` a Keras model has, so
`cifar_cnn.tta.predict_probs` and `Classifier` use them unchanged.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from cifar_cnn.errors import RunError
from cifar_cnn.runs import Artifact


class SavedModelRunner:
    """An exported SavedModel's ``serving_default`` signature."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import tensorflow as tf

        self._fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        (self._input, spec), = self._fn.structured_input_signature[1].items()
        self.input_shape = tuple(spec.shape)

    def predict(self, x: np.ndarray, batch_size: int = 500, verbose: int = 0) -> np.ndarray:
        import tensorflow as tf

        return np.concatenate([
            self._fn(**{self._input: tf.constant(x[i:i + batch_size])})["probs"].numpy()
            for i in range(0, len(x), batch_size)])


class LiteRTRunner:
    """A ``.tflite`` model in ai_edge_litert's Interpreter."""

    def __init__(self, path: str | os.PathLike[str], num_threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        # One thread per core, as TensorFlow and onnxruntime use by default.
        self._it = Interpreter(model_path=str(path), num_threads=num_threads or os.cpu_count())
        self._in = self._it.get_input_details()[0]
        self._out = self._it.get_output_details()[0]
        self.input_shape = (None, *(int(d) for d in self._in["shape"][1:]))
        self._batch = 0

    def _run(self, x: np.ndarray) -> np.ndarray:
        if len(x) != self._batch:
            self._it.resize_tensor_input(self._in["index"], [len(x), *self.input_shape[1:]])
            self._it.allocate_tensors()
            self._batch = len(x)
        self._it.set_tensor(self._in["index"], x.astype(self._in["dtype"]))
        self._it.invoke()
        return self._it.get_tensor(self._out["index"]).copy()

    def predict(self, x: np.ndarray, batch_size: int = 500, verbose: int = 0) -> np.ndarray:
        return np.concatenate([self._run(x[i:i + batch_size])
                               for i in range(0, len(x), batch_size)])


class OnnxRunner:
    """A ``.onnx`` model in an onnxruntime CPU session."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import onnxruntime as ort

        self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0]
        self._dtype = np.uint8 if "uint8" in self._input.type else np.float32
        self.input_shape = (None, *(int(d) for d in self._input.shape[1:]))

    def predict(self, x: np.ndarray, batch_size: int = 500, verbose: int = 0) -> np.ndarray:
        return np.concatenate([
            self._session.run(None, {self._input.name: x[i:i + batch_size].astype(
                self._dtype)})[0] for i in range(0, len(x), batch_size)])


_RUNNERS = {"savedmodel": SavedModelRunner, "litert": LiteRTRunner, "onnx": OnnxRunner}


def open_runner(artifact: Artifact) -> Any:
    """The runtime for an exported model (`cifar_cnn.runs.resolve_artifact` found it).

    Raises:
        RunError: if its runtime is not installed or cannot load it.
    """
    fmt, p = artifact.format, artifact.model
    try:
        return _RUNNERS[fmt](p)
    except ImportError as e:
        raise RunError(f"{p} needs {e.name}, which is not installed: "
                       "pip install 'cifar-cnn[export]'.") from e
    except Exception as e:
        raise RunError(f"{p} could not be loaded as a {fmt} model "
                       f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).") from e
