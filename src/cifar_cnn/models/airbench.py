"""An airbench-style fast CIFAR-10 network (Jordan, arXiv:2404.00498), in Keras.

Frozen data-derived 2x2 patch-whitening convolution, then three conv groups of widths
64/256/256 (conv-pool-norm-act-conv-norm-act), global max pool and a bias-free linear head
with unit-variance weights whose logits are divided by the feature width, as in
airbench94_muon. Batch norm has no scale (only a shift); conv kernels start as identity
(Dirac) filters where they can. The conv, norm and activation layers are arguments, so
variants are built without touching this module.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from cifar_cnn.errors import ConfigError
from cifar_cnn.layers import (
    FusedBatchNormalization,
    FusedGELU,
    PartialDirac,
    PatchWhitening,
    SmallMapConv2D,
)
from cifar_cnn.models.registry import register_model

# Per-channel mean and standard deviation of CIFAR-10's training images, in 0..255.
CIFAR10_MEAN = (0.49140 * 255, 0.48216 * 255, 0.44653 * 255)
CIFAR10_STD = (0.24703 * 255, 0.24349 * 255, 0.26159 * 255)

LayerFactory = Callable[..., layers.Layer]


def layer_class(spec: str | LayerFactory) -> LayerFactory:
    """A layer class from a Keras layer name ("Conv2D"), a registered name
    ("cifar_cnn>SmallMapConv2D"), or a class or factory (returned as it is).

    Names keep recipes plain data (they are written to metadata.json).
    """
    if not isinstance(spec, str):
        return spec
    found = keras.saving.get_registered_object(spec) or getattr(keras.layers, spec, None)
    if found is None:
        raise ConfigError(f"Unknown layer {spec!r}: give a keras.layers name such as "
                          "'Conv2D', a registered name such as 'cifar_cnn>SmallMapConv2D', "
                          "or a layer class.")
    return found


def activation_layer(activation: str | LayerFactory, name: str) -> layers.Layer:
    """A layer for `activation`: a Keras activation name ("gelu" is `FusedGELU`), or a
    factory called with ``name=``."""
    if not isinstance(activation, str):
        return activation(name=name)
    if activation == "gelu":
        return FusedGELU(name=name)
    return layers.Activation(activation, name=name)


def _tag(activation: str | LayerFactory) -> str:
    return activation if isinstance(activation, str) else "act"


@register_model("airbench")
def airbench(
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    widths: tuple[int, int, int] = (64, 256, 256),
    bn_momentum: float = 0.6,  # Keras convention: running = 0.6 running + 0.4 batch
    activation: str | LayerFactory = "gelu",
    logit_scale: float | None = None,
    whitening: bool = True,
    whitening_eps: float = 5e-4,
    conv_layer: str | LayerFactory = SmallMapConv2D,
    norm_layer: str | LayerFactory = FusedBatchNormalization,
) -> keras.Model:
    """The airbench94 network: about 1.97M parameters, 0.24 GFLOP per 32x32 image forward.

    Args:
        widths: channels of the three conv groups.
        activation: a Keras activation name ("gelu" as airbench, computed by `FusedGELU`;
            "relu" is cheaper on CPUs), or a layer factory called with ``name=``.
        logit_scale: multiplies the logits; default ``1 / widths[-1]``.
        whitening: False puts an ordinary trained 2x2 convolution of the same width in
            place of the frozen data-derived whitening (to measure what whitening brings).
        whitening_eps: added to the patch covariance's eigenvalues before whitening.
            airbench's 5e-4 amplifies the faintest patch directions about 32x, and with
            them pixel noise (Gaussian noise of 4% of the range then outweighs the signal
            there five times over); a larger value caps that gain.
        conv_layer: the 3x3 convolution, called as ``keras.layers.Conv2D`` is
            (``"Conv2D"`` gives TensorFlow's own kernel gradient everywhere).
        norm_layer: the batch norm, called as ``keras.layers.BatchNormalization`` is
            (``"BatchNormalization"`` gives Keras' unfused one).

    Before training, `cifar_cnn.models.data_dependent_init` (which the trainer calls) sets the
    whitening filters from training images; without it they are zero.
    """
    conv, norm = layer_class(conv_layer), layer_class(norm_layer)
    tag = _tag(activation)
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Normalization(mean=CIFAR10_MEAN, variance=[s * s for s in CIFAR10_STD],
                             name="normalize")(inputs)
    if whitening:
        x = PatchWhitening(eps=whitening_eps, name="whiten")(x)
    else:
        x = layers.Conv2D(2 * 2 * 2 * input_shape[-1], 2, name="whiten")(x)
    x = activation_layer(activation, name=f"whiten_{tag}")(x)
    for g, width in enumerate(widths, start=1):
        for i in (1, 2):
            x = conv(width, 3, padding="same", use_bias=False,
                     kernel_initializer=PartialDirac(), name=f"block{g}_conv{i}")(x)
            if i == 1:
                x = layers.MaxPooling2D(2, name=f"block{g}_pool")(x)
            x = norm(momentum=bn_momentum, epsilon=1e-12, scale=False,
                     name=f"block{g}_bn{i}")(x)
            x = activation_layer(activation, name=f"block{g}_{tag}{i}")(x)
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    unit = 3.0**0.5  # uniform in [-sqrt(3), sqrt(3)]: unit variance
    x = layers.Dense(num_classes, use_bias=False, name="head",
                     kernel_initializer=keras.initializers.RandomUniform(-unit, unit))(x)
    x = layers.Rescaling(logit_scale or 1.0 / widths[-1], name="logit_scale")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name="airbench")
