"""Training-time distortions for robustness: AugMix-style chains, contrast loss, pixel noise.

Photos people classify are noisy, low-contrast, tilted or otherwise unlike CIFAR-10's clean
test pixels. A share of each training batch distorted at a spread of levels teaches the
network to hold up there (Hendrycks & Dietterich, ICLR 2019, for the benchmark;
Hendrycks et al., ICLR 2020, "AugMix", for the chains; Kireev et al., UAI 2022, for noise
on part of each batch). Every function takes a uint8 batch ``(N, H, W, C)`` and a
``numpy.random.Generator`` and returns a new uint8 batch of the same shape; every image
gets its own draw (operation, level, mixing weights), and the whole batch is done in
vectorised steps, one group of images per operation.

The levels are ours, chosen as a spread rather than fitted to any benchmark; the
corruption benchmark (`cifar_cnn.evaluation.corruptions`) is the exam, and its held-out
corruptions (speckle noise, Gaussian blur, spatter, saturate) plus a validation split are
where the shares are chosen (benchmarks/HISTORY.md, "Robustness").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import tensorflow as tf

from cifar_cnn.errors import ConfigError

Images = np.ndarray  # uint8 (N, H, W, C)

# Noise levels, each drawn uniformly per image: Gaussian standard deviation (of [0, 1]
# pixels), Poisson photon counts per unit of intensity (log-uniform: fewer is noisier) and
# the share of salt-and-pepper pixels.
GAUSSIAN_STD = (0.0, 0.12)
SHOT_PHOTONS = (25.0, 1000.0)
IMPULSE_AMOUNT = (0.0, 0.08)
# Contrast: pixels pulled towards each image's per-channel mean by a factor in this range.
CONTRAST_FACTOR = (0.2, 1.0)
# AugMix: `AUGMIX_WIDTH` chains of 1-3 operations each, mixed with Dirichlet(1) weights and
# blended with the original by a Beta(1, 1) factor; levels at AugMix's CIFAR severity 3 of 10
# (its "all ops" set, which leaves out the colour, contrast, brightness and sharpness
# operations that overlap the benchmark's corruptions).
AUGMIX_WIDTH = 3
AUGMIX_DEPTH = (1, 3)
AUGMIX_SEVERITY = 0.3


def _pixels(x: np.ndarray) -> Images:
    """Float pixel values (0..255) rounded and clipped to uint8."""
    return np.rint(np.clip(x, 0, 255)).astype(np.uint8)


def _level(rng: np.random.Generator, n: int) -> np.ndarray:
    """AugMix's per-image operation strength as a fraction of each operation's maximum:
    uniform in [0.01, severity]."""
    return rng.uniform(0.01, AUGMIX_SEVERITY, n)


def _affine(images: Images, matrices: np.ndarray) -> Images:
    """Each image warped by its own 2x3 matrix (output pixel -> input pixel), bilinear,
    edges repeated: one TensorFlow call for the whole group."""
    n = len(images)
    transforms = np.concatenate([matrices.reshape(n, 6), np.zeros((n, 2))], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.convert_to_tensor(images, tf.float32),
        transforms=tf.convert_to_tensor(transforms, tf.float32),
        output_shape=tf.constant(images.shape[1:3], tf.int32),
        fill_value=tf.constant(0.0), interpolation="BILINEAR", fill_mode="NEAREST")
    return np.asarray(tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8))


def _centred(images: Images, linear: np.ndarray, shift: np.ndarray) -> Images:
    """`_affine` with per-image 2x2 `linear` maps about the image centre plus `shift`."""
    h, w = images.shape[1:3]
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    offset = centre - np.einsum("nij,j->ni", linear, centre) + shift
    return _affine(images, np.concatenate([linear, offset[:, :, None]], axis=2))


def _signed(rng: np.random.Generator, values: np.ndarray) -> np.ndarray:
    return np.where(rng.random(len(values)) < 0.5, -values, values)


def _rotate(x: Images, rng: np.random.Generator) -> Images:
    a = np.deg2rad(_signed(rng, _level(rng, len(x)) * 30.0))
    cos, sin = np.cos(a), np.sin(a)
    linear = np.stack([np.stack([cos, sin], 1), np.stack([-sin, cos], 1)], 1)
    return _centred(x, linear, np.zeros((len(x), 2)))


def _shear(axis: int) -> Callable[[Images, np.random.Generator], Images]:
    def shear(x: Images, rng: np.random.Generator) -> Images:
        linear = np.tile(np.eye(2), (len(x), 1, 1))
        linear[:, axis, 1 - axis] = _signed(rng, _level(rng, len(x)) * 0.3)
        return _centred(x, linear, np.zeros((len(x), 2)))
    return shear


def _translate(axis: int) -> Callable[[Images, np.random.Generator], Images]:
    def translate(x: Images, rng: np.random.Generator) -> Images:
        shift = np.zeros((len(x), 2))
        shift[:, axis] = _signed(rng, _level(rng, len(x)) * x.shape[2 - axis] / 3.0)
        return _centred(x, np.tile(np.eye(2), (len(x), 1, 1)), shift)
    return translate


def _autocontrast(x: Images, rng: np.random.Generator) -> Images:
    lo = x.min(axis=(1, 2), keepdims=True).astype(np.float32)
    hi = x.max(axis=(1, 2), keepdims=True).astype(np.float32)
    scale = np.where(hi > lo, 255.0 / np.maximum(hi - lo, 1.0), 1.0)
    shift = np.where(hi > lo, lo, 0.0)
    return _pixels((x - shift) * scale)


def _equalize(x: Images, rng: np.random.Generator) -> Images:
    """Pillow's ``ImageOps.equalize`` of every channel of every image, in one pass."""
    n, h, w, c = x.shape
    planes = x.transpose(0, 3, 1, 2).reshape(n * c, h * w)
    offsets = np.arange(n * c)[:, None] * 256
    hist = np.bincount((planes + offsets).ravel(), minlength=n * c * 256).reshape(n * c, 256)
    # Pillow's step: the pixels outside the last occupied level, over 255.
    last = 255 - np.argmax(hist[:, ::-1] > 0, axis=1)
    step = (h * w - hist[np.arange(n * c), last]) // 255
    before = np.cumsum(hist, axis=1) - hist  # pixels below each level
    lut = np.minimum((step[:, None] // 2 + before) // np.maximum(step, 1)[:, None], 255)
    lut = np.where(step[:, None] > 0, lut, np.arange(256))  # one level or a tiny step: as is
    out = np.take_along_axis(lut, planes.astype(np.intp), axis=1).astype(np.uint8)
    return out.reshape(n, c, h, w).transpose(0, 2, 3, 1)


def _posterize(x: Images, rng: np.random.Generator) -> Images:
    bits = 4 - (_level(rng, len(x)) * 4).astype(np.uint8)  # 4 or 3 bits kept
    mask = (0xFF << (8 - bits)).astype(np.uint8)
    return x & mask[:, None, None, None]


def _solarize(x: Images, rng: np.random.Generator) -> Images:
    threshold = (256 - _level(rng, len(x)) * 256)[:, None, None, None]
    return np.where(x >= threshold, 255 - x, x).astype(np.uint8)


AUGMIX_OPS: dict[str, Callable[[Images, np.random.Generator], Images]] = {
    "autocontrast": _autocontrast, "equalize": _equalize, "posterize": _posterize,
    "solarize": _solarize, "rotate": _rotate, "shear_x": _shear(0), "shear_y": _shear(1),
    "translate_x": _translate(0), "translate_y": _translate(1),
}


def augmix(images: Images, rng: np.random.Generator) -> Images:
    """AugMix without its consistency loss: each image becomes a blend of itself and a
    Dirichlet-weighted mix of `AUGMIX_WIDTH` chains of 1-3 random operations."""
    n = len(images)
    ops = list(AUGMIX_OPS.values())
    weights = rng.dirichlet(np.ones(AUGMIX_WIDTH), n).astype(np.float32)
    mixed = np.zeros(images.shape, np.float32)
    for k in range(AUGMIX_WIDTH):
        chain = images.copy()
        depth = rng.integers(AUGMIX_DEPTH[0], AUGMIX_DEPTH[1] + 1, n)
        for step in range(AUGMIX_DEPTH[1]):
            choice = np.where(depth > step, rng.integers(0, len(ops), n), -1)
            for i, op in enumerate(ops):
                sel = np.flatnonzero(choice == i)
                if len(sel):
                    chain[sel] = op(chain[sel], rng)
        mixed += weights[:, k, None, None, None] * chain
    m = rng.beta(1.0, 1.0, n).astype(np.float32)[:, None, None, None]
    return _pixels((1 - m) * images + m * mixed)


def lower_contrast(images: Images, rng: np.random.Generator) -> Images:
    """Each image pulled towards its per-channel mean by a factor in `CONTRAST_FACTOR`."""
    x = images.astype(np.float32)
    means = x.mean(axis=(1, 2), keepdims=True)
    c = rng.uniform(*CONTRAST_FACTOR, len(x)).astype(np.float32)[:, None, None, None]
    return _pixels((x - means) * c + means)


def add_noise(images: Images, rng: np.random.Generator) -> Images:
    """Gaussian, shot (Poisson) or salt-and-pepper noise, a kind and a level per image."""
    x = images.astype(np.float32) / 255.0
    n = len(x)
    kind = rng.integers(0, 3, n)
    out = np.empty_like(x)
    g = kind == 0
    std = rng.uniform(*GAUSSIAN_STD, g.sum()).astype(np.float32)[:, None, None, None]
    out[g] = x[g] + rng.standard_normal(x[g].shape, np.float32) * std
    s = kind == 1
    photons = np.exp(rng.uniform(*np.log(SHOT_PHOTONS), s.sum()))[:, None, None, None]
    out[s] = rng.poisson(x[s] * photons) / photons
    i = kind == 2
    amount = rng.uniform(*IMPULSE_AMOUNT, i.sum())[:, None, None, None]
    u = rng.random(x[i].shape)
    out[i] = np.where(u < amount / 2, 0.0, np.where(u > 1 - amount / 2, 1.0, x[i]))
    return _pixels(out * 255.0)


# name -> function, in the order `distort` applies them: geometry and colour first, then
# contrast, then noise (which a real camera adds last; JPEG, if any, comes after).
DISTORTIONS: dict[str, Callable[[Images, np.random.Generator], Images]] = {
    "augmix": augmix, "contrast": lower_contrast, "noise": add_noise,
}


def check_shares(shares: Mapping[str, float]) -> None:
    """Raise `ConfigError` unless every key names a distortion and every share is in [0, 1]."""
    unknown = sorted(set(shares) - set(DISTORTIONS))
    if unknown:
        raise ConfigError(f"Unknown distortion(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(DISTORTIONS)}. Received: {dict(shares)}")
    bad = {k: v for k, v in shares.items() if not 0.0 <= float(v) <= 1.0}
    if bad:
        raise ConfigError(f"Distortion shares are fractions of a batch, between 0 and 1. "
                          f"Received: {bad}")


def distort(images: Images, rng: np.random.Generator, shares: Mapping[str, float]) -> Images:
    """The batch with each distortion applied to its share of the images.

    Each image takes each distortion independently with probability ``shares[name]``, so
    some get several (an AugMix chain, then lower contrast, then noise) and most of the
    batch, at moderate shares, stays as it was.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
        >>> distort(x, rng, {"noise": 0.5, "augmix": 0.5}).shape
        (8, 32, 32, 3)
    """
    check_shares(shares)
    out = images.copy()
    for name, fn in DISTORTIONS.items():
        share = float(shares.get(name, 0.0))
        if not share:
            continue
        sel = np.flatnonzero(rng.random(len(out)) < share)
        if len(sel):
            out[sel] = fn(out[sel], rng)
    return out
