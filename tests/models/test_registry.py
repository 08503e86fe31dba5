"""Every registered network and recipe, tested by being registered."""

from __future__ import annotations

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
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    assert recipe.model in list_models()


def test_recipe_overrides_and_checks() -> None:
    r = get_recipe("baseline").replace(epochs=3, batch_size=None)
    assert r.epochs == 3 and r.batch_size == 32
    with pytest.raises(ConfigError, match="Received: epochs=0"):
        r.replace(epochs=0)
    with pytest.raises(ConfigError, match="precision"):
        r.replace(precision="float8")


def test_patch_whitening_whitens_patches() -> None:
    from cifar_cnn.models.airbench import PatchWhitening

    rng = np.random.default_rng(0)
    base = rng.normal(size=(64, 16, 16, 1))
    images = np.concatenate([base, 0.5 * base + 0.1 * rng.normal(size=base.shape),
                             rng.normal(size=base.shape)], axis=-1)  # correlated channels
    layer = PatchWhitening(eps=1e-9)  # no regularisation: exact whitening
    layer.adapt(images)
    out = np.asarray(layer(images.astype("float32")))[..., :12].reshape(-1, 12)
    cov = np.cov(out, rowvar=False)
    np.testing.assert_allclose(cov, np.eye(12), atol=0.05)
    np.testing.assert_allclose(np.asarray(layer(images.astype("float32")))[..., 12:],
                               -np.asarray(layer(images.astype("float32")))[..., :12],
                               rtol=1e-5, atol=1e-5)


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


@pytest.mark.parametrize("scale", [False, True])
def test_fused_batch_norm_matches_keras(scale: bool) -> None:
    import keras
    import tensorflow as tf

    from cifar_cnn.models.airbench import FusedBatchNormalization

    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (4, 5, 5, 6)), "float32")
    layers = [cls(momentum=0.6, epsilon=1e-12, scale=scale,
                  beta_initializer=keras.initializers.Constant(0.3))
              for cls in (keras.layers.BatchNormalization, FusedBatchNormalization)]
    outputs, grads = [], []
    for layer in layers:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.range(6, dtype="float32"))
        outputs.append(y.numpy())
        grads.append([g.numpy() for g in tape.gradient(loss, [x, *layer.trainable_weights])])
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-5)
    for fused, plain in zip(grads[1], grads[0], strict=True):
        np.testing.assert_allclose(fused, plain, atol=1e-4)
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(getattr(layers[1], name).numpy(),
                                   getattr(layers[0], name).numpy(), rtol=1e-5)
    np.testing.assert_allclose(layers[1](x, training=False), layers[0](x, training=False),
                               atol=1e-5)


def _output_and_grads(fn, x, weights=()) -> tuple:
    """``fn(x)`` and the gradients of a fixed weighting of it by ``x`` and ``weights``,
    as float32 arrays; checks that ``fn`` keeps ``x``'s dtype."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
        loss = tf.reduce_sum(tf.cast(y, "float32") * tf.range(y.shape[-1], dtype="float32"))
    assert y.dtype == x.dtype
    grads = tape.gradient(loss, [x, *weights])
    return tf.cast(y, "float32").numpy(), [tf.cast(g, "float32").numpy() for g in grads]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fused_gelu_matches_keras_gelu(dtype: str, tmp_path) -> None:
    import keras
    import tensorflow as tf

    from cifar_cnn.models.airbench import FusedGELU

    x = tf.cast(tf.constant(np.random.default_rng(0).normal(0.0, 2.0, (3, 4, 4, 5))), dtype)
    (out_keras, (grad_keras,)), (out_ours, (grad_ours,)) = (
        _output_and_grads(fn, x) for fn in (keras.activations.gelu, FusedGELU(dtype=dtype)))
    outputs, grads = [out_keras, out_ours], [grad_keras, grad_ours]
    tol = 1e-6 if dtype == "float32" else 2e-2  # bfloat16 keeps 8 bits of mantissa
    np.testing.assert_allclose(outputs[1], outputs[0], atol=tol, rtol=tol)
    np.testing.assert_allclose(grads[1], grads[0], atol=4 * tol, rtol=tol)

    model = keras.Sequential([keras.Input((4, 4, 5)), FusedGELU()])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.layers[-1], FusedGELU)
    np.testing.assert_allclose(loaded(tf.cast(x, "float32")), outputs[0], atol=2e-2)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("size", [3, 4, 9])  # 9x9 at 6 channels takes Keras' own path
def test_small_map_conv_matches_keras_conv(dtype: str, size: int, tmp_path) -> None:
    import keras
    import tensorflow as tf

    from cifar_cnn.models import airbench
    from cifar_cnn.models.airbench import SmallMapConv2D

    rng = np.random.default_rng(0)
    x = tf.cast(tf.constant(rng.normal(0.0, 1.0, (4, size, size, 6))), dtype)
    kernel = rng.normal(0.0, 0.3, (3, 3, 6, 5))
    convs = [cls(5, 3, padding="same", use_bias=False, dtype=dtype,
                 kernel_initializer=keras.initializers.Constant(kernel))
             for cls in (keras.layers.Conv2D, SmallMapConv2D)]
    outputs, grads = [], []
    for conv in convs:
        conv.build(x.shape)
        y, g = _output_and_grads(conv, x, [conv.kernel])
        outputs.append(y)
        grads.append(g)
    tol = 1e-5 if dtype == "float32" else 3e-2
    np.testing.assert_allclose(outputs[1], outputs[0], atol=tol)
    for ours, keras_grad in zip(grads[1], grads[0], strict=True):
        scale = np.abs(keras_grad).max()
        np.testing.assert_allclose(ours / scale, keras_grad / scale, atol=tol)
    assert airbench.matmul_kernel_grad_pays(size, size, 6, 5) == (size < 9)

    model = keras.Sequential([keras.Input((size, size, 6)), convs[1]])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.layers[-1], SmallMapConv2D)
    np.testing.assert_allclose(tf.cast(loaded(x), "float32"), outputs[1], atol=tol)
