"""Training-time distortions: each keeps shape and type, is seeded, and does what it says."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from cifar_cnn.data import distort as d
from cifar_cnn.data.augment import AlternatingFlipTranslate, make_train_dataset
from cifar_cnn.errors import ConfigError


def _images(n: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    x[: n // 4] //= 5  # dark, low-range images
    x[n // 4: n // 4 + 2] = 77  # flat ones
    return x


@pytest.mark.parametrize("name", [*d.AUGMIX_OPS, *d.DISTORTIONS])
def test_every_distortion_keeps_shape_and_type_and_is_seeded(name):
    fn = {**d.AUGMIX_OPS, **d.DISTORTIONS}[name]
    x = _images()
    a = fn(x.copy(), np.random.default_rng(3))
    b = fn(x.copy(), np.random.default_rng(3))
    assert a.shape == x.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    if name != "autocontrast":  # random images already span 0..255
        assert not np.array_equal(a, x), f"{name} left every image as it was"


def test_equalize_is_pillows():
    x = _images(40)
    x[30:35, :, :, 0] = (x[30:35, :, :, 0] > 128) * 200  # two levels in one channel
    expected = np.stack([np.asarray(ImageOps.equalize(Image.fromarray(im))) for im in x])
    np.testing.assert_array_equal(d._equalize(x, np.random.default_rng(0)), expected)


def test_autocontrast_stretches_each_channel_to_the_full_range():
    x = _images()
    out = d._autocontrast(x, np.random.default_rng(0))
    varied = x.min(axis=(1, 2)) < x.max(axis=(1, 2))
    assert (out.min(axis=(1, 2))[varied] == 0).all()
    assert (out.max(axis=(1, 2))[varied] == 255).all()
    np.testing.assert_array_equal(out[~varied.any(1)], x[~varied.any(1)])  # flat: as is


def test_posterize_keeps_only_the_top_bits_and_solarize_inverts_the_bright_pixels():
    x = _images()
    assert not (d._posterize(x, np.random.default_rng(0)) & 0x0F).any()
    out = d._solarize(x, np.random.default_rng(0))
    dark = x < 179  # below every threshold solarize draws
    np.testing.assert_array_equal(out[dark], x[dark])
    assert (out[x == 255] == 0).all()


def test_the_affine_warp_turns_an_image_a_quarter_turn_exactly():
    x = _images(4)
    linear = np.tile(np.array([[0.0, 1.0], [-1.0, 0.0]]), (4, 1, 1))
    turned = d._centred(x, linear, np.zeros((4, 2)))
    np.testing.assert_array_equal(turned, np.rot90(x, k=-1, axes=(1, 2)))
    same = d._centred(x, np.tile(np.eye(2), (4, 1, 1)), np.zeros((4, 2)))
    np.testing.assert_array_equal(same, x)


def test_lower_contrast_shrinks_the_spread_around_each_mean():
    x = _images()
    out = d.lower_contrast(x, np.random.default_rng(0)).astype(float)
    assert (out.std(axis=(1, 2)) <= x.astype(float).std(axis=(1, 2)) + 0.5).all()
    np.testing.assert_allclose(out.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=1.0)


def test_noise_is_zero_mean_and_keeps_flat_mid_grey_images_grey_on_average():
    x = np.full((300, 32, 32, 3), 128, np.uint8)
    out = d.add_noise(x, np.random.default_rng(0)).astype(float)
    assert abs(out.mean() - 128) < 2.0
    assert (out != 128).mean() > 0.2


def test_augmix_blends_the_original_with_its_chains():
    x = _images(200)
    out = d.augmix(x, np.random.default_rng(0))
    changed = (out != x).any(axis=(1, 2, 3))
    assert 0.9 < changed.mean() <= 1.0
    # A blend of the original and warped copies: closer to the original than noise would be.
    assert np.abs(out.astype(int) - x).mean() < np.abs(_images(200, 1).astype(int) - x).mean()


def test_distort_applies_each_share_and_nothing_at_share_zero():
    x = _images(400)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(d.distort(x, rng, {"noise": 0.0}), x)
    out = d.distort(x, rng, {"contrast": 0.5})
    changed = (out != x).any(axis=(1, 2, 3)).mean()
    assert 0.4 < changed < 0.6
    assert (d.distort(x, rng, {"noise": 1.0}) != x).any(axis=(1, 2, 3)).mean() > 0.95


@pytest.mark.parametrize("shares, message", [
    ({"fog": 0.5}, "Unknown distortion(s) fog; choose from augmix, contrast, noise"),
    ({"noise": 1.5}, "between 0 and 1. Received: {'noise': 1.5}"),
])
def test_bad_shares_are_named(shares, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("{", r"\{").replace("}", r"\}")):
        d.distort(_images(2), np.random.default_rng(0), shares)


def test_training_batches_take_the_distort_option():
    x, y = _images(40), np.arange(40) % 4
    plain = AlternatingFlipTranslate(x, y, 20, seed=1)
    noisy = make_train_dataset(x, y, 20, "alternating_flip_translate", seed=1,
                               options={"distort": {"noise": 1.0}})
    a, b = plain[0][0], noisy[0][0]
    assert a.shape == b.shape and (a != b).any(axis=(1, 2, 3)).all()
    np.testing.assert_array_equal(noisy[0][0], make_train_dataset(
        x, y, 20, "alternating_flip_translate", seed=1,
        options={"distort": {"noise": 1.0}})[0][0])
    with pytest.raises(ConfigError, match="Unknown distortion"):
        AlternatingFlipTranslate(x, y, 20, distort={"rain": 0.1})
    with pytest.raises(ConfigError, match="takes no option"):
        make_train_dataset(x, y, 20, "alternating_flip_translate", options={"one_hot": 3})


def test_distort_epochs_leaves_the_last_epochs_undistorted():
    x, y = _images(40), np.arange(40) % 4
    plain = AlternatingFlipTranslate(x, y, 20, seed=1)
    early = make_train_dataset(x, y, 20, "alternating_flip_translate", seed=1,
                               options={"distort": {"noise": 1.0}, "distort_epochs": 1})
    assert (plain[0][0] != early[0][0]).any(axis=(1, 2, 3)).all()  # distorted in epoch 0 ...
    plain.on_epoch_end()
    early.on_epoch_end()
    np.testing.assert_array_equal(plain[0][0], early[0][0])  # ... as plain from epoch 1
