"""Every registered network and recipe, tested by being registered."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifar_cnn.errors import ConfigError
from cifar_cnn.models import create_model, list_models, register_model
from cifar_cnn.recipes import Recipe, get_recipe, list_recipes


@pytest.mark.parametrize("name", list_models())
def test_model_takes_raw_pixels_and_outputs_probabilities(name: str) -> None:
    model = create_model(name, num_classes=7)
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    probs = np.asarray(model(x.astype("float32"), training=False))
    assert probs.shape == (2, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_baseline_is_the_tutorial_network() -> None:
    model = create_model("baseline")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Rescaling", "Conv2D", "MaxPooling2D", "Conv2D",
                     "MaxPooling2D", "Conv2D", "Flatten", "Dense", "Dense"]
    assert model.count_params() == 122_570


def test_unknown_and_duplicate_names() -> None:
    with pytest.raises(ConfigError, match=r"Unknown model 'nope'\. Known models: airbench, "):
        create_model("nope")
    with pytest.raises(ConfigError, match="already registered"):
        register_model("baseline")(lambda **kw: None)
    with pytest.raises(ConfigError, match="Unknown recipe"):
        get_recipe("nope")


@pytest.mark.parametrize("name", list_recipes())
def test_recipes_round_trip_through_metadata(name: str) -> None:
    recipe = get_recipe(name)
    saved = json.loads(json.dumps(recipe.to_dict()))  # as metadata.json holds it
    assert Recipe.from_dict(saved) == recipe
    assert recipe.model in list_models()


def test_recipe_overrides_and_checks() -> None:
    r = get_recipe("baseline").replace(epochs=3, batch_size=None)
    assert r.epochs == 3 and r.batch_size == 32
    with pytest.raises(ConfigError, match="Received: epochs=0"):
        r.replace(epochs=0)
    with pytest.raises(ConfigError, match="precision"):
        r.replace(precision="float8")


def test_airbench_without_whitening_learns_its_first_conv() -> None:
    with_whitening = create_model("airbench", widths=(8, 8, 8))
    plain = create_model("airbench", widths=(8, 8, 8), whitening=False)
    first, second = with_whitening.get_layer("whiten"), plain.get_layer("whiten")
    assert getattr(first, "adapts_to_data", False) and not first.kernel.trainable
    assert not getattr(second, "adapts_to_data", False) and second.kernel.trainable
    assert first.output.shape == second.output.shape


def test_warmup_cosine_schedule() -> None:
    r = get_recipe("baseline").replace(lr_schedule="warmup_cosine", warmup_fraction=0.2,
                                       learning_rate=1.0, epochs=10)
    schedule = r.learning_rate_for(steps_per_epoch=10)  # 100 steps, 20 of warm-up
    values = [float(schedule(step)) for step in (0, 20, 60, 100)]
    np.testing.assert_allclose(values, [0.1, 1.0, 0.5, 0.0], atol=1e-6)
    assert get_recipe("baseline").learning_rate_for(10) == 1e-3
    with pytest.raises(ConfigError, match="lr_schedule"):
        r.replace(lr_schedule="step")


def test_airbench_takes_its_parts_as_arguments(tmp_path) -> None:
    import keras

    from cifar_cnn.layers import FusedBatchNormalization, FusedGELU, SmallMapConv2D

    def kinds(model: keras.Model) -> set[type]:
        return {type(layer) for layer in model.layers}

    default = create_model("airbench", widths=(8, 8, 8))
    assert {SmallMapConv2D, FusedBatchNormalization, FusedGELU} <= kinds(default)
    variant = create_model(
        "airbench", widths=(8, 8, 8), conv_layer="Conv2D",
        norm_layer=keras.layers.BatchNormalization,
        activation=lambda name: keras.layers.Activation("gelu", name=name))
    assert not {SmallMapConv2D, FusedBatchNormalization, FusedGELU} & kinds(variant)
    assert {keras.layers.Conv2D, keras.layers.BatchNormalization} <= kinds(variant)
    assert variant.count_params() == default.count_params()
    variant.save(tmp_path / "v.keras")
    assert keras.saving.load_model(tmp_path / "v.keras").count_params() == default.count_params()
    same = create_model("airbench", widths=(8, 8, 8), conv_layer="cifar_cnn>SmallMapConv2D")
    assert SmallMapConv2D in kinds(same)
    with pytest.raises(ConfigError, match="Unknown layer 'Conv3x3'"):
        create_model("airbench", conv_layer="Conv3x3")
