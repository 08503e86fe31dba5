"""A 3x3 convolution whose kernel gradient on small maps is nine matrix products (CPU only)."""

from __future__ import annotations

import functools
from typing import Any

import keras
from keras import layers

# Name scope of the matmul kernel gradient, so that profiles can find its ops.
MATMUL_KERNEL_GRAD = "matmul_kernel_grad"


def matmul_kernel_grad_pays(height: int, width: int, cin: int, cout: int, *,
                            max_pixels: int = 16, wide_max_pixels: int = 64,
                            wide_channels: int = 256) -> bool:
    """Whether the matmul kernel gradient is expected to beat TensorFlow's on a CPU.

    True for maps of at most `max_pixels` pixels, and for maps of at most `wide_max_pixels`
    pixels when both channel counts are at least `wide_channels`. The defaults come from
    the isolated-conv timings of ``benchmarks/profile_step.py`` on this project's 2-core
    CPUs (``benchmarks/results/profile_step-*.json``); run it to choose for another CPU and
    pass the result to `SmallMapConv2D`.
    """
    pixels = height * width
    return pixels <= max_pixels or (pixels <= wide_max_pixels
                                    and min(cin, cout) >= wide_channels)


@functools.cache
def _matmul_grad_conv() -> Any:
    """A 3x3 'same' conv whose kernel gradient is nine matrix products, one per tap."""
    import tensorflow as tf

    @tf.custom_gradient
    def conv(x: Any, kernel: Any) -> Any:
        def grad(dy: Any) -> tuple[Any, Any]:
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=kernel, out_backprop=dy,
                strides=[1, 1, 1, 1], padding="SAME")
            with tf.name_scope(MATMUL_KERNEL_GRAD):
                h, w, cin = tf.shape(x)[1], tf.shape(x)[2], x.shape[-1]
                padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
                dy2 = tf.reshape(dy, [-1, dy.shape[-1]])
                taps: list[Any] = []
                for i in range(3):
                    for j in range(3):
                        # One tap's copy of the input at a time: made only once the previous
                        # product is done, so at most one is alive.
                        with tf.control_dependencies(taps[-1:]):
                            tap = tf.reshape(padded[:, i:i + h, j:j + w, :], [-1, cin])
                        taps.append(tf.matmul(tap, dy2, transpose_a=True))
                return dx, tf.reshape(tf.stack(taps), kernel.shape)

        return tf.nn.conv2d(x, kernel, 1, "SAME"), grad

    return conv


def matmul_grad_conv(x: Any, kernel: Any) -> Any:
    """``tf.nn.conv2d(x, kernel, 1, "SAME")`` with the nine-matmul kernel gradient."""
    import tensorflow as tf

    return _matmul_grad_conv()(x, tf.convert_to_tensor(kernel))


def _runs_on_cpu(tensor: Any) -> bool:
    """Whether TensorFlow runs ops on `tensor` on a CPU: its device if placed, else whether
    any GPU is visible (TensorFlow then places ops there by default)."""
    import tensorflow as tf

    device = getattr(tensor, "device", "") or ""
    if device:
        return "CPU" in device.upper()
    return not tf.config.list_logical_devices("GPU")


@keras.saving.register_keras_serializable(package="cifar_cnn")
class SmallMapConv2D(layers.Conv2D):
    """Keras' ``Conv2D``, with a faster kernel gradient for 3x3 'same' convs on small maps.

    On a CPU, TensorFlow's kernel gradient (``Conv2DBackpropFilter``) of a 3x3 conv on a
    small map takes several times as long as its forward pass; the same sums as nine
    (input tap)^T x (output gradient) matrix products take less. This layer uses them
    where `matmul_kernel_grad_pays` says so; elsewhere (other shapes, strides, dilations,
    backends, larger maps, and on GPUs, whose cuDNN kernel gradient is left alone) it is
    Keras' ``Conv2D``. The forward pass and the input gradient are always TensorFlow's.
    ``benchmarks/profile_step.py`` measures what it saves.

    Args:
        matmul_grad: None chooses per shape with `matmul_kernel_grad_pays`'s defaults;
            True uses the matmul kernel gradient wherever it applies, False never.
        *args, **kwargs: those of ``keras.layers.Conv2D``.
    """

    def __init__(self, *args: Any, matmul_grad: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.matmul_grad = matmul_grad

    def _use_matmul_grad(self, inputs: Any) -> bool:
        h, w = inputs.shape[1:3]
        if (self.matmul_grad is False or keras.backend.backend() != "tensorflow"
                or self.kernel_size != (3, 3) or self.strides != (1, 1)
                or self.dilation_rate != (1, 1) or self.groups != 1 or self.padding != "same"
                or self.data_format != "channels_last" or h is None or w is None
                or not _runs_on_cpu(inputs)):
            return False
        return bool(self.matmul_grad) or matmul_kernel_grad_pays(h, w, inputs.shape[-1],
                                                                 self.filters)

    def convolution_op(self, inputs: Any, kernel: Any) -> Any:
        if self._use_matmul_grad(inputs):
            return matmul_grad_conv(inputs, kernel)
        return super().convolution_op(inputs, kernel)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "matmul_grad": self.matmul_grad}
