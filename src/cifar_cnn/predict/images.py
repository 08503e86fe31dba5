"""Turning any image file into the model's input: RGB uint8 at the training resolution."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cifar_cnn.errors import ImageError

# Shown to users in docs and --help: the one way new images are prepared.
RESIZE_METHOD = (
    "EXIF orientation applied; converted to RGB (alpha composited over white, 16-bit and "
    "grayscale scaled to 8-bit RGB, first frame of animations); centre-cropped to a square; "
    "resized with Pillow's antialiased bicubic filter"
)


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB view of any Pillow mode, scaling high-bit-depth images to 8 bits."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        scale = 255.0 if a.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(a * scale, 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def prepare_image(im: Image.Image, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """An RGB uint8 array of shape ``(height, width, 3)`` ready for the model.

    See `RESIZE_METHOD` for the steps.
    """
    im = ImageOps.exif_transpose(im)
    rgb = _to_rgb(im)
    side = min(rgb.size)
    if rgb.size != (side, side):
        left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
        rgb = rgb.crop((left, top, left + side, top + side))
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8)


def load_image(path: str | os.PathLike[str], size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """Read an image file (PNG, JPEG, BMP, GIF, WebP, TIFF, ...) into the model's input.

    Raises:
        ImageError: naming the file, if it is missing or not a readable image.
    """
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{p}: no such file.")
    try:
        with Image.open(p) as im:
            im.seek(0)
            return prepare_image(im, size)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{p}: not a readable image ({type(e).__name__}: {e}).") from e
