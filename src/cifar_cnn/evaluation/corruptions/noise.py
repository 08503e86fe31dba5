"""The noise family: Gaussian, shot and impulse noise (benchmark) and speckle noise
(held out)."""

from __future__ import annotations

import numpy as np

from cifar_cnn.evaluation.corruptions.numeric import Images, _float, _uint8
from cifar_cnn.evaluation.corruptions.parameters import PARAMS


def gaussian_noise(images: Images, severity: int, rng: np.random.Generator) -> Images:
    c = PARAMS["gaussian_noise"][severity - 1]
    x = _float(images)
    return _uint8(x + rng.normal(scale=c, size=x.shape))


def shot_noise(images: Images, severity: int, rng: np.random.Generator) -> Images:
    c = PARAMS["shot_noise"][severity - 1]
    return _uint8(rng.poisson(_float(images) * c) / c)


def impulse_noise(images: Images, severity: int, rng: np.random.Generator) -> Images:
    c = PARAMS["impulse_noise"][severity - 1]
    x = _float(images)
    flipped = rng.random(x.shape) < c
    salted = rng.random(x.shape) < 0.5
    return _uint8(np.where(flipped, salted.astype(x.dtype), x))


def speckle_noise(images: Images, severity: int, rng: np.random.Generator) -> Images:
    c = PARAMS["speckle_noise"][severity - 1]
    x = _float(images)
    return _uint8(x + x * rng.normal(scale=c, size=x.shape))
