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
