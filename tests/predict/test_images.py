"""Any image file in, the model's 32x32 RGB uint8 input out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_cnn.errors import ImageError
from cifar_cnn.predict import expand_inputs, load_image, prepare_image


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


def test_pixel_limit_is_checked_before_decoding(tmp_path: Path) -> None:
    Image.new("RGB", (400, 300)).save(tmp_path / "wide.png")
    with pytest.raises(ImageError, match=r"wide.png: 400 x 300 pixels is over the limit of "
                                         r"100,000 pixels"):
        load_image(tmp_path / "wide.png", max_pixels=100_000)
    assert load_image(tmp_path / "wide.png").shape == (32, 32, 3)


def test_large_jpeg_is_decoded_at_reduced_scale_with_the_same_look(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:2400, 0:3200]
    a = np.stack([xx * 255 // 3200, yy * 255 // 2400, (xx + yy) % 256 // 2], -1).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "photo.jpg", quality=90)
    fast = load_image(tmp_path / "photo.jpg")
    with Image.open(tmp_path / "photo.jpg") as im:
        full = prepare_image(im)  # decoded at full size
    assert np.abs(fast.astype(int) - full).max() <= 3


def test_directory_and_pattern_inputs(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/1.png", "a/b/2.JPG", "3.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name, format="PNG" if "png" in name else "JPEG")
    (tmp_path / "a" / "b" / "readme.txt").write_text("skipped")
    (tmp_path / "empty").mkdir()
    found = expand_inputs([tmp_path / "a", str(tmp_path / "*.png"), tmp_path / "empty",
                           tmp_path / "nope.png", str(tmp_path / "*.gif")])
    names = [(Path(n).relative_to(tmp_path).as_posix(), e is None) for n, e in found]
    assert names == [("a/1.png", True), ("a/b/2.JPG", True), ("3.png", True),
                     ("empty", False), ("nope.png", False), ("*.gif", False)]
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path / "a")
