"""PatchWhitening: data-derived filters that whiten patches, and their sign pairs."""

from __future__ import annotations

import numpy as np


def test_patch_whitening_whitens_patches() -> None:
    from cifar_cnn.layers import PatchWhitening

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


def test_the_airbench_networks_whitening_eps_caps_the_gain_on_faint_directions() -> None:
    import keras

    from cifar_cnn.models import create_model

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, 32)
    slopes = rng.uniform(-100, 100, (32, 1, 1, 3, 2))
    smooth = 128 + slopes[..., 0] * ramp[:, None, None] + slopes[..., 1] * ramp[:, None]
    images = (smooth + rng.normal(0, 0.5, smooth.shape)).astype("float32")  # faint detail
    gains = {}
    for eps in (5e-4, 5e-2):
        model = create_model("airbench", widths=(8, 8, 8), whitening_eps=eps)
        layer = model.get_layer("whiten")
        assert layer.eps == eps
        layer.adapt(np.asarray(model.get_layer("normalize")(images)))
        kernel = np.asarray(layer.kernel).reshape(-1, layer.filters)
        gains[eps] = np.linalg.norm(kernel, axis=0).max()  # the largest filter's gain
        again = keras.models.clone_model(model).get_layer("whiten")
        assert again.get_config()["eps"] == eps
    assert gains[5e-2] < gains[5e-4] / 4
    assert gains[5e-2] <= 1 / np.sqrt(5e-2) + 1e-4
