"""A user's own folder of photos, through the CLI in fresh processes: mixed sizes and
formats, a damaged file, 3 classes and no test split; train, evaluate, predict, serve,
export with its gate, and fine-tune from the packaged model. Plus the errors a broken
folder gets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_images
from tests.data.test_folders import make_mixed_folder
from tests.serve.test_cli_serve import first_line, free_port, serve


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifar_cnn", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """make_mixed_folder's 3 classes (flat, every format, one truncated file, a text file),
    with 12 more JPEGs of 48x48 per class that a network can tell apart."""
    root = make_mixed_folder(tmp_path_factory.mktemp("own") / "photos")
    rng = np.random.default_rng(0)
    for label, name in enumerate(("cat", "dog", "fox")):
        (root / name / "more").mkdir()
        for i, a in enumerate(make_images(12, label * 3, rng, size=48)):
            Image.fromarray(a).save(root / name / "more" / f"{i:02d}.jpg", quality=90)
    return root


@pytest.mark.slow
def test_own_photos_from_training_to_serving(photos: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    r = cli("train", "--recipe", "quick", "--data", str(photos), "--epochs", "2",
            "--runs-dir", str(runs))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cat/d_truncated.png: not a readable image" in r.stdout  # listed, skipped
    # Sized to 36 photos, not quick's batch of 1000; quick's narrower network trains from
    # scratch, and says why.
    assert "Plan: 36 images at 48x48: batch 32, 2 epochs = 2 steps" in r.stdout
    assert "Training from scratch: airbench(widths=(32, 128, 128)) is not the packaged" \
        in r.stdout
    run = runs / "quick"
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["class_names"] == ["cat", "dog", "fox"] and meta["settings"]["monitor"] == (
        "validation")
    assert meta["dataset"]["holdout"]["val_split"] == 0.2 and meta["input"]["resize"] == "crop"

    r = cli("evaluate", str(run), "--json", "--no-report")
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout)
    assert metrics["split"] == "val" and metrics["num_images"] == 9  # the held-out split

    r = cli("predict", str(run), str(photos / "dog" / "b_cmyk.jpg"), "--json")
    assert r.returncode == 0, r.stderr
    assert sorted(json.loads(r.stdout)[0]["probabilities"]) == ["cat", "dog", "fox"]

    port = free_port()
    proc = serve(str(run), "--port", str(port))
    try:
        assert "Serving quick" in first_line(proc), proc.poll()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            body = (photos / "cat" / "a_exif.jpg").read_bytes()
            got = client.post("/v1/predict", content=body,
                              headers={"content-type": "image/jpeg"}).json()
            assert len(got["predictions"][0]["probabilities"]) == 3
            tf = client.post("/v1/models/quick:predict", json={"instances": [
                np.zeros((48, 64, 3), int).tolist()]}).json()
            assert len(tf["predictions"][0]) == 3
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    r = cli("export", str(run), "--format", "litert")
    assert r.returncode == 0, r.stdout + r.stderr
    parity = json.loads((run / "export/litert/parity.json").read_text())
    assert parity["passed"] and parity["num_images"] == 9  # gated on the validation split

    r = cli("train", "--recipe", "fast94", "--data", str(photos), "--epochs", "2",
            "--init", "default", "--runs-dir", str(runs), "--name", "tuned")
    assert r.returncode == 0, r.stdout + r.stderr
    meta = json.loads((runs / "tuned/metadata.json").read_text())
    # The 32-px packaged network fine-tuned at the size the photos call for (their median
    # short side is 48 px or more): its layers take any size.
    assert "Image size 48: the photos' median short side is" in r.stdout
    assert meta["init"]["new_head"] and meta["input"]["shape"] == [48, 48, 3]


def _classes(root: Path, split: str, names: tuple[str, ...], n: int = 3) -> None:
    for name in names:
        folder = root / split / name
        folder.mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (16, 16), (i * 40, 80, 120)).save(folder / f"{i}.png")


@pytest.mark.slow  # `cifar-cnn train` processes
@pytest.mark.parametrize("layout,words", [
    ({"train": ("cat", "dog"), "test": ("dog",)}, "cat"),  # missing from test: a warning
    ({"train": ("cat", "dog"), "test": ("cat", "dog", "emu")}, "emu"),
    ({"train": ("cat",)}, "single class"),
])
def test_broken_folders_get_the_specified_error(tmp_path: Path, layout: dict,
                                                words: str) -> None:
    for split, names in layout.items():
        _classes(tmp_path / "data", split, names)
    r = cli("train", "--data", str(tmp_path / "data"), "--epochs", "1", "--runs-dir",
            str(tmp_path / "runs"), "--quiet", timeout=300)
    if "emu" in layout.get("test", ()) or len(layout["train"]) == 1:
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr.startswith("error: ") and words in r.stderr
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    else:
        assert r.returncode == 0, r.stderr
        assert "warning: " in r.stderr and f"no images of class(es) {words}" in r.stderr
