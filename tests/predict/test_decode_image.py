"""`decode_image`: `load_image` for bytes (uploads), with the same checks and wording."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_cnn.errors import ImageError, ImageTooLargeError
from cifar_cnn.predict import decode_image, load_image


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    a = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def test_same_result_as_load_image(tmp_path: Path) -> None:
    data = _png(90, 60)
    (tmp_path / "a.png").write_bytes(data)
    np.testing.assert_array_equal(decode_image(data, "a.png"), load_image(tmp_path / "a.png"))
    assert decode_image(data, "a.png", (16, 8)).shape == (8, 16, 3)


def test_errors_name_the_file() -> None:
    with pytest.raises(ImageError, match=r"^up\.png: is empty \(0 bytes\)"):
        decode_image(b"", "up.png")
    with pytest.raises(ImageError, match=r"^notes\.txt: not a readable image"):
        decode_image(b"hello", "notes.txt")
    with pytest.raises(ImageError, match=r"^cut\.png: not a readable image \(OSError"):
        decode_image(_png(64, 64)[:300], "cut.png")


def test_pixel_limit_is_checked_before_decoding() -> None:
    with pytest.raises(ImageTooLargeError, match=r"^wide\.png: 400 x 300 pixels is over the "
                                                 r"limit of 100,000 pixels"):
        decode_image(_png(400, 300), "wide.png", max_pixels=100_000)


def test_a_large_jpeg_is_decoded_at_a_fraction_of_its_size() -> None:
    # What the limit guards is the pixels decoded: libjpeg reads this 1200 x 900 photo at
    # 1/4 scale (300 x 225) for a 32 x 32 input, within the limit; a PNG has no such mode.
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (900, 1200, 3), dtype=np.uint8)).save(buf, "JPEG")
    assert decode_image(buf.getvalue(), "big.jpg", max_pixels=200_000).shape == (32, 32, 3)
    with pytest.raises(ImageTooLargeError, match=r"^big\.png: 1200 x 900 pixels"):
        decode_image(_png(1200, 900), "big.png", max_pixels=200_000)
