"""Training work in floating-point operations, counted from the network's layer shapes.

A multiply-add counts as 2 FLOPs. Only layers with a ``kernel`` (convolutions, dense
layers) are counted: batch norm, activations and pooling add well under 1% to the airbench
network. A training step counts its forward pass once and its backward pass twice (the
input and the kernel gradients), as the fast-training literature does, so one training
image costs 3 forward passes at the resolution it was trained at. Evaluation, calibration
and test-time augmentation are not training work.
"""

from __future__ import annotations

import math
from typing import Any

import keras

from cifar_cnn.data.augment import images_per_epoch
from cifar_cnn.models import leaf_layers
from cifar_cnn.recipes import Recipe

BACKWARD_FACTOR = 2  # the backward pass costs twice the forward pass


def forward_flops(model: keras.Model) -> int:
    """FLOPs of one image's forward pass through a built functional `model`."""
    total = 0
    for layer in leaf_layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        # A conv kernel (kh, kw, cin / groups, cout) or a dense one (cin, cout) costs one
        # multiply-add per weight at each output position.
        positions = math.prod(d for d in layer.output.shape[1:-1])
        total += 2 * positions * math.prod(kernel.shape)
    return total


def train_flops(recipe: Recipe, num_train: int, *, num_classes: int = 10,
                image_shape: tuple[int, int, int] = (32, 32, 3),
                model: keras.Model | None = None) -> float:
    """FLOPs of training `recipe` on `num_train` images: forward once, backward twice.

    Args:
        model: the recipe's network built for `image_shape`, if at hand (saves building it);
            networks for the smaller sizes of ``recipe.train_sizes`` are built here.
    """
    from cifar_cnn.models import create_model

    h, w, c = image_shape
    per_size: dict[int, int] = {}
    if model is not None:
        per_size[h] = forward_flops(model)
    images = images_per_epoch(num_train, recipe.batch_size, recipe.augmentation)
    total = 0.0
    for size in recipe.epoch_sizes(h):
        if size not in per_size:
            shape = (size, round(w * size / h), c)
            per_size[size] = forward_flops(create_model(
                recipe.model, num_classes=num_classes, input_shape=shape,
                **recipe.model_options))
        total += images * (1 + BACKWARD_FACTOR) * per_size[size]
    return total


def work_summary(recipe: Recipe, num_train: int, *, num_classes: int,
                 image_shape: tuple[int, int, int], model: keras.Model) -> dict[str, Any]:
    """The ``"work"`` entry of a finished run's metadata: the whole run's training PFLOPs
    (resumed or not), one image's forward GFLOPs, and the image size of each epoch."""
    flops = train_flops(recipe, num_train, num_classes=num_classes, image_shape=image_shape,
                        model=model)
    return {"train_pflops": round(flops / 1e15, 6),
            "forward_gflops_per_image": round(forward_flops(model) / 1e9, 4),
            "train_sizes": recipe.epoch_sizes(image_shape[0])}
