"""An airbench-style fast CIFAR-10 network (Jordan, arXiv:2404.00498), in Keras.

Frozen data-derived 2x2 patch-whitening convolution, then three conv groups of widths
64/256/256 (conv-pool-BN-GELU-conv-BN-GELU), global max pool and a bias-free linear head
with unit-variance weights whose logits are divided by the feature width, as in
airbench94_muon. Batch norm has no scale (only a shift); conv kernels start as identity
(Dirac) filters where they can.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from cifar_cnn.models.registry import register_model

# Training-set statistics of CIFAR-10 (see ../shared/datasets/cifar10/README.md), in 0..255.
CIFAR10_MEAN = (0.49140 * 255, 0.48216 * 255, 0.44653 * 255)
CIFAR10_STD = (0.24703 * 255, 0.24349 * 255, 0.26159 * 255)


@keras.saving.register_keras_serializable(package="cifar_cnn")
class PatchWhitening(layers.Layer):
    """A 2x2 'valid' convolution whose filters whiten the training images' patches.

    ``adapt(images)`` sets the filters to the eigenvectors of the covariance of all
    ``k x k x 3`` patches, divided by the square root of their eigenvalues, and their
    negatives (so a following GELU sees both signs). The filters are not trained; the bias is.
    The trainer calls ``adapt`` with this layer's own inputs for training images, because
    ``adapts_to_data`` is set (see `cifar_cnn.models.data_dependent_init`).
    """

    adapts_to_data = True

    def __init__(self, kernel_size: int = 2, eps: float = 5e-4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kernel_size = kernel_size
        self.eps = eps

    def build(self, input_shape: tuple[int, ...]) -> None:
        k, c = self.kernel_size, int(input_shape[-1])
        self.filters = 2 * k * k * c
        self.kernel = self.add_weight(shape=(k, k, c, self.filters), initializer="zeros",
                                      trainable=False, name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

    def adapt(self, images: np.ndarray) -> None:
        """Set the filters from (already normalised) float images ``(N, H, W, C)``."""
        x = np.asarray(images, dtype=np.float64)
        k = self.kernel_size
        c = x.shape[-1]
        if not self.built:
            self.build(x.shape)
        patches = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
        patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, k * k * c)  # (kh, kw, c)
        patches = patches - patches.mean(axis=0)
        cov = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = np.linalg.eigh(cov)
        w_ = eigenvectors / np.sqrt(eigenvalues + self.eps)  # columns are filters
        kernel = np.concatenate([w_, -w_], axis=1).reshape(k, k, c, self.filters)
        self.kernel.assign(kernel.astype("float32"))

    def call(self, x: Any) -> Any:
        kernel = ops.cast(self.kernel, x.dtype)
        return ops.conv(x, kernel, padding="valid") + ops.cast(self.bias, x.dtype)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int | None, ...]:
        k = self.kernel_size
        h, w = input_shape[1], input_shape[2]
        return (input_shape[0], None if h is None else h - k + 1,
                None if w is None else w - k + 1, 2 * k * k * input_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kernel_size": self.kernel_size, "eps": self.eps}


@keras.saving.register_keras_serializable(package="cifar_cnn")
class FusedBatchNormalization(layers.BatchNormalization):
    """Keras batch norm, computed in training by TensorFlow's fused kernel.

    Keras 3 builds batch norm from separate ops in float32: a cast of the whole activation,
    two reductions for the moments, the normalisation and a cast back, each a pass over
    memory, and as many again in the gradient. TensorFlow's ``FusedBatchNormV3`` does each
    direction in one kernel on bfloat16 activations with float32 statistics. The result
    and the moving statistics are the same as Keras'; inference (and any input that is not
    4-D channels-last, masked or renormalised) takes Keras' own path.
    """

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        if (not (training and self.trainable) or mask is not None or len(inputs.shape) != 4
                or self.axis not in (-1, 3) or self.renorm or self.synchronized):
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


def matmul_kernel_grad_pays(height: int, width: int, cin: int, cout: int) -> bool:
    """Whether nine matrix products beat TensorFlow's kernel gradient for a 3x3 conv here.

    Measured on this project's 2-core AMD EPYC in bfloat16 (``benchmarks/profile_step.py``,
    isolated convs): faster at 7x7 with 256 channels in and out and at 3x3 (forward and both
    gradients 171 vs 203-216 ms and 29 vs 59 ms at batch 500), slower on 15x15 and 31x31
    maps; at 7x7 with 128 channels it went either way (56 vs 67 ms at batch 500, 62 vs 55
    at batch 1000), so those keep TensorFlow's.
    """
    return height * width <= 16 or (height * width <= 64 and min(cin, cout) >= 256)


MATMUL_KERNEL_GRAD = "matmul_kernel_grad"


@functools.cache
def _small_map_conv() -> Any:
    """A 3x3 'same' conv whose kernel gradient is nine matrix products, one per tap."""
    import tensorflow as tf

    @tf.custom_gradient
    def conv(x: Any, kernel: Any) -> Any:
        def grad(dy: Any) -> tuple[Any, Any]:
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=kernel, out_backprop=dy,
                strides=[1, 1, 1, 1], padding="SAME")
            with tf.name_scope(MATMUL_KERNEL_GRAD):  # named so that profiles can find it
                h, w, cin = tf.shape(x)[1], tf.shape(x)[2], x.shape[-1]
                padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
                dy2 = tf.reshape(dy, [-1, dy.shape[-1]])
                taps: list[Any] = []
                for i in range(3):
                    for j in range(3):
                        # One tap's copy of the input at a time: made only once the previous
                        # product is done, so at most one is alive (batch 2000: 50 MB each).
                        with tf.control_dependencies(taps[-1:]):
                            tap = tf.reshape(padded[:, i:i + h, j:j + w, :], [-1, cin])
                        taps.append(tf.matmul(tap, dy2, transpose_a=True))
                return dx, tf.reshape(tf.stack(taps), kernel.shape)

        return tf.nn.conv2d(x, kernel, 1, "SAME"), grad

    return conv


@keras.saving.register_keras_serializable(package="cifar_cnn")
class SmallMapConv2D(layers.Conv2D):
    """Keras' Conv2D, with a faster kernel gradient for 3x3 'same' convs on small maps.

    TensorFlow's CPU kernel gradient (``Conv2DBackpropFilter``) of the airbench network's
    7x7 and 3x3 convolutions takes two to three times as long as their forward pass here;
    the same sums as nine (input tap)^T x (output gradient) matrix products take much less
    (see `matmul_kernel_grad_pays`), which makes a fast94 training step about 6% faster.
    Other shapes, strides, dilations, backends and larger maps take Keras' own path; the
    forward pass and the input gradient are always TensorFlow's own.
    """

    def convolution_op(self, inputs: Any, kernel: Any) -> Any:
        h, w = inputs.shape[1:3]
        if (keras.backend.backend() != "tensorflow" or self.kernel_size != (3, 3)
                or self.strides != (1, 1) or self.dilation_rate != (1, 1) or self.groups != 1
                or self.padding != "same" or self.data_format != "channels_last"
                or h is None or w is None
                or not matmul_kernel_grad_pays(h, w, inputs.shape[-1], self.filters)):
            return super().convolution_op(inputs, kernel)
        import tensorflow as tf

        return _small_map_conv()(inputs, tf.convert_to_tensor(kernel))


@functools.cache
def _xla_gelu() -> Any:
    """Exact GELU with its forward and its gradient each compiled by XLA into one kernel."""
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
    pass over the activation, and five more in its gradient: 192 ms per 500 training images
    of the airbench network here, against 18 ms for ReLU. Compiled by XLA (which fuses
    element-wise chains but is slow at convolutions, so only this part is compiled), the
    same function in float32 arithmetic takes 42 ms (``benchmarks/profile_step.py``).
    """

    def call(self, x: Any) -> Any:
        return _xla_gelu()(x)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape


