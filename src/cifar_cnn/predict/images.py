"""Turning any image file into the model's input: RGB uint8 at the training resolution."""

from __future__ import annotations

import glob
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cifar_cnn.errors import ImageError, ImageTooLargeError

# Shown to users in docs and --help: the one way new images are prepared.
RESIZE_METHOD = (
    "EXIF orientation applied; converted to RGB (alpha composited over white, 16-bit and "
    "grayscale scaled to 8-bit RGB, first frame of animations); centre-cropped to the "
    "model's aspect ratio and resized with Pillow's antialiased bicubic filter "
    "(ImageOps.fit; large JPEGs are first decoded at 1/2, 1/4 or 1/8 scale by libjpeg, "
    "never below 4x the model's input size)"
)

# Images with more pixels than this are refused before decoding: a small file can declare a
# huge image (a 2.6 MB PNG of 30,000 x 30,000 pixels decodes to 2.7 GB). 80 megapixels is
# above any camera photo (a 64 MP phone photo is 9,248 x 6,936) and below Pillow's own
# warning threshold (89 MP).
MAX_PIXELS = 80_000_000

# File name endings taken from directories (a file named explicitly is always tried).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".gif",
                            ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".tga",
                            ".ico"})


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
    if rgb.size != size:
        rgb = ImageOps.fit(rgb, size, Image.Resampling.BICUBIC)  # centre crop, then resize
    return np.asarray(rgb, dtype=np.uint8)


def load_image(path: str | os.PathLike[str], size: tuple[int, int] = (32, 32), *,
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file (PNG, JPEG, BMP, GIF, WebP, TIFF, ...) into the model's input.

    Args:
        path: the file.
        size: ``(width, height)`` of the model's input.
        max_pixels: refuse images with more pixels than this, before decoding them.

    Raises:
        ImageError: naming the file and saying what is wrong: missing, a directory, not a
            readable image, or over the pixel limit (`ImageTooLargeError`).
    """
    p = Path(path)
    if p.is_dir():
        raise ImageError(f"{p}: is a directory; give image files, or the directory itself "
                         "to `cifar-cnn predict`, which reads it recursively.")
    if not p.is_file():
        raise ImageError(f"{p}: no such file.")
    return _decode(p, str(p), size, max_pixels)


def decode_image(data: bytes, name: str, size: tuple[int, int] = (32, 32), *,
                 max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """`load_image` for the bytes of an image file (an upload, a request body).

    Args:
        data: the whole file, e.g. the bytes of a PNG or JPEG.
        name: what error messages call it (the uploaded file's name).
        size: ``(width, height)`` of the model's input.
        max_pixels: refuse images with more pixels than this, before decoding them.

    Raises:
        ImageError: naming `name` and saying what is wrong: empty, not a readable image,
            truncated, or over the pixel limit (`ImageTooLargeError`).

    Example:
        >>> decode_image(Path("cat.png").read_bytes(), "cat.png").shape  # doctest: +SKIP
        (32, 32, 3)
    """
    if not data:
        raise ImageError(f"{name}: is empty (0 bytes); send the bytes of an image file.")
    return _decode(io.BytesIO(data), name, size, max_pixels)


def _decode(source: Path | BinaryIO, name: str, size: tuple[int, int],
            max_pixels: int) -> np.ndarray:
    """The one decoder behind `load_image` and `decode_image`."""
    limit = f"over the limit of {max_pixels:,} pixels"
    advice = ("It may be a decompression bomb, or a very large image: shrink it first, or "
              "raise --max-pixels.")
    try:
        with Image.open(source) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageTooLargeError(f"{name}: {w} x {h} pixels is {limit}. {advice}")
            im.seek(0)
            side = min(w, h)
            if side > 4 * max(size):  # JPEG only: libjpeg decodes at 1/2, 1/4 or 1/8 scale
                scale = 4 * max(size) / side
                im.draft(None, (int(w * scale) + 1, int(h * scale) + 1))
            return prepare_image(im, size)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:  # Pillow refuses even to open it
        raise ImageTooLargeError(f"{name}: the image is {limit} (Pillow: {e}) {advice}") from e
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a readable image (not in a format Pillow reads: PNG, "
                         "JPEG, BMP, GIF, WebP, TIFF...).") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{name}: not a readable image ({type(e).__name__}: {e}).") from e
    except Exception as e:  # a decoder's own error
        raise ImageError(f"{name}: could not be decoded ({type(e).__name__}: {e}).") from e


def expand_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[tuple[str, str | None]]:
    """Files to predict from files, directories (recursively) and glob patterns, in order.

    Directories give their image files (by name ending, see `IMAGE_SUFFIXES`), sorted;
    patterns (``*``, ``?``, ``[``, ``**`` across folders) are expanded here too, for shells
    that pass them on unexpanded. Returns ``(name, error)`` pairs: error is None for a file
    to read, else why the input gave nothing (reported by name, never dropped silently).
    """
    out: list[tuple[str, str | None]] = []
    for item in inputs:
        name = os.fspath(item)
        p = Path(name)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*")
                           if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            out += [(str(f), None) for f in files]
            if not files:
                out.append((name, f"{name}: directory holds no image files."))
        elif p.exists():
            out.append((name, None))
        elif glob.has_magic(name):
            matches = sorted(glob.glob(name, recursive=True))
            if not matches:
                out.append((name, f"{name}: pattern matches no file."))
            out += expand_inputs(matches) if matches else []
        else:
            out.append((name, f"{name}: no such file or directory."))
    return out
