"""The blur family: defocus, glass, motion and zoom blur (benchmark) and Gaussian blur
(held out), with the kernels they build."""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse

from cifar_cnn.evaluation.corruptions.numeric import (
    Images,
    _float,
    _gaussian,
    _motion_blur,
    _uint8,
    _zoom_matrix,
)
from cifar_cnn.evaluation.corruptions.parameters import PARAMS


def _gaussian_kernel_1d(size: int, sigma: float) -> np.ndarray:
    """OpenCV's ``getGaussianKernel(size, sigma)`` for sigma > 0."""
    t = np.arange(size) - (size - 1) / 2
    k = np.exp(-(t**2) / (2 * sigma * sigma))
    return k / k.sum()


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    """The script's anti-aliased disk kernel, trimmed to its non-zero support."""
    half = 8 if radius <= 8 else math.ceil(radius)
    t = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(t, t)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    g = _gaussian_kernel_1d(3 if radius <= 8 else 5, alias_blur)
    disk = ndi.correlate1d(ndi.correlate1d(disk, g, axis=0, mode="mirror"), g, axis=1,
                           mode="mirror")
    keep = np.flatnonzero(disk.any(axis=0))
    return disk[keep[0]:keep[-1] + 1, keep[0]:keep[-1] + 1]


def defocus_blur(images: Images, severity: int, rng: np.random.Generator) -> Images:
    radius, alias_blur = PARAMS["defocus_blur"][severity - 1]
    kernel = _disk(radius, alias_blur)
    return _uint8(ndi.correlate(_float(images), kernel[None, :, :, None], mode="mirror"))


def glass_blur(images: Images, severity: int, rng: np.random.Generator) -> Images:
    sigma, delta, iterations = PARAMS["glass_blur"][severity - 1]
    assert delta == 1  # the vectorised shuffle below holds for CIFAR's max_delta of 1
    x = (_gaussian(_float(images), sigma) * 255).astype(np.uint8)  # truncated, as the script
    n, h, w, _ = x.shape
    b = np.arange(n)[:, None, None]
    rows = np.arange(2, h)[None, :, None]
    cols = np.arange(2, w)[None, None, :]
    for _ in range(iterations):
        # Pixels (2..H-1, 2..W-1), visited bottom-right to top-left, each take the pixel at
        # an offset in {-1, 0}^2: one not visited yet, so all reads see this pass's input.
        d = rng.integers(-delta, delta, size=(2, n, h - 2, w - 2))  # high exclusive
        x[:, 2:, 2:] = x[b, rows + d[1], cols + d[0]]
    return _uint8(_gaussian(_float(x), sigma))


def motion_blur(images: Images, severity: int, rng: np.random.Generator) -> Images:
    radius, sigma = PARAMS["motion_blur"][severity - 1]
    angles = rng.uniform(-45, 45, size=len(images))
    return _uint8(_motion_blur(_float(images), radius, sigma, angles))


@functools.lru_cache(maxsize=8)
def _zoom_blur_matrix(h: int, severity: int) -> sparse.csr_matrix:
    """``(h*h, h*h)`` sparse matrix: the sum of ``clipped_zoom`` over the severity's zoom
    factors, acting on row-major flattened images (one product instead of up to 25)."""
    factors = PARAMS["zoom_blur"][severity - 1]
    total = sparse.csr_matrix((h * h, h * h))
    for factor in factors:
        m = sparse.csr_matrix(_zoom_matrix(h, float(factor)))
        total = total + sparse.kron(m, m, format="csr")
    return total


def zoom_blur(images: Images, severity: int, rng: np.random.Generator) -> Images:
    factors = PARAMS["zoom_blur"][severity - 1]
    x = _float(images, np.float32)
    n, h, w, c = x.shape
    flat = x.transpose(1, 2, 0, 3).reshape(h * w, n * c)
    zoomed = (_zoom_blur_matrix(h, severity) @ flat).reshape(h, w, n, c).transpose(2, 0, 1, 3)
    return _uint8((x + zoomed) / (len(factors) + 1))


def gaussian_blur(images: Images, severity: int, rng: np.random.Generator) -> Images:
    return _uint8(_gaussian(_float(images), PARAMS["gaussian_blur"][severity - 1]))
