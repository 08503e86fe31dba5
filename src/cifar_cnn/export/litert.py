"""LiteRT (TensorFlow Lite) export of the float32 export graph.

Quantizations (default model, `cifar-cnn export` on the 10,000 test images: see
benchmarks/HISTORY.md, "Export: parity, size and speed"):

- None: float32, the same ops as the SavedModel.
- ``"float16"``: weights stored in float16, computed in float32: half the size.
- ``"int8"``: full-integer, builtin ops only; uint8 pixels in (scale 1, zero point 0, i.e.
  raw pixels), float32 probabilities out. Activation ranges come from a representative
  set of real training images: random noise lies outside them and makes it useless.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from cifar_cnn.export.savedmodel import calibrated

QUANTIZATIONS = (None, "float16", "int8")


def convert(model: Any, quantize: str | None = None,
            representative: np.ndarray | None = None, *, temperature: float = 1.0) -> bytes:
    """A ``.tflite`` flatbuffer of float32 pixels (0..255) -> calibrated probabilities.

    It goes through a SavedModel written by Keras' ``ExportArchive``: from the compact one
    of `cifar_cnn.export.savedmodel` (variables in a ``tf.Module``), or from a concrete
    function, the converter keeps the weights as resource variables and the interpreter
    fails (``READ_VARIABLE``) or returns NaN.

    Args:
        model: the float32 export graph (`cifar_cnn.export.graph.float32_model`).
        quantize: None, "float16" or "int8".
        representative: uint8 images ``(N, H, W, 3)`` for int8's activation ranges.
        temperature: baked into the probabilities (`savedmodel.calibrated`).

    Raises:
        ValueError: for another `quantize`, or int8 without representative images.
    """
    import keras
    import tensorflow as tf

    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}. Received: {quantize!r}")
    with tempfile.TemporaryDirectory(prefix="cifar-cnn-litert-") as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve", lambda pixels: {"probs": calibrated(model(pixels, training=False),
                                                         temperature)},
            input_signature=[tf.TensorSpec([None, *model.input_shape[1:]], tf.float32,
                                           name="pixels")])
        archive.write_out(tmp, verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serve"])
        return _configure(conv, quantize, representative).convert()


def _configure(conv: Any, quantize: str | None, representative: np.ndarray | None) -> Any:
    import tensorflow as tf

    if quantize == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if representative is None or not len(representative):
            raise ValueError("int8 quantization needs representative images.")

        def batches() -> Iterator[list[np.ndarray]]:
            for i in range(0, len(representative), 10):
                yield [representative[i:i + 10].astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = batches
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
    return conv
