"""The model's input spec, and turning any image into that input: RGB uint8 at its size.

The one place where images are prepared for a model: training data from image folders,
`cifar-cnn predict`, the HTTP service, evaluation and the export's parity gate all call
`InputSpec` (or the functions below with its size and resize policy), so a saved model
sees new images exactly as it saw its training images.
"""

from __future__ import annotations

import glob
import io
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cifar_cnn.errors import ConfigError, ImageError, ImageTooLargeError

# How an image whose aspect ratio differs from the model's is brought to the model's size.
RESIZE_POLICIES = {
    "crop": "centre-cropped to the model's aspect ratio, then resized",
    "squish": "resized to the model's size, the aspect ratio not kept",
    "pad": "resized to fit inside the model's size, then padded with black",
}
DEFAULT_RESIZE = "crop"

# Shown to users in docs and --help: the one way new images are prepared.
RESIZE_METHOD = (
    "EXIF orientation applied; converted to RGB (alpha composited over white, 16-bit and "
    "grayscale scaled to 8-bit RGB, first frame of animations); centre-cropped to the "
    "model's aspect ratio (the default resize policy, 'crop') and resized with Pillow's "
    "antialiased bicubic filter (large JPEGs are first decoded at 1/2, 1/4 or 1/8 scale by "
    "libjpeg, never below 4x the model's input size)"
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


def check_resize(resize: str) -> str:
    """`resize` if it names a policy of `RESIZE_POLICIES`.

    Raises:
        ConfigError: for any other name.
    """
    if resize not in RESIZE_POLICIES:
        raise ConfigError(f"Unknown resize policy {resize!r}; choose from "
                          f"{', '.join(RESIZE_POLICIES)}. Received: resize={resize!r}")
    return resize


def prepare_image(im: Image.Image, size: tuple[int, int] = (32, 32), *,
                  resize: str = DEFAULT_RESIZE) -> np.ndarray:
    """An RGB uint8 array of shape ``(height, width, 3)`` ready for the model.

    Args:
        im: any Pillow image.
        size: ``(width, height)`` of the model's input.
        resize: the policy for another aspect ratio (see `RESIZE_POLICIES`).

    See `RESIZE_METHOD` for the steps.
    """
    im = ImageOps.exif_transpose(im)
    rgb = _to_rgb(im)
    if rgb.size != size:
        bicubic = Image.Resampling.BICUBIC  # antialiased when shrinking
        if check_resize(resize) == "crop":
            rgb = ImageOps.fit(rgb, size, bicubic)
        elif resize == "squish":
            rgb = rgb.resize(size, bicubic)
        else:
            rgb = ImageOps.pad(rgb, size, bicubic, color=(0, 0, 0))
    return np.asarray(rgb, dtype=np.uint8)


def load_image(path: str | os.PathLike[str], size: tuple[int, int] = (32, 32), *,
               max_pixels: int = MAX_PIXELS, resize: str = DEFAULT_RESIZE) -> np.ndarray:
    """Read an image file (PNG, JPEG, BMP, GIF, WebP, TIFF, ...) into the model's input.

    Args:
        path: the file.
        size: ``(width, height)`` of the model's input.
        max_pixels: refuse images with more pixels than this, before decoding them.
        resize: the policy for another aspect ratio (see `RESIZE_POLICIES`).

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
    return _decode(p, str(p), size, max_pixels, resize)


def try_load_image(path: str | os.PathLike[str], size: tuple[int, int] = (32, 32), *,
                   max_pixels: int = MAX_PIXELS, resize: str = DEFAULT_RESIZE,
                   name: str | None = None) -> tuple[np.ndarray | None, str | None]:
    """`load_image` for scanning many files: ``(array, None)``, or ``(None, reason)``.

    The same decoder as `load_image` (pixel limit, EXIF rotation, RGB, resize policy);
    instead of raising `ImageError` it returns why the file cannot be used, without the
    ``"name: "`` prefix, e.g. ``"not a readable image (OSError: image file is truncated)"``.

    Args:
        name: what the reason would call the file (default: `path`).
    """
    name = os.fspath(path) if name is None else name
    try:
        return _decode(Path(path), name, size, max_pixels, resize), None
    except ImageError as e:
        message = str(e)
        return None, message.removeprefix(f"{name}: ")


def decode_image(data: bytes, name: str, size: tuple[int, int] = (32, 32), *,
                 max_pixels: int = MAX_PIXELS, resize: str = DEFAULT_RESIZE) -> np.ndarray:
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
    return _decode(io.BytesIO(data), name, size, max_pixels, resize)


def image_from_array(value: Any, name: str, size: tuple[int, int] = (32, 32), *,
                     max_pixels: int = MAX_PIXELS, resize: str = DEFAULT_RESIZE) -> np.ndarray:
    """`load_image` for an ``H x W x 3`` array (or nested lists) of RGB values 0..255.

    Values are rounded to the nearest integer; an array of another size is prepared as an
    image file would be.

    Raises:
        ImageError: naming `name`, for another shape, non-numbers, values outside 0..255, or
            more than `max_pixels` pixels (`ImageTooLargeError`).
    """
    try:
        a = np.asarray(value)
    except ValueError as e:  # ragged nesting
        raise ImageError(f"{name}: not an HxWx3 array of pixel values ({e}).") from None
    if a.ndim != 3 or a.shape[2] != 3 or not (
            np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ImageError(f"{name}: expected an HxWx3 array of numbers 0..255 (RGB). "
                         f"Received: shape {a.shape}, {a.dtype.kind!r} values")
    if a.shape[0] * a.shape[1] > max_pixels:
        raise ImageTooLargeError(f"{name}: {a.shape[1]} x {a.shape[0]} pixels is over the "
                                 f"limit of {max_pixels:,} pixels.")
    if a.size == 0 or not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 255:
        raise ImageError(f"{name}: pixel values must be finite numbers in 0..255.")
    a = np.rint(a).astype(np.uint8)
    if a.shape[:2] == (size[1], size[0]):
        return a
    return prepare_image(Image.fromarray(a), size, resize=resize)


def _decode(source: Path | BinaryIO, name: str, size: tuple[int, int],
            max_pixels: int, resize: str) -> np.ndarray:
    """The one decoder behind `load_image` and `decode_image`."""
    limit = f"over the limit of {max_pixels:,} pixels"
    advice = ("It may be a decompression bomb, or a very large image: shrink it first, or "
              "raise --max-pixels.")
    try:
        with warnings.catch_warnings():  # Pillow's own size warning: the limit is ours
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(source)
        with im:
            w, h = im.size
            im.seek(0)
            side = min(w, h)
            if side > 4 * max(size):  # JPEG only: libjpeg decodes at 1/2, 1/4 or 1/8 scale
                scale = 4 * max(size) / side
                im.draft(None, (int(w * scale) + 1, int(h * scale) + 1))
            # The limit is on the pixels decoded: a 12,000 x 9,000 JPEG decodes at 1/8 scale.
            if im.size[0] * im.size[1] > max_pixels:
                raise ImageTooLargeError(f"{name}: {w} x {h} pixels is {limit}. {advice}")
            return prepare_image(im, size, resize=resize)
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


@dataclass(frozen=True)
class InputSpec:
    """What a model takes and how new images are made into it; travels with the model.

    Written under ``"input"`` in a run's metadata.json and in every export's metadata.json
    (with ``"class_names"`` beside it), and read back as part of the model's card
    (`cifar_cnn.card.ModelCard`). Pixels are RGB uint8 0..255, channels last; the model
    normalises them itself, so there is no mean or standard deviation for a caller to get
    wrong.

    Attributes:
        height, width, channels: the model's input shape.
        resize: how another aspect ratio is handled (a key of `RESIZE_POLICIES`).
        class_names: the model's classes, in the order of its outputs.
        normalization: where the pixels are normalised (always inside the model).
    """

    height: int = 32
    width: int = 32
    channels: int = 3
    resize: str = DEFAULT_RESIZE
    class_names: tuple[str, ...] = field(default=())
    normalization: str = "inside the model"

    def __post_init__(self) -> None:
        check_resize(self.resize)
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``, as Pillow counts."""
        return (self.width, self.height)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)``, the model's input shape without the batch."""
        return (self.height, self.width, self.channels)

    def to_metadata(self) -> dict[str, Any]:
        """The ``"input"`` entry of metadata.json (class names are stored beside it)."""
        return {"shape": list(self.shape), "dtype": "uint8", "range": [0, 255],
                "layout": "RGB, channels last; scaled inside the model",
                "resize": self.resize, "normalization": self.normalization}

    def prepare(self, im: Image.Image) -> np.ndarray:
        """`prepare_image` at this spec's size and resize policy."""
        return prepare_image(im, self.size, resize=self.resize)

    def load(self, path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
        """`load_image` at this spec's size and resize policy."""
        return load_image(path, self.size, max_pixels=max_pixels, resize=self.resize)

    def decode(self, data: bytes, name: str, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
        """`decode_image` at this spec's size and resize policy."""
        return decode_image(data, name, self.size, max_pixels=max_pixels, resize=self.resize)

    def from_array(self, value: Any, name: str, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
        """`image_from_array` at this spec's size and resize policy."""
        return image_from_array(value, name, self.size, max_pixels=max_pixels,
                                resize=self.resize)

    def batch(self, images: Any) -> np.ndarray:
        """A uint8 batch ``(N, H, W, 3)`` from file paths, Pillow images, uint8 arrays
        ``(H, W, 3)`` (any size) or a batch ``(N, H, W, 3)``; one item or a sequence.

        Raises:
            ImageError: for an unreadable file.
        """
        if isinstance(images, np.ndarray) and images.ndim == 4:
            if images.shape[1:] == self.shape:
                return images.astype(np.uint8, copy=False)
            return np.stack([self.prepare(Image.fromarray(a.astype(np.uint8)))
                             for a in images])
        if isinstance(images, str | os.PathLike | Image.Image) or (
                isinstance(images, np.ndarray) and images.ndim in (2, 3)):
            images = [images]
        out = []
        for im in images:
            if isinstance(im, Image.Image):
                out.append(self.prepare(im))
            elif isinstance(im, np.ndarray):
                out.append(self.prepare(Image.fromarray(im.astype(np.uint8))))
            else:
                out.append(self.load(im))
        return np.stack(out)
