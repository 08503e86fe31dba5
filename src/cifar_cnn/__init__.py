"""cifar-cnn: train, evaluate and use convolutional image classifiers on CIFAR-10.

The public API, importable from here::

    import cifar_cnn
    run = cifar_cnn.train("baseline", epochs=10)
    metrics = cifar_cnn.evaluate(run.path)
    clf = cifar_cnn.Classifier.load(run.path)
    clf.classify(["cat.jpg"], top_k=3)

TensorFlow is imported on first use of a name below, so ``import cifar_cnn`` stays quick
(and the ``cifar-cnn`` command can quieten TensorFlow before it loads). cifar-cnn's Keras
layers and optimizer are registered with Keras as soon as Keras is imported, by anyone, so
``keras.saving.load_model`` reads any cifar-cnn model after a plain ``import cifar_cnn``.
"""

from __future__ import annotations

import importlib
from typing import Any

import wrapt

__version__ = "0.1.0"

_EXPORTS = {
    "train": "cifar_cnn.training",
    "TrainConfig": "cifar_cnn.training",
    "InputSpec": "cifar_cnn.images",
    "ModelCard": "cifar_cnn.card",
    "load_card": "cifar_cnn.card",
    "evaluate": "cifar_cnn.evaluation",
    "Classifier": "cifar_cnn.predict",
    "load_cifar10": "cifar_cnn.data",
    "load_dataset": "cifar_cnn.data",
    "CifarData": "cifar_cnn.data",
    "create_model": "cifar_cnn.models",
    "list_models": "cifar_cnn.models",
    "Recipe": "cifar_cnn.recipes",
    "get_recipe": "cifar_cnn.recipes",
    "list_recipes": "cifar_cnn.recipes",
    "CifarCnnError": "cifar_cnn.errors",
}

__all__ = ["__version__", *_EXPORTS]

# Modules whose import registers Keras serializables (layers, initialisers, optimizers).
_KERAS_SERIALIZABLES = ("cifar_cnn.layers", "cifar_cnn.optimizers")


def _register_with_keras(_keras: Any) -> None:
    for module in _KERAS_SERIALIZABLES:
        importlib.import_module(module)


# Runs now if Keras is already imported, else right after it is.
wrapt.register_post_import_hook(_register_with_keras, "keras")


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cifar_cnn' has no attribute {name!r}")
