"""Keras batch normalisation, trained through TensorFlow's fused kernel."""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="cifar_cnn")
class FusedBatchNormalization(layers.BatchNormalization):
    """Keras' ``BatchNormalization``, computed in training by TensorFlow's fused kernel.

    Keras 3 builds batch norm from separate ops in float32: a cast of the whole activation,
    two reductions for the moments, the normalisation and a cast back, each a pass over
    memory, and as many again in the gradient. TensorFlow's ``FusedBatchNormV3`` does each
    direction in one kernel on bfloat16 activations with float32 statistics. The result
    and the moving statistics are the same as Keras'; inference, other backends and any
    input that is not 4-D channels-last, masked or renormalised take Keras' own path.
    What it saves is measured by ``benchmarks/profile_step.py``.
    """

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        if (not (training and self.trainable) or mask is not None or len(inputs.shape) != 4
                or self.axis not in (-1, 3) or self.renorm or self.synchronized
                or keras.backend.backend() != "tensorflow"):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = ops.cast(self.gamma, "float32") if self.scale else tf.ones((channels,))
        offset = ops.cast(self.beta, "float32") if self.center else tf.zeros((channels,))
        empty = tf.constant([], "float32")
        y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=scale, offset=offset, mean=empty, variance=empty,
            epsilon=self.epsilon, is_training=True)
        # The kernel returns the unbiased variance; Keras keeps the biased one.
        n = ops.cast(ops.prod(ops.shape(inputs)[:-1]), "float32")
        variance = variance * (n - 1.0) / n
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
        return ops.cast(y, self.compute_dtype)
