"""Network builders, registered by name. Importing this package registers them all."""

from cifar_cnn.models import airbench, baseline  # noqa: F401  (registers them)
from cifar_cnn.models.registry import (
    create_model,
    data_dependent_init,
    leaf_layers,
    list_models,
    register_model,
)

__all__ = ["create_model", "data_dependent_init", "leaf_layers", "list_models", "register_model"]
