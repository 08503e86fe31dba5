"""Fixtures for the prediction service: a tiny run directory (no training) and images."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import CLASSES

TEMPERATURES = {"none": 1.5, "flip": 1.4, "flip_translate": 1.3}


def write_tiny_run(path: Path, *, calibration: bool = True) -> Path:
    """A run directory as `cifar-cnn train` writes it, around an untrained baseline CNN."""
    from cifar_cnn.models import create_model

    path.mkdir(parents=True, exist_ok=True)
    create_model("baseline").save(path / "model.keras")
    meta = {
        "name": "tiny",
        "status": "complete",
        "class_names": list(CLASSES),
        "input": {"shape": [32, 32, 3], "dtype": "uint8", "range": [0, 255],
                  "layout": "RGB, channels last; scaled inside the model"},
        "recipe": {"name": "baseline", "model": "baseline", "tta": False},
        "settings": {"data": "/private/path/on/the/training/host"},
        "final_metrics": {"test_accuracy": 0.1, "images_per_sec": 1000.0},
        "epochs_done": 0,
    }
    if calibration:
        cal = {"modes": {k: {"temperature": t} for k, t in TEMPERATURES.items()},
               "fit_on": "calibration split"}
        (path / "calibration.json").write_text(json.dumps(cal))
        meta["calibration"] = cal
    (path / "metadata.json").write_text(json.dumps(meta))
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory named "tiny": an untrained baseline CNN (10 CIFAR-10 classes, raw
    0..255 pixels in), metadata.json and calibration.json (temperatures 1.5/1.4/1.3)."""
    return write_tiny_run(tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="session")
def uncalibrated_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny_run` without calibration.json."""
    return write_tiny_run(tmp_path_factory.mktemp("serve") / "uncalibrated", calibration=False)


def image_bytes(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (40, 30),
                fmt: str = "PNG", seed: int = 0) -> bytes:
    """An image file: a colour plus noise, so different colours get different predictions."""
    rng = np.random.default_rng(seed)
    a = np.clip(np.array(color) + rng.integers(-30, 30, (size[1], size[0], 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(a.astype(np.uint8)).save(buf, fmt)
    return buf.getvalue()


def declared_png(width: int, height: int) -> bytes:
    """A PNG of a few hundred bytes whose header declares `width` x `height` pixels: what a
    decompression bomb looks like before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
