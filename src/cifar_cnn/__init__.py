"""cifar-cnn: train, evaluate and use convolutional image classifiers on CIFAR-10.

The public API, importable from here::

    import cifar_cnn
    run = cifar_cnn.train("baseline", epochs=10)
    metrics = cifar_cnn.evaluate(run.path)
    clf = cifar_cnn.Classifier.load(run.path)
    clf.classify(["cat.jpg"], top_k=3)

TensorFlow is imported on first use of a name below, so ``import cifar_cnn`` stays quick.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "train": "cifar_cnn.training",
    "evaluate": "cifar_cnn.evaluation",
    "Classifier": "cifar_cnn.predict",
    "load_cifar10": "cifar_cnn.data",
    "CifarData": "cifar_cnn.data",
    "create_model": "cifar_cnn.models",
    "list_models": "cifar_cnn.models",
    "Recipe": "cifar_cnn.recipes",
    "get_recipe": "cifar_cnn.recipes",
    "list_recipes": "cifar_cnn.recipes",
    "CifarCnnError": "cifar_cnn.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cifar_cnn' has no attribute {name!r}")
