"""FusedGELU computes Keras' exact GELU and its gradient, and saves."""

from __future__ import annotations

import numpy as np
import pytest

from tests.layers.helpers import output_and_grads


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fused_gelu_matches_keras_gelu(dtype: str, tmp_path) -> None:
    import keras
    import tensorflow as tf

    from cifar_cnn.layers import FusedGELU

    x = tf.cast(tf.constant(np.random.default_rng(0).normal(0.0, 2.0, (3, 4, 4, 5))), dtype)
    (out_keras, (grad_keras,)), (out_ours, (grad_ours,)) = (
        output_and_grads(fn, x) for fn in (keras.activations.gelu, FusedGELU(dtype=dtype)))
    outputs, grads = [out_keras, out_ours], [grad_keras, grad_ours]
    tol = 1e-6 if dtype == "float32" else 2e-2  # bfloat16 keeps 8 bits of mantissa
    np.testing.assert_allclose(outputs[1], outputs[0], atol=tol, rtol=tol)
    np.testing.assert_allclose(grads[1], grads[0], atol=4 * tol, rtol=tol)

    model = keras.Sequential([keras.Input((4, 4, 5)), FusedGELU()])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.layers[-1], FusedGELU)
    np.testing.assert_allclose(loaded(tf.cast(x, "float32")), outputs[0], atol=2e-2)
