"""The weather family: snow, frost, fog and brightness (benchmark) and spatter (held out),
with the procedural frost texture and the OpenCV operations spatter needs (Canny edges,
box blur, chamfer distance transform, histogram equalisation) re-implemented in numpy."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from cifar_cnn.evaluation.corruptions.numeric import (
    Images,
    _clipped_zoom,
    _float,
    _gaussian,
    _hsv_value_and_chroma,
    _motion_blur,
    _plasma_fractal,
    _uint8,
)
from cifar_cnn.evaluation.corruptions.parameters import PARAMS, SIZE


def snow(images: Images, severity: int, rng: np.random.Generator) -> Images:
    loc, scale, zoom, threshold, radius, sigma, blend = PARAMS["snow"][severity - 1]
    x = _float(images, np.float32)
    n = len(x)
    layer = rng.normal(loc=loc, scale=scale, size=(n, SIZE, SIZE, 1))
    layer = _clipped_zoom(layer, zoom)
    layer[layer < threshold] = 0
    layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8).astype(np.float64)  # as its PNG
    angles = rng.uniform(-135, -45, size=n)
    layer = np.rint(np.clip(_motion_blur(layer, radius, sigma, angles), 0, 255)) / 255.0
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = blend * x + (1 - blend) * np.maximum(x, grey[..., None] * 1.5 + 0.5)
    return _uint8(x + layer + np.rot90(layer, k=2, axes=(1, 2)))


# Procedural stand-ins for the five frost photographs make_cifar_c.py draws from (frost1.png,
# frost2.png, frost3.png (frost2 again), frost4.jpg, frost5.jpg, at the 0.2 scale it uses):
# mean RGB; colour matrix (columns: principal colour axes times their standard deviation);
# the main axis' variance shares for white noise, Gaussian-smoothed fields of sigma
# `_FROST_SIGMAS`, and one offset per 32x32 crop, fitted to its autocorrelation at lags 1..16.
_FROST_SIGMAS = (1.0, 2.5, 6.0)
_FROST_TEXTURES = (
    ((77.5, 149.0, 165.7), ((25.7, -7.5, 0.2), (15.6, 5.1, -0.8), (11.9, 9.6, 0.6)),
     (0.30, 0.06, 0.05, 0.28, 0.31)),
    ((200.8, 205.4, 214.5), ((21.3, 1.5, 0.6), (22.1, 0.2, -1.0), (22.5, -1.6, 0.4)),
     (0.38, 0.14, 0.01, 0.16, 0.31)),
    ((200.8, 205.4, 214.5), ((21.3, 1.5, 0.6), (22.1, 0.2, -1.0), (22.5, -1.6, 0.4)),
     (0.38, 0.14, 0.01, 0.16, 0.31)),
    ((138.0, 153.2, 165.6), ((28.9, 1.5, -0.9), (28.9, 1.0, 1.0), (30.1, -2.3, -0.1)),
     (0.50, 0.09, 0.00, 0.16, 0.25)),
    ((112.3, 123.3, 134.7), ((44.3, -1.4, 0.3), (43.2, -0.1, -0.5), (41.5, 1.5, 0.2)),
     (0.38, 0.21, 0.03, 0.12, 0.26)),
)


def _smoothed_noise(n: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian-smoothed white noise ``(n, 32, 32)`` (periodic)."""
    field = _gaussian(rng.standard_normal((n, SIZE, SIZE)), sigma, mode="wrap")
    impulse = np.zeros((1, SIZE, SIZE))
    impulse[0, 0, 0] = 1.0
    return field / np.sqrt(np.sum(_gaussian(impulse, sigma, mode="wrap") ** 2))


def frost_texture(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` procedural frost crops ``(n, 32, 32, 3)``, float RGB in [0, 255]."""
    which = rng.integers(len(_FROST_TEXTURES), size=n)
    mean = np.array([t[0] for t in _FROST_TEXTURES])[which]  # (n, 3)
    colour = np.array([t[1] for t in _FROST_TEXTURES])[which]  # (n, 3, 3)
    shares = np.sqrt(np.array([t[2] for t in _FROST_TEXTURES])[which])  # (n, 5)
    main = shares[:, 0, None, None] * rng.standard_normal((n, SIZE, SIZE))
    for i, sigma in enumerate(_FROST_SIGMAS, 1):
        main += shares[:, i, None, None] * _smoothed_noise(n, sigma, rng)
    main += shares[:, -1, None, None] * rng.standard_normal((n, 1, 1))
    scores = np.concatenate([main[..., None], rng.standard_normal((n, SIZE, SIZE, 2))], -1)
    texture = mean[:, None, None, :] + np.einsum("nck,nhwk->nhwc", colour, scores)
    return np.clip(texture, 0, 255)


def frost(images: Images, severity: int, rng: np.random.Generator) -> Images:
    a, b = PARAMS["frost"][severity - 1]
    return _uint8((a * images + b * frost_texture(len(images), rng)) / 255.0)


def fog(images: Images, severity: int, rng: np.random.Generator) -> Images:
    strength, decay = PARAMS["fog"][severity - 1]
    x = _float(images)
    max_val = x.max(axis=(1, 2, 3), keepdims=True)
    x = x + strength * _plasma_fractal(len(x), SIZE, decay, rng)[..., None]
    return _uint8(x * max_val / (max_val + strength))


def _canny(image: np.ndarray, low: int, high: int) -> np.ndarray:
    """OpenCV's ``Canny(image, low, high)`` (3x3 Sobel, L1 gradient) of uint8 ``(N, H, W)``."""
    p = np.pad(image.astype(np.int64), ((0, 0), (1, 1), (1, 1)), mode="edge")
    gx = (p[:, :-2, 2:] + 2 * p[:, 1:-1, 2:] + p[:, 2:, 2:]
          - p[:, :-2, :-2] - 2 * p[:, 1:-1, :-2] - p[:, 2:, :-2])
    gy = (p[:, 2:, :-2] + 2 * p[:, 2:, 1:-1] + p[:, 2:, 2:]
          - p[:, :-2, :-2] - 2 * p[:, :-2, 1:-1] - p[:, :-2, 2:])
    mag = np.abs(gx) + np.abs(gy)
    m = np.pad(mag, ((0, 0), (1, 1), (1, 1)))  # zero beyond the border
    ax, ay = np.abs(gx), np.abs(gy) << 15
    tg22x = ax * int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)
    tg67x = tg22x + (ax << 16)
    same_sign = (gx ^ gy) >= 0
    horizontal = (mag > m[:, 1:-1, :-2]) & (mag >= m[:, 1:-1, 2:])
    vertical = (mag > m[:, :-2, 1:-1]) & (mag >= m[:, 2:, 1:-1])
    diagonal = np.where(same_sign, (mag > m[:, :-2, :-2]) & (mag > m[:, 2:, 2:]),
                        (mag > m[:, :-2, 2:]) & (mag > m[:, 2:, :-2]))
    peak = np.where(ay < tg22x, horizontal, np.where(ay > tg67x, vertical, diagonal))
    candidate = (mag > low) & peak
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True  # 8-connected within each image
    labels, _ = ndi.label(candidate, structure)
    strong = np.unique(labels[candidate & (mag > high)])
    return np.isin(labels, strong[strong > 0])


def _box3(x: np.ndarray) -> np.ndarray:
    """OpenCV's ``blur(x, (3, 3))`` (reflect-101 border) of ``(N, H, W)``, in float32 as
    OpenCV sums it (rows, then columns, times 1/9): the script truncates the result, so
    float64's last bits would move pixels across integers."""
    p = np.pad(x.astype(np.float32), ((0, 0), (1, 1), (1, 1)), mode="reflect")
    rows = p[:, :, :-2] + p[:, :, 1:-1] + p[:, :, 2:]
    return (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) * np.float32(1 / 9)


# OpenCV's 5x5 chamfer mask for DIST_L2: (row, column) offsets and float32 weights.
_CHAMFER = tuple(sorted({(dy * sy, dx * sx, w) for dy, dx, w in (
    (0, 1, 1.0), (1, 0, 1.0), (1, 1, 1.4), (1, 2, 2.1969), (2, 1, 2.1969))
    for sy in (1, -1) for sx in (1, -1)}))


def _distance_to_edges(edges: np.ndarray, cap: float) -> np.ndarray:
    """OpenCV's ``distanceTransform(255 - edges, DIST_L2, 5)`` capped at ``cap``: the 5x5
    chamfer distance (float32, as the pip builds' IPP path sums it) of each pixel of
    ``(N, H, W)`` to the nearest edge pixel (``cap`` in an image without edges), found by
    relaxing the mask to its fixed point."""
    _, h, w = edges.shape
    limit = np.float32(cap + 3)  # larger distances are all `cap`
    d = np.where(edges, np.float32(0), limit)
    while True:
        p = np.pad(d, ((0, 0), (2, 2), (2, 2)), constant_values=limit)
        new = d.copy()
        for dy, dx, weight in _CHAMFER:
            np.minimum(new, p[:, 2 + dy:2 + dy + h, 2 + dx:2 + dx + w] + np.float32(weight),
                       out=new)
        if np.array_equal(new, d):
            return np.minimum(d, np.float32(cap))
        d = new


def _equalize_hist(x: np.ndarray) -> np.ndarray:
    """OpenCV's ``equalizeHist`` of each uint8 image of ``(N, H, W)``."""
    n = len(x)
    total = x[0].size
    hist = np.bincount((x.reshape(n, -1).astype(np.int64) + 256 * np.arange(n)[:, None]).ravel(),
                       minlength=256 * n).reshape(n, 256)
    first = np.argmax(hist > 0, axis=1)
    first_count = hist[np.arange(n), first]
    scale = np.float32(255.0) / np.maximum(total - first_count, 1).astype(np.float32)
    lut = np.rint((np.cumsum(hist, axis=1) - first_count[:, None]) * scale[:, None])
    lut = np.clip(lut, 0, 255)
    flat = first_count == total
    lut[flat] = first[flat, None]
    return np.take_along_axis(lut, x.reshape(n, -1).astype(np.int64), axis=1).reshape(x.shape)


def spatter(images: Images, severity: int, rng: np.random.Generator) -> Images:
    loc, scale, sigma, threshold, intensity, mud = PARAMS["spatter"][severity - 1]
    x = _float(images, np.float32)
    n = len(x)
    liquid = _gaussian(rng.normal(loc=loc, scale=scale, size=(n, SIZE, SIZE)), sigma)
    liquid[liquid < threshold] = 0
    if mud:
        m = _gaussian((liquid > threshold).astype(np.float32), intensity)
        m[m < 0.8] = 0
        brown = np.array([63, 42, 20], np.float32) / 255
        return _uint8(x * (1 - m[..., None]) + brown * m[..., None])
    # The script's uint8 cast of liquid above 1 wraps around (as numpy does on x86, where
    # CIFAR-10-C was made): kept, explicitly.
    layer = ((liquid * 255).astype(np.int64) % 256).astype(np.uint8)
    edges = _canny(layer, 50, 150)
    dist = _equalize_hist(_box3(_distance_to_edges(edges, 20)).astype(np.uint8))
    emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.float64)
    dist = np.clip(np.rint(ndi.correlate(dist, emboss[None], mode="mirror")), 0, 255)
    dist = np.rint(_box3(dist))
    m = layer * dist
    peak = m.max(axis=(1, 2), keepdims=True)
    m = np.divide(m, peak, out=np.zeros_like(m), where=peak > 0) * intensity
    turquoise = np.array([175, 238, 238], np.float32) / 255
    return _uint8(x + m[..., None] * turquoise)


def brightness(images: Images, severity: int, rng: np.random.Generator) -> Images:
    c = PARAMS["brightness"][severity - 1]
    x = _float(images)
    v, _ = _hsv_value_and_chroma(x)
    v_new = np.minimum(v + c, 1.0)
    return _uint8(np.where(v > 0, x * v_new / np.where(v > 0, v, 1.0), v_new))
