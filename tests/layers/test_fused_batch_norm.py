"""FusedBatchNormalization computes what Keras' BatchNormalization does."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("scale", [False, True])
def test_fused_batch_norm_matches_keras(scale: bool) -> None:
    import keras
    import tensorflow as tf

    from cifar_cnn.layers import FusedBatchNormalization

    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (4, 5, 5, 6)), "float32")
    layers = [cls(momentum=0.6, epsilon=1e-12, scale=scale,
                  beta_initializer=keras.initializers.Constant(0.3))
              for cls in (keras.layers.BatchNormalization, FusedBatchNormalization)]
    outputs, grads = [], []
    for layer in layers:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.range(6, dtype="float32"))
        outputs.append(y.numpy())
        grads.append([g.numpy() for g in tape.gradient(loss, [x, *layer.trainable_weights])])
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-5)
    for fused, plain in zip(grads[1], grads[0], strict=True):
        np.testing.assert_allclose(fused, plain, atol=1e-4)
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(getattr(layers[1], name).numpy(),
                                   getattr(layers[0], name).numpy(), rtol=1e-5)
    np.testing.assert_allclose(layers[1](x, training=False), layers[0](x, training=False),
                               atol=1e-5)
