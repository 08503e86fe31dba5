"""Packing a run compactly, and the packed default model the package ships."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from cifar_cnn.errors import RunError
from cifar_cnn.pretrained import DEFAULT_MODEL, default_run, pack_run


def _h5_dtypes(keras_file: Path) -> dict[str, tuple[str, int]]:
    with zipfile.ZipFile(keras_file) as z:
        data = z.read("model.weights.h5")
    out: dict[str, tuple[str, int]] = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, (str(o.dtype), o.size))
                     if isinstance(o, h5py.Dataset) else None)
    return out


def test_pack_run_halves_large_arrays_and_drops_the_optimizer(trained_run: Path,
                                                              tmp_path: Path) -> None:
    import keras

    packed = pack_run(trained_run, tmp_path / "packed")
    assert packed.model.stat().st_size < 0.4 * (trained_run / "model.keras").stat().st_size
    dtypes = _h5_dtypes(packed.model)
    assert all(n.startswith("layers/") for n in dtypes)  # no optimizer variables
    assert {d for d, size in dtypes.values() if size >= 4096} == {"float16"}
    assert {d for d, size in dtypes.values() if size < 4096} == {"float32"}
    for name in ("metadata.json", "calibration.json"):
        assert (packed.path / name).read_bytes() == (trained_run / name).read_bytes()

    original = keras.saving.load_model(trained_run / "model.keras", compile=False)
    small = keras.saving.load_model(packed.model, safe_mode=True)
    assert getattr(small, "optimizer", None) is None and small.weights[0].dtype == "float32"
    x = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(small.predict(x, verbose=0), original.predict(x, verbose=0),
                               atol=1e-2)
    with pytest.raises(RunError, match="not empty"):
        pack_run(trained_run, packed.path)


# The shipped model file (src/cifar_cnn/pretrained/robust/model.keras); see README.
DEFAULT_MODEL_SHA256 = "60123ec7bf2c9ded1e5641df4dbe5dc42f8731cd8eb1f6ddc0b9378fab737cf7"


def test_default_model_is_the_recorded_one() -> None:
    import hashlib

    run = default_run()
    meta = json.loads((run / "metadata.json").read_text())
    digest = hashlib.sha256((run / "model.keras").read_bytes()).hexdigest()
    assert digest == DEFAULT_MODEL_SHA256 == meta["provenance"]["model_sha256"]
    assert (run / "model.keras").stat().st_size < 6_000_000
    assert meta["recipe"]["name"] == DEFAULT_MODEL == "robust"
    assert set(meta["calibration"]["modes"]) == {
        "none", "flip", "flip_translate"}


@pytest.mark.slow
def test_predict_without_a_run_uses_the_default_model(tmp_path: Path) -> None:
    Image.new("RGB", (40, 30), (200, 40, 40)).save(tmp_path / "red.png")
    r = subprocess.run([sys.executable, "-m", "cifar_cnn", "predict", str(tmp_path / "red.png"),
                        "--json", "--no-tta"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (record,) = json.loads(r.stdout)
    assert record["file"] == str(tmp_path / "red.png") and record["calibrated"] is True
    assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert len(record["probabilities"]) == 10


def test_the_default_run_without_images_is_refused(capsys: pytest.CaptureFixture) -> None:
    from cifar_cnn import cli

    assert cli.main(["predict", str(default_run())]) == 2  # `cifar-cnn` exits with it
    err = capsys.readouterr().err
    assert "No images given" in err and "Traceback" not in err
