"""The digital family: contrast, elastic transform, pixelate and JPEG compression
(benchmark) and saturate (held out), with `jpeg_roundtrip`, which the scoring uses too."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from cifar_cnn.evaluation.corruptions.numeric import (
    Images,
    _bilinear,
    _float,
    _gaussian,
    _hsv_value_and_chroma,
    _uint8,
)
from cifar_cnn.evaluation.corruptions.parameters import PARAMS


def saturate(images: Images, severity: int, rng: np.random.Generator) -> Images:
    factor, offset = PARAMS["saturate"][severity - 1]
    x = _float(images)
    v, chroma = _hsv_value_and_chroma(x)
    s = np.divide(chroma, v, out=np.zeros_like(v), where=chroma > 0)
    s_new = np.clip(s * factor + offset, 0, 1)
    # Each channel is V * (1 - S * g) with g fixed by the hue; grey pixels have hue 0 (red).
    grey_g = np.array([0.0, 1.0, 1.0])
    g = np.where(chroma > 0, (v - x) / np.where(chroma > 0, chroma, 1.0), grey_g)
    return _uint8(v * (1 - s_new * g))


def contrast(images: Images, severity: int, rng: np.random.Generator) -> Images:
    c = PARAMS["contrast"][severity - 1]
    x = _float(images)
    means = x.mean(axis=(1, 2), keepdims=True)
    return _uint8((x - means) * c + means)


def elastic_transform(images: Images, severity: int, rng: np.random.Generator) -> Images:
    alpha, sigma, affine = PARAMS["elastic_transform"][severity - 1]
    x = _float(images, np.float32)
    n, h, w, _ = x.shape
    # A random affine map moving three points (x, y) by up to `affine` pixels...
    centre, square = float(min(h, w) // 2), min(h, w) // 3
    src = np.array([[centre + square, centre + square], [centre + square, centre - square],
                    [centre - square, centre - square]])
    dst = src.astype(np.float32) + rng.uniform(-affine, affine, size=(n, 3, 2)).astype(np.float32)
    # ...sampled like cv2.warpAffine: output pixel (x, y) reads the input at M^-1 (x, y),
    # in OpenCV's fixed point (1/1024 pixel per term, then 1/32 pixel), bilinearly.
    homogeneous = np.concatenate([dst, np.ones((n, 3, 1), np.float32)], axis=2).astype(float)
    inverse = np.linalg.solve(homogeneous, np.broadcast_to(src, (n, 3, 2)))  # [x y 1] @ inv

    def fixed(k: int) -> np.ndarray:  # source coordinate k (0: x, 1: y), (n, h, w)
        along_x = np.rint(inverse[:, 0, k, None] * np.arange(w) * 1024)
        along_y = np.rint((inverse[:, 1, k, None] * np.arange(h) + inverse[:, 2, k, None]) * 1024)
        return np.floor((along_y[:, :, None] + along_x[:, None, :] + 16) / 32) / 32

    x = _bilinear(x, fixed(1), fixed(0), "mirror")
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    # ...then a smooth random displacement field.
    dx = _gaussian(rng.uniform(-1, 1, size=(n, h, w)), sigma, mode="reflect", truncate=3) * alpha
    dy = _gaussian(rng.uniform(-1, 1, size=(n, h, w)), sigma, mode="reflect", truncate=3) * alpha
    return _uint8(_bilinear(x, yy + dy, xx + dx, "reflect"))


def pixelate(images: Images, severity: int, rng: np.random.Generator) -> Images:
    c = PARAMS["pixelate"][severity - 1]
    out = np.empty_like(images)
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        small = Image.fromarray(img).resize((int(w * c), int(h * c)), Image.Resampling.BOX)
        out[i] = np.asarray(small.resize((w, h), Image.Resampling.BOX))
    return out


def jpeg_roundtrip(images: Images, quality: int, *, subsampling: str = "4:2:0") -> Images:
    """Each image saved as its own JPEG file (Pillow, in memory) and read back."""
    out = np.empty_like(images)
    for i, img in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=quality, subsampling=subsampling)
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("RGB"))
    return out


def jpeg_compression(images: Images, severity: int, rng: np.random.Generator) -> Images:
    return jpeg_roundtrip(images, PARAMS["jpeg_compression"][severity - 1])
