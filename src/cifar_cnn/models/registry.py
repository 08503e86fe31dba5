"""Networks by name: ``create_model("baseline")``. A new network is one registration away."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

from cifar_cnn.errors import ConfigError

ModelBuilder = Callable[..., keras.Model]
_MODELS: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: register a builder ``f(num_classes, input_shape, **kwargs) -> keras.Model``."""

    def wrap(builder: ModelBuilder) -> ModelBuilder:
        if name in _MODELS:
            raise ConfigError(f"A model named {name!r} is already registered.")
        _MODELS[name] = builder
        return builder

    return wrap


def list_models() -> list[str]:
    """Names of the registered networks."""
    return sorted(_MODELS)


def create_model(
    name: str,
    *,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    **kwargs: Any,
) -> keras.Model:
    """Build a registered network. It takes raw RGB pixels (0..255) and outputs probabilities.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    if name not in _MODELS:
        raise ConfigError(f"Unknown model {name!r}. Known models: {', '.join(list_models())}.")
    return _MODELS[name](num_classes=num_classes, input_shape=input_shape, **kwargs)


def data_dependent_init(model: keras.Model, images: np.ndarray, batch_size: int = 500) -> None:
    """Initialise layers that set their weights from data (``adapts_to_data = True``).

    Each such layer gets ``adapt(x)`` with its own inputs for `images`, i.e. the images
    passed through every layer before it.
    """
    for layer in model.layers:
        if getattr(layer, "adapts_to_data", False):
            feed = keras.Model(model.inputs, layer.input)
            layer.adapt(np.asarray(feed.predict(images, batch_size=batch_size, verbose=0)))


def leaf_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """The layers of `model`, those of nested models included (not the models themselves)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer)
        else:
            yield layer
