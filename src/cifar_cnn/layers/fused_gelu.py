"""The exact GELU: `FusedGELU` for training (forward and gradient each one XLA-compiled kernel)
and `ErfGELU`, the same function in plain ops for exported graphs."""

from __future__ import annotations

import functools
import math
from typing import Any

import keras
from keras import layers


@functools.cache
def _xla_gelu() -> Any:
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def forward(x: Any) -> Any:
        xf = tf.cast(x, tf.float32)
        return tf.cast(0.5 * xf * tf.math.erfc(xf * -math.sqrt(0.5)), x.dtype)

    @tf.function(jit_compile=True)
    def backward(x: Any, dy: Any) -> Any:
        xf = tf.cast(x, tf.float32)
        cdf = 0.5 * tf.math.erfc(xf * -math.sqrt(0.5))
        pdf = tf.exp(-0.5 * xf * xf) / math.sqrt(2.0 * math.pi)
        return tf.cast(tf.cast(dy, tf.float32) * (cdf + xf * pdf), dy.dtype)

    @tf.custom_gradient
    def gelu(x: Any) -> Any:
        return forward(x), lambda dy: backward(x, dy)

    return gelu


@keras.saving.register_keras_serializable(package="cifar_cnn")
class FusedGELU(layers.Layer):
    """The exact GELU (as Keras' ``"gelu"``), one pass over memory each way.

    TensorFlow runs ``gelu`` on a CPU as separate kernels (erfc, multiplies, adds), each a
    pass over the activation, and more in its gradient. XLA fuses such element-wise chains
    (it is slow at convolutions, so only this part is compiled); the arithmetic is float32
    whatever the activation's dtype. Other backends get Keras' own GELU.
    ``benchmarks/profile_step.py`` measures what it saves against Keras' GELU and ReLU.
    """

    def call(self, x: Any) -> Any:
        if keras.backend.backend() != "tensorflow":
            return keras.activations.gelu(x, approximate=False)
        return _xla_gelu()(x)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape


@keras.saving.register_keras_serializable(package="cifar_cnn")
class ErfGELU(layers.Layer):
    """The exact GELU as ``0.5 x (1 + erf(x / sqrt 2))``: `FusedGELU`'s values in plain ops.

    `FusedGELU` (and Keras' ``"gelu"``) compute ``erfc``, which is neither a LiteRT builtin
    nor an ONNX op, inside XLA functions that converters inline. This form has no XLA and
    no custom gradient: LiteRT fuses it into its GELU builtin and tf2onnx maps it to
    ``Erf``. `cifar_cnn.export` swaps it in for inference only; it agrees with
    `FusedGELU` to float32 rounding (5e-7 on the probabilities of the default model).
    """

    def call(self, x: Any) -> Any:
        return 0.5 * x * (1.0 + keras.ops.erf(x * math.sqrt(0.5)))

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape
