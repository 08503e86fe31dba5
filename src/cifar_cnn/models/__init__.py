"""Network builders, registered by name. Importing this package registers them all."""

from cifar_cnn.models import baseline  # noqa: F401  (registers "baseline")
from cifar_cnn.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