def activation_layer(activation: str, name: str) -> layers.Layer:
    """A layer applying ``activation`` (a Keras activation name); GELU is the fused one."""
    if activation == "gelu":
        return FusedGELU(name=name)
    return layers.Activation(activation, name=name)


@keras.saving.register_keras_serializable(package="cifar_cnn")
class PartialDirac(keras.initializers.Initializer):
    """PyTorch's default conv init, with the first ``in`` filters set to identity (Dirac).

    Each of those filters passes one input channel through unchanged, so a freshly
    initialised conv stack starts close to the identity map (as airbench does).
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def __call__(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        kh, kw, cin, cout = shape
        bound = 1.0 / np.sqrt(kh * kw * cin)
        w = keras.random.uniform(shape, -bound, bound, dtype=dtype, seed=self.seed)
        n = min(cin, cout)
        dirac = np.zeros(shape, dtype="float32")
        dirac[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1.0
        keep = np.ones(shape, dtype="float32")
        keep[..., :n] = 0.0
        return w * ops.cast(keep, w.dtype) + ops.cast(dirac, w.dtype)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


def _conv_group(x: Any, width: int, bn_momentum: float, activation: str, name: str) -> Any:
    for i in (1, 2):
        x = SmallMapConv2D(width, 3, padding="same", use_bias=False,
                           kernel_initializer=PartialDirac(), name=f"{name}_conv{i}")(x)
        if i == 1:
            x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
        x = FusedBatchNormalization(momentum=bn_momentum, epsilon=1e-12, scale=False,
                                    name=f"{name}_bn{i}")(x)
        x = activation_layer(activation, name=f"{name}_{activation}{i}")(x)
    return x


@register_model("airbench")
def airbench(
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    widths: tuple[int, int, int] = (64, 256, 256),
    bn_momentum: float = 0.6,  # Keras convention: running = 0.6 running + 0.4 batch
    activation: str = "gelu",
    logit_scale: float | None = None,
    whitening: bool = True,
) -> keras.Model:
    """The airbench94 network: about 1.97M parameters, 0.24 GFLOP per 32x32 image forward.

    Args:
        widths: channels of the three conv groups.
        activation: a Keras activation name ("gelu" as airbench; "relu" is cheaper on CPUs).
        logit_scale: multiplies the logits; default ``1 / widths[-1]``.
        whitening: False puts an ordinary trained 2x2 convolution of the same width in
            place of the frozen data-derived whitening (to measure what whitening brings).

    Before training, `cifar_cnn.models.data_dependent_init` (which the trainer calls) sets the
    whitening filters from training images; without it they are zero.
    """
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Normalization(mean=CIFAR10_MEAN, variance=[s * s for s in CIFAR10_STD],
                             name="normalize")(inputs)
    if whitening:
        x = PatchWhitening(name="whiten")(x)
    else:
        x = layers.Conv2D(2 * 2 * 2 * input_shape[-1], 2, name="whiten")(x)
    x = activation_layer(activation, name=f"whiten_{activation}")(x)
    for i, width in enumerate(widths, start=1):
        x = _conv_group(x, width, bn_momentum, activation, f"block{i}")
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    unit = 3.0**0.5  # uniform in [-sqrt(3), sqrt(3)]: unit variance
    x = layers.Dense(num_classes, use_bias=False, name="head",
                     kernel_initializer=keras.initializers.RandomUniform(-unit, unit))(x)
    x = layers.Rescaling(logit_scale or 1.0 / widths[-1], name="logit_scale")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name="airbench")
