"""Selective backpropagation for the ablation benchmark: a small proxy picks what to learn.

As airbench96_faster does (github.com/KellerJordan/cifar10-airbench): a proxy network far
smaller than the one being trained scores every example of each batch by its loss, and the
network trains (forward and backward) on the hardest fraction only, so most of its work
goes where it still has something to learn. The proxy trains alongside, on every second
whole batch.

This lives in benchmarks/ while it is an experiment (issue "94% with a third less work"),
with the product's own hooks: `selective_recipe` names the network "selective" (registered
here in the model registry), a `SelectiveModel` whose ``train_step`` (Keras' documented way
to change what ``fit`` does) trains on the examples its ranker picks, and the ranker is the
`SelectiveBackprop` callback, which builds the proxy when training begins. The proxy is not
part of a run's checkpoints, so such a run cannot be resumed; its model.keras loads where
this module is imported (the class is registered with Keras on import). A recipe field
follows if it wins.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from cifar_cnn.errors import ConfigError
from cifar_cnn.models import create_model, register_model
from cifar_cnn.recipes import Recipe

PROXY_WIDTHS = (16, 32, 32)  # a forward pass costs about 1/19 of fast94's
PROXY_EVERY = 2  # the proxy trains on every second batch (airbench96_faster: every fourth)
# Proxy passes per image: one forward pass to score it, three to train on it every
# PROXY_EVERY steps: about 4% of fast94's work per image.
PROXY_PASSES = 1 + 3 / PROXY_EVERY
SELECTIVE_NETWORK = "selective"  # its name in the model registry


def selective_recipe(r: Recipe, keep: float, epochs: int) -> Recipe:
    """`r` over `epochs` with its network trained on the `keep` fraction of each batch (the
    "selective" network around it), its per-image SGD rates scaled by `keep`.

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
    return r.replace(epochs=epochs, optimizer_options=options, model=SELECTIVE_NETWORK,
                     model_options={"base": r.model, "keep": keep, **r.model_options})


def _per_example_loss(y: Any, probs: Any) -> Any:
    import tensorflow as tf

    probs = tf.cast(probs, tf.float32)
    if y.shape.rank == 1:  # sparse labels
        return keras.losses.sparse_categorical_crossentropy(y, probs)
    return keras.losses.categorical_crossentropy(tf.cast(y, tf.float32), probs)


@keras.saving.register_keras_serializable(package="benchmarks")
class SelectiveModel(keras.Model):
    """A network that trains on the `keep` fraction of each batch its `ranker` finds hardest.

    Without a ranker (a `SelectiveBackprop` sets itself as one while training) it trains on
    whole batches; it always predicts as the network it wraps.
    """

    keep: float = 1.0
    ranker: SelectiveBackprop | None = None

    def train_step(self, data: Any) -> Any:
        if self.ranker is None:
            return super().train_step(data)
        return super().train_step(self.ranker.hardest(data[0], data[1], self.keep))


@register_model(SELECTIVE_NETWORK)
def selective_network(num_classes: int = 10, input_shape: tuple[int, int, int] = (32, 32, 3),
                      base: str = "airbench", keep: float = 0.5,
                      **options: Any) -> SelectiveModel:
    """The registered network `base` (built with `options`) as a `SelectiveModel` that trains
    on the `keep` fraction of each batch."""
    if not 0 < keep <= 1:
        raise ConfigError(f"keep must be in (0, 1]; received {keep!r}.")
    net = create_model(base, num_classes=num_classes, input_shape=input_shape, **options)
    model = SelectiveModel(net.input, net.output, name=net.name)
    model.keep = keep
    return model


class SelectiveBackprop(keras.callbacks.Callback):
    """The ranker of a `SelectiveModel`: a proxy network that scores every example of each
    batch by its loss, and trains alongside on every `PROXY_EVERY` th batch.

    Args:
        recipe: the recipe being trained, from `selective_recipe` (the proxy follows it, its
            network at `proxy_widths`).
        images: training images for the proxy's data-dependent initialisation.
        steps_per_epoch: for the proxy's learning-rate schedule.
    """

    def __init__(self, recipe: Recipe, images: np.ndarray, steps_per_epoch: int,
                 proxy_widths: tuple[int, int, int] = PROXY_WIDTHS) -> None:
        super().__init__()
        if recipe.model != SELECTIVE_NETWORK:
            raise ConfigError(f"The recipe's network is {recipe.model!r}, not "
                              f"{SELECTIVE_NETWORK!r}: make the recipe with selective_recipe.")
        options = dict(recipe.model_options)
        base = options.pop("base", "airbench")
        self.keep = options.pop("keep", 0.5)
        self.proxy_recipe = recipe.replace(
            model=base, model_options={**options, "widths": tuple(proxy_widths)})
        self.images = images
        self.steps_per_epoch = steps_per_epoch
        self.proxy: keras.Model | None = None
        self.images_trained = keras.Variable(0, dtype="int64", trainable=False)
        self.steps = keras.Variable(0, dtype="int64", trainable=False)

    def on_train_begin(self, logs: dict | None = None) -> None:
        from cifar_cnn.models import data_dependent_init
        from cifar_cnn.training.trainer import build_model

        model = self.model
        if not isinstance(model, SelectiveModel) or model.keep != self.keep:
            raise ConfigError("SelectiveBackprop ranks for the recipe's own SelectiveModel.")
        proxy = build_model(self.proxy_recipe, model.output_shape[-1], model.input_shape[1:],
                            -(-self.steps_per_epoch // PROXY_EVERY))
        data_dependent_init(proxy, self.images)
        proxy.optimizer.build(proxy.trainable_variables)
        self.proxy = proxy
        model.ranker = self
        model.make_train_function(force=True)  # traced anew, with the ranker

    def on_train_end(self, logs: dict | None = None) -> None:
        self.model.ranker = None
        self.model.make_train_function(force=True)  # a later fit trains on whole batches

    def hardest(self, x: Any, y: Any, keep: float) -> tuple[Any, Any]:
        """The `keep` fraction of the batch ``(x, y)`` with the highest loss under the proxy,
        which trains on the whole batch every `PROXY_EVERY` th call (in ``train_step``)."""
        import tensorflow as tf

        proxy = self.proxy
        if proxy is None:
            raise RuntimeError("the proxy is built when training begins")

        def train_proxy() -> Any:
            with tf.GradientTape() as tape:
                loss = proxy.loss(y, proxy(x, training=True))
            grads = tape.gradient(loss, proxy.trainable_variables)
            proxy.optimizer.apply(grads, proxy.trainable_variables)
            return tf.constant(True)

        scores = _per_example_loss(y, proxy(x, training=False))
        k = tf.cast(tf.math.ceil(keep * tf.cast(tf.shape(x)[0], tf.float32)), tf.int32)
        top = tf.math.top_k(scores, k=k).indices
        tf.cond(self.steps % PROXY_EVERY == 0, train_proxy, lambda: tf.constant(False))
        self.steps.assign_add(1)
        self.images_trained.assign_add(tf.cast(k, "int64"))
        return tf.gather(x, top), tf.gather(y, top)

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
