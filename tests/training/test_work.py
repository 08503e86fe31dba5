"""Training work counted from layer shapes, and progressive resizing."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cifar_cnn.data.augment import AlternatingFlipTranslate, random_crops
from cifar_cnn.errors import ConfigError
from cifar_cnn.models import create_model
from cifar_cnn.recipes import get_recipe, list_recipes
from cifar_cnn.training.work import forward_flops, train_flops


def test_forward_flops_counts_each_kernel_at_each_output_position() -> None:
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8 positions x 3*3*3*4
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(5, 3, padding="valid", groups=1)(x)  # 2*2 positions x 3*3*4*5
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(7)(x)  # 20 x 7
    model = keras.Model(inputs, out)
    assert forward_flops(model) == 2 * (64 * 108 + 4 * 180 + 20 * 7)


@pytest.mark.parametrize("recipe", list_recipes())
def test_train_flops_is_three_forward_passes_per_image_seen(recipe: str) -> None:
    r = get_recipe(recipe).replace(train_sizes=())  # every epoch at full size
    model = create_model(r.model, **r.model_options)
    per_image = 3 * forward_flops(model)
    images = 49000 // r.batch_size * r.batch_size if r.augmentation else 49000
    assert train_flops(r, 49000, model=model) == pytest.approx(r.epochs * images * per_image)


def test_progressive_resizing_costs_less_work() -> None:
    r = get_recipe("fast94").replace(epochs=8)
    small = r.replace(train_sizes=((16, 1 / 8), (24, 2 / 8)))
    assert small.epoch_sizes(32) == [16, 24, 32, 32, 32, 32, 32, 32]
    full = train_flops(r, 10000)
    net16 = create_model("airbench", input_shape=(16, 16, 3))
    net24 = create_model("airbench", input_shape=(24, 24, 3))
    net32 = create_model("airbench")
    expected = full - 10000 * 3 * (2 * forward_flops(net32) - forward_flops(net16)
                                   - forward_flops(net24))
    assert train_flops(small, 10000) == pytest.approx(expected)
    assert forward_flops(net16) < forward_flops(net24) < forward_flops(net32)


def test_the_size_schedule_keeps_its_proportions_for_any_number_of_epochs() -> None:
    r = get_recipe("lean94")
    assert r.epoch_sizes(32) == [16, 16, 24, 24, 24, 32, 32, 32]
    assert r.replace(epochs=16).epoch_sizes(32) == [16] * 4 + [24] * 6 + [32] * 6
    assert r.replace(epochs=2).epoch_sizes(32) == [24, 32]
    assert r.replace(epochs=1).epoch_sizes(32) == [24]


def test_progressive_sizes_are_checked() -> None:
    r = get_recipe("fast94")
    for bad in (((24, 0.5), (16, 0.25)), ((16, 1.5),), ((4, 0.5),)):
        with pytest.raises(ConfigError, match="train_sizes must be"):
            r.replace(train_sizes=bad)
    with pytest.raises(ConfigError, match="needs the 'alternating_flip_translate'"):
        get_recipe("baseline").replace(train_sizes=((16, 0.5),))
    x = np.zeros((40, 32, 32, 3), np.uint8)
    with pytest.raises(ConfigError, match="between 8 and the image side"):
        AlternatingFlipTranslate(x, np.arange(40), 10, sizes=(40,))
    with pytest.raises(ConfigError, match="size_mode must be one of"):
        AlternatingFlipTranslate(x, np.arange(40), 10, sizes=(16,), size_mode="zoom")


@pytest.mark.parametrize("mode", ["crop", "resize"])
def test_epochs_train_at_their_scheduled_size(mode: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    seq = AlternatingFlipTranslate(x, np.arange(40), 10, sizes=(16, 24), size_mode=mode)
    shapes = []
    for _ in range(3):
        shapes.append(seq[0][0].shape)
        seq.on_epoch_end()
    assert shapes == [(10, 16, 16, 3), (10, 24, 24, 3), (10, 32, 32, 3)]
    ds = AlternatingFlipTranslate(x, np.arange(40), 10, sizes=(16,),
                                  size_mode=mode).to_tf_dataset()
    assert {tuple(xb.shape) for xb, _ in ds} == {(10, 16, 16, 3)}  # one pass, one epoch
    assert {tuple(xb.shape) for xb, _ in ds} == {(10, 32, 32, 3)}  # the next epoch


def test_random_crops_are_windows_of_the_images() -> None:
    x = np.arange(2 * 6 * 6 * 1, dtype=np.uint8).reshape(2, 6, 6, 1)
    crops = random_crops(x, 4, np.random.default_rng(3))
    for image, crop in zip(x, crops, strict=True):
        windows = np.lib.stride_tricks.sliding_window_view(image[..., 0], (4, 4))
        assert any((w == crop[..., 0]).all() for w in windows.reshape(-1, 4, 4))


def test_each_image_size_is_trained_by_a_step_traced_for_it() -> None:
    """Without static shapes, convolutions on a CPU run a slow generic graph."""
    import tensorflow as tf

    from cifar_cnn.training.callbacks import StaticImageSize

    traced: list[tuple] = []

    class Record(keras.layers.Layer):
        def call(self, x):  # runs when the step is traced
            traced.append(tuple(x.shape))
            return x

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3)(Record()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalMaxPooling2D()(x)))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    traced.clear()  # building the model called it on a symbolic input
    rng = np.random.default_rng(0)
    seq = AlternatingFlipTranslate(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
                                   np.arange(8) % 2, 4, sizes=(16, 16), size_mode="resize")
    model.fit(seq.to_tf_dataset(), epochs=3, verbose=0,
              callbacks=[StaticImageSize([(16, 16), (16, 16), (32, 32)])])
    assert set(traced) == {(None, 16, 16, 3), (None, 32, 32, 3)}
    assert "train_step" not in vars(model)  # the model's own step is back
    assert tf.executing_eagerly()
