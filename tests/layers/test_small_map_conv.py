"""SmallMapConv2D computes Keras' Conv2D and its gradients, by matmuls where it pays."""

from __future__ import annotations

import numpy as np
import pytest

from cifar_cnn.layers import SmallMapConv2D
from cifar_cnn.layers.small_map_conv import MATMUL_KERNEL_GRAD, matmul_kernel_grad_pays
from tests.layers.helpers import output_and_grads


def uses_matmul_grad(conv: SmallMapConv2D, x) -> bool:
    """Whether the traced gradient of ``conv(x)`` holds the nine-matmul kernel gradient."""
    import tensorflow as tf

    @tf.function
    def grads(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = conv(x)
        return tape.gradient(y, [x, conv.kernel])

    graph = grads.get_concrete_function(x).graph
    return any(MATMUL_KERNEL_GRAD in op.name for op in graph.get_operations())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("size", [3, 4, 9])  # 9x9 at 6 channels takes Keras' own path
def test_small_map_conv_matches_keras_conv(dtype: str, size: int, tmp_path) -> None:
    import keras
    import tensorflow as tf

    from cifar_cnn.layers import SmallMapConv2D

    rng = np.random.default_rng(0)
    x = tf.cast(tf.constant(rng.normal(0.0, 1.0, (4, size, size, 6))), dtype)
    kernel = rng.normal(0.0, 0.3, (3, 3, 6, 5))
    convs = [cls(5, 3, padding="same", use_bias=False, dtype=dtype,
                 kernel_initializer=keras.initializers.Constant(kernel))
             for cls in (keras.layers.Conv2D, SmallMapConv2D)]
    outputs, grads = [], []
    for conv in convs:
        conv.build(x.shape)
        y, g = output_and_grads(conv, x, [conv.kernel])
        outputs.append(y)
        grads.append(g)
    tol = 1e-5 if dtype == "float32" else 3e-2
    np.testing.assert_allclose(outputs[1], outputs[0], atol=tol)
    for ours, keras_grad in zip(grads[1], grads[0], strict=True):
        scale = np.abs(keras_grad).max()
        np.testing.assert_allclose(ours / scale, keras_grad / scale, atol=tol)
    assert uses_matmul_grad(convs[1], x) == (size < 9)

    model = keras.Sequential([keras.Input((size, size, 6)), convs[1]])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.layers[-1], SmallMapConv2D)
    np.testing.assert_allclose(tf.cast(loaded(x), "float32"), outputs[1], atol=tol)


def test_which_shapes_take_the_matmul_kernel_gradient() -> None:
    assert matmul_kernel_grad_pays(4, 4, 6, 5)
    assert matmul_kernel_grad_pays(7, 7, 256, 256) and not matmul_kernel_grad_pays(7, 7, 128, 256)
    assert not matmul_kernel_grad_pays(15, 15, 256, 256)
    assert matmul_kernel_grad_pays(15, 15, 8, 8, max_pixels=225)  # the rule is an argument


def test_matmul_grad_argument_forces_either_path_and_is_saved(tmp_path) -> None:
    import keras
    import tensorflow as tf

    x = tf.zeros((2, 9, 9, 6))  # the default rule keeps Keras' path at 9x9, 6 channels
    forced = SmallMapConv2D(5, 3, padding="same", matmul_grad=True)
    never = SmallMapConv2D(5, 3, padding="same", matmul_grad=False)
    assert uses_matmul_grad(forced, x) and not uses_matmul_grad(never, tf.zeros((2, 3, 3, 6)))
    model = keras.Sequential([keras.Input((9, 9, 6)), forced])
    model.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras").layers[-1].matmul_grad is True


def test_a_visible_gpu_keeps_its_own_kernel_gradient(monkeypatch) -> None:
    import tensorflow as tf

    x = tf.zeros((2, 4, 4, 6))
    conv = SmallMapConv2D(5, 3, padding="same")
    assert uses_matmul_grad(conv, x)
    monkeypatch.setattr(tf.config, "list_logical_devices",
                        lambda kind=None: ["/GPU:0"] if kind == "GPU" else ["/CPU:0"])
    assert not uses_matmul_grad(SmallMapConv2D(5, 3, padding="same"), x)
