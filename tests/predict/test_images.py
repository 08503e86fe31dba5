"""Any image file in, the model's 32x32 RGB uint8 input out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_cnn.errors import ImageError
from cifar_cnn.predict import load_image


def _stripes(width: int, height: int) -> Image.Image:
    """Blue border columns around a green centre square, for checking the centre crop."""
    a = np.zeros((height, width, 3), np.uint8)
    a[:, :, 2] = 255
    side = min(width, height)
    left = (width - side) // 2
    a[:, left:left + side] = (0, 255, 0)
    return Image.fromarray(a)


@pytest.mark.parametrize("fmt,mode", [
    ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"), ("PNG", "P"), ("PNG", "I;16"),
    ("JPEG", "RGB"), ("JPEG", "L"), ("JPEG", "CMYK"), ("BMP", "RGB"), ("GIF", "P"),
    ("WEBP", "RGB"), ("TIFF", "RGB"), ("TIFF", "I;16"),
])
def test_formats_and_modes(tmp_path: Path, fmt: str, mode: str) -> None:
    im = _stripes(90, 60)
    if mode == "I;16":
        a = (np.asarray(im.convert("L"), dtype=np.uint16) * 257)
        im = Image.fromarray(a)
    else:
        im = im.convert(mode)
    path = tmp_path / f"img.{fmt.lower()}"
    im.save(path, fmt)
    x = load_image(path)
    assert x.shape == (32, 32, 3) and x.dtype == np.uint8
    if mode in ("RGB", "RGBA", "P") and fmt in ("PNG", "BMP", "TIFF", "WEBP"):
        # The centre crop keeps the green square only.
        assert x[..., 1].mean() > 200 and x[..., 2].mean() < 40


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    a = np.full((40, 40), 32768, np.uint16)
    Image.fromarray(a).save(tmp_path / "mid.png")
    x = load_image(tmp_path / "mid.png")
    assert 120 <= int(x.mean()) <= 135


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    Image.new("RGBA", (32, 32), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png").min() == 255


def test_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    x = load_image(tmp_path / "a.gif")
    assert x[..., 0].mean() > 200 and x[..., 2].mean() < 50


def test_bad_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ImageError, match=r"notes\.png: not a readable image"):
        load_image(tmp_path / "notes.png")
    with pytest.raises(ImageError, match=r"missing\.jpg: no such file"):
        load_image(tmp_path / "missing.jpg")
