"""Named training recipes. Importing this package registers them all."""

from cifar_cnn.recipes import airbench, baseline  # noqa: F401  (registers them)
from cifar_cnn.recipes.base import Recipe, get_recipe, list_recipes, register_recipe

__all__ = ["Recipe", "get_recipe", "list_recipes", "register_recipe"]
