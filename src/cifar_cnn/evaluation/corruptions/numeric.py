"""Numeric helpers shared by the corruption families: pixel conversions, Gaussian
filtering, border reflection and bilinear sampling, the script's ``clipped_zoom``,
ImageMagick's motion blur, the plasma fractal and the HSV value and chroma.

All work on whole batches with numpy and scipy; none knows about the registry.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage as ndi

Images = np.ndarray  # uint8 (N, 32, 32, 3)


def _float(images: Images, dtype: Any = np.float64) -> np.ndarray:
    return images.astype(dtype) / 255.0


def _uint8(x: np.ndarray) -> Images:
    """Values in [0, 1] (clipped) as uint8 pixels, rounded to nearest."""
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _gaussian(x: np.ndarray, sigma: float, *, mode: str = "nearest",
              truncate: float = 4.0) -> np.ndarray:
    """scikit-image's ``filters.gaussian`` over the two image axes of ``(N, H, W[, C])``."""
    sigmas = (0, sigma, sigma) + (0,) * (x.ndim - 3)
    return ndi.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def _reflect_index(i: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Integer indices folded into ``[0, n)``: "mirror" is reflect-101 (OpenCV's default
    border, ``dcb|abcd|cba``), "reflect" the half-sample reflection (``cba|abcd|dcb``)."""
    if n == 1:
        return np.zeros_like(i)
    if mode == "mirror":
        period = 2 * n - 2
        i = np.mod(i, period)
        return np.where(i >= n, period - i, i)
    period = 2 * n
    i = np.mod(i, period)
    return np.where(i >= n, period - 1 - i, i)


def _bilinear(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str) -> np.ndarray:
    """``x`` ``(N, H, W, C)`` sampled bilinearly at ``(rows, cols)`` ``(N, H, W)``."""
    n, h, w, _ = x.shape
    r0 = np.floor(rows)
    c0 = np.floor(cols)
    fr = (rows - r0)[..., None]
    fc = (cols - c0)[..., None]
    r0 = r0.astype(np.int64)
    c0 = c0.astype(np.int64)
    ra, rb = _reflect_index(r0, h, mode), _reflect_index(r0 + 1, h, mode)
    ca, cb = _reflect_index(c0, w, mode), _reflect_index(c0 + 1, w, mode)
    b = np.arange(n)[:, None, None]
    top = x[b, ra, ca] * (1 - fc) + x[b, ra, cb] * fc
    bottom = x[b, rb, ca] * (1 - fc) + x[b, rb, cb] * fc
    return top * (1 - fr) + bottom * fr


def _zoom_matrix(h: int, factor: float) -> np.ndarray:
    """``(h, h)`` matrix of the script's ``clipped_zoom`` along one axis: crop the centre
    ``ceil(h / factor)`` pixels, zoom them like ``scipy.ndimage.zoom(order=1)`` (linear, the
    end pixels kept on the ends), trim the centre ``h``."""
    ch = math.ceil(h / factor)
    top = (h - ch) // 2
    out = round(ch * factor)
    where = np.arange(out) * ((ch - 1) / (out - 1) if out > 1 else 0.0)
    lo = np.minimum(np.floor(where).astype(np.int64), ch - 1)
    hi = np.minimum(lo + 1, ch - 1)
    frac = where - lo
    zoom = np.zeros((out, ch))
    np.add.at(zoom, (np.arange(out), lo), 1 - frac)
    np.add.at(zoom, (np.arange(out), hi), frac)
    trim = (out - h) // 2
    matrix = np.zeros((h, h))
    matrix[:, top:top + ch] = zoom[trim:trim + h]
    return matrix


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """The centre ``1/factor`` of ``(N, H, H, C)`` images zoomed back to ``H`` (bilinear)."""
    m = _zoom_matrix(x.shape[1], factor).astype(x.dtype)
    rows = np.tensordot(x, m, axes=([1], [1]))  # (N, W, C, H): BLAS, unlike einsum here
    return np.tensordot(rows, m, axes=([1], [1])).transpose(0, 2, 3, 1)


def _motion_blur(x: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """ImageMagick's ``MotionBlurImage`` of ``(N, H, W, C)`` float images, one angle (degrees)
    per image: a one-sided Gaussian kernel along the angle, edge pixels beyond the border."""
    n, h, w, _ = x.shape
    width = int(2 * math.ceil(radius) + 1)
    taps = np.arange(width)
    kernel = np.exp(-(taps**2) / (2.0 * sigma * sigma))
    kernel /= kernel.sum()
    a = np.deg2rad(angles)
    dx = np.ceil(taps[:, None] * np.cos(a)[None, :] - 0.5).astype(np.int64)  # (width, N)
    dy = np.ceil(taps[:, None] * np.sin(a)[None, :] - 0.5).astype(np.int64)
    base = (np.arange(n) * h * w)[:, None, None]
    pixels = x.reshape(n * h * w, -1)
    out = np.zeros_like(x)
    for k, ox, oy in zip(kernel, dx, dy, strict=True):
        rows = np.clip(np.arange(h)[None, :, None] + oy[:, None, None], 0, h - 1)
        cols = np.clip(np.arange(w)[None, None, :] + ox[:, None, None], 0, w - 1)
        out += k * np.take(pixels, base + rows * w + cols, axis=0)
    return out


def _plasma_fractal(n: int, mapsize: int, wibbledecay: float,
                    rng: np.random.Generator) -> np.ndarray:
    """``n`` diamond-square height maps ``(n, mapsize, mapsize)`` in [0, 1] (the script's
    ``plasma_fractal``, batched)."""
    maps = np.zeros((n, mapsize, mapsize))
    stepsize = mapsize
    wibble = 100.0

    def wibbled_mean(array: np.ndarray) -> np.ndarray:
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while stepsize >= 2:
        half = stepsize // 2
        corners = maps[:, 0:mapsize:stepsize, 0:mapsize:stepsize]
        squares = corners + np.roll(corners, -1, axis=1)
        squares += np.roll(squares, -1, axis=2)
        maps[:, half:mapsize:stepsize, half:mapsize:stepsize] = wibbled_mean(squares)
        centres = maps[:, half:mapsize:stepsize, half:mapsize:stepsize]
        corners = maps[:, 0:mapsize:stepsize, 0:mapsize:stepsize]
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        maps[:, 0:mapsize:stepsize, half:mapsize:stepsize] = wibbled_mean(left)
        top = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        maps[:, half:mapsize:stepsize, 0:mapsize:stepsize] = wibbled_mean(top)
        stepsize //= 2
        wibble /= wibbledecay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return maps / maps.max(axis=(1, 2), keepdims=True)


def _hsv_value_and_chroma(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = x.max(axis=-1, keepdims=True)
    return v, v - x.min(axis=-1, keepdims=True)
