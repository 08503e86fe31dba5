"""Selective backpropagation for the ablation benchmark: a small proxy picks what to learn.

As airbench96_faster does (github.com/KellerJordan/cifar10-airbench): a proxy network far
smaller than the one being trained scores every example of each batch by its loss, and the
network trains (forward and backward) on the hardest fraction only, so most of its work
goes where it still has something to learn. The proxy trains alongside, on every second
whole batch.

This lives in benchmarks/ while it is an experiment (issue "94% with a third less work"):
the callback overrides the train step of one ``model.fit``, and the proxy is not part of
a run's checkpoints, so such a run cannot be resumed. A recipe field follows if it wins.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from cifar_cnn.recipes import Recipe

PROXY_WIDTHS = (16, 32, 32)  # a forward pass costs about 1/19 of fast94's
PROXY_EVERY = 2  # the proxy trains on every second batch (airbench96_faster: every fourth)
# Proxy passes per image: one forward pass to score it, three to train on it every
# PROXY_EVERY steps: about 4% of fast94's work per image.
PROXY_PASSES = 1 + 3 / PROXY_EVERY


def selective_recipe(r: Recipe, keep: float, epochs: int) -> Recipe:
    """`r` over `epochs`, its per-image SGD rates scaled by `keep`.

    Keras averages the loss over the kept examples; airbench sums it over them at its
    whole-batch rates, which is what scaling the rates by the kept fraction reproduces.
    Muon's update is normalised, so its rate is left alone.
    """
    options = dict(r.optimizer_options)
    for key in ("sgd_learning_rate_per_image", "sgd_learning_rates_per_image"):
        value = options.get(key)
        if isinstance(value, dict):
            options[key] = {k: v * keep for k, v in value.items()}
        elif value is not None:
            options[key] = value * keep
    return r.replace(epochs=epochs, optimizer_options=options)


def _per_example_loss(y: Any, probs: Any) -> Any:
    import tensorflow as tf

    probs = tf.cast(probs, tf.float32)
    if y.shape.rank == 1:  # sparse labels
        return keras.losses.sparse_categorical_crossentropy(y, probs)
    return keras.losses.categorical_crossentropy(tf.cast(y, tf.float32), probs)


class SelectiveBackprop(keras.callbacks.Callback):
    """Train the model on the `keep` fraction of each batch that a proxy finds hardest.

    Args:
        recipe: the recipe being trained (the proxy follows it, at `proxy_widths`).
        keep: fraction of each batch the model trains on.
        images: training images for the proxy's data-dependent initialisation.
        steps_per_epoch: for the proxy's learning-rate schedule.
    """

    def __init__(self, recipe: Recipe, keep: float, images: np.ndarray, steps_per_epoch: int,
                 proxy_widths: tuple[int, int, int] = PROXY_WIDTHS) -> None:
        super().__init__()
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be in (0, 1]; received {keep!r}.")
        self.keep = keep
        self.proxy_recipe = recipe.replace(
            model_options={**recipe.model_options, "widths": tuple(proxy_widths)})
        self.images = images
        self.steps_per_epoch = steps_per_epoch
        self.proxy: keras.Model | None = None
        self.images_trained = keras.Variable(0, dtype="int64", trainable=False)
        self.steps = keras.Variable(0, dtype="int64", trainable=False)

    def on_train_begin(self, logs: dict | None = None) -> None:
        import tensorflow as tf

        from cifar_cnn.models import data_dependent_init
        from cifar_cnn.training.trainer import build_model

        model = self.model
        proxy = build_model(self.proxy_recipe, model.output_shape[-1], model.input_shape[1:],
                            -(-self.steps_per_epoch // PROXY_EVERY))
        data_dependent_init(proxy, self.images)
        proxy.optimizer.build(proxy.trainable_variables)
        self.proxy = proxy
        proxy_loss = proxy.loss
        model_step = type(model).train_step
        keep, trained, steps = self.keep, self.images_trained, self.steps

        def train_proxy(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = proxy_loss(y, proxy(x, training=True))
            grads = tape.gradient(loss, proxy.trainable_variables)
            proxy.optimizer.apply(grads, proxy.trainable_variables)
            return tf.constant(True)

        def train_step(data: Any) -> Any:
            x, y = data[0], data[1]
            scores = _per_example_loss(y, proxy(x, training=False))
            k = tf.cast(tf.math.ceil(keep * tf.cast(tf.shape(x)[0], tf.float32)), tf.int32)
            hardest = tf.math.top_k(scores, k=k).indices
            tf.cond(steps % PROXY_EVERY == 0, lambda: train_proxy(x, y),
                    lambda: tf.constant(False))
            steps.assign_add(1)
            trained.assign_add(tf.cast(k, "int64"))
            return model_step(model, (tf.gather(x, hardest), tf.gather(y, hardest)))

        model.train_step = train_step
        model.make_train_function(force=True)

    def on_train_end(self, logs: dict | None = None) -> None:
        vars(self.model).pop("train_step", None)
        self.model.train_function = None

    def train_pflops(self, model_pflops: float, images_seen: int) -> float:
        """The run's work: the model's on the kept examples plus the proxy's on all of them.

        Args:
            model_pflops: the model's work had it trained on whole batches.
            images_seen: training images over the run (epochs x images per epoch).
        """
        from cifar_cnn.training.work import forward_flops

        if self.proxy is None:
            raise RuntimeError("the proxy is built when training begins")
        proxy = PROXY_PASSES * images_seen * forward_flops(self.proxy) / 1e15
        return model_pflops * self.keep + proxy
