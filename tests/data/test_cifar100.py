"""CIFAR-100: the official archive layout (made small here), its extracted folder, and the
real download code against a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import io
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from cifar_cnn.data import load_dataset, sources
from cifar_cnn.errors import DataError

FINE = ("apple", "aquarium_fish", "baby", "bear", "beaver")


def _pickled(images: np.ndarray, fine: list[int], **extra: object) -> bytes:
    """A split pickled the way the official archive does (dict with bytes keys)."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    d = {b"filenames": [b"x.png"] * len(images), b"batch_label": b"training batch 1 of 1",
         b"fine_labels": fine, b"coarse_labels": [f // 2 for f in fine], b"data": data}
    d.update(extra)
    return pickle.dumps(d, protocol=2)


def make_cifar100(root: Path, n_train: int = 8, n_test: int = 4, seed: int = 0,
                  meta: bytes | None = None) -> tuple[Path, dict[str, np.ndarray]]:
    """``root/cifar-100-python.tar.gz`` in the official layout and its extracted folder
    ``root/cifar-100-python/``; returns the archive and the arrays it holds."""
    rng = np.random.default_rng(seed)
    arrays, raw = {}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, len(FINE), n)]
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, np.array(y, np.uint8)
        raw[split] = _pickled(x, y)
    raw["meta"] = meta if meta is not None else pickle.dumps(
        {b"fine_label_names": [n.encode() for n in FINE],
         b"coarse_label_names": [b"c0", b"c1", b"c2"]}, protocol=2)
    archive = root / sources.CIFAR100_ARCHIVE_NAME
    folder = root / sources.CIFAR100_DIR
    folder.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("file.txt~", "train", "test", "meta"):
            blob = raw.get(name, b"readme")
            (folder / name).write_bytes(blob)
            info = tarfile.TarInfo(f"{sources.CIFAR100_DIR}/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return archive, arrays


def _same(ds, arrays: dict[str, np.ndarray]) -> None:
    assert ds.class_names == FINE
    for k, v in arrays.items():
        np.testing.assert_array_equal(getattr(ds, k), v)
    assert ds.x_val is None and ds.holdout is None  # the official test split is kept


def test_cifar100_hash_is_the_published_one() -> None:
    # keras/src/datasets/cifar100.py (Keras 3.15) passes this file_hash for the same URL.
    assert sources.CIFAR100_SHA256 == (
        "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7")
    assert sources.CIFAR100_URL == "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"


def test_local_archive_is_checked_then_read(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    archive, arrays = make_cifar100(tmp_path)
    # Not the official archive: refused before unpickling, with the expected hash named.
    with pytest.raises(DataError, match=f"not the official CIFAR-100.*{sources.CIFAR100_SHA256}"):
        load_dataset(archive)
    monkeypatch.setattr(sources, "CIFAR100_SHA256", sources.sha256_file(archive))
    ds = load_dataset(archive)
    _same(ds, arrays)
    assert ds.source == f"cifar100-archive:{archive}"
    assert ds.summary.counts["train"] == tuple(np.bincount(arrays["y_train"], minlength=5))
    # Found by its content under another name, and inside a folder that holds it.
    other = tmp_path / "c100.tgz"
    other.write_bytes(archive.read_bytes())
    _same(load_dataset(other), arrays)


def test_extracted_folder(tmp_path: Path) -> None:
    _, arrays = make_cifar100(tmp_path)
    _same(load_dataset(tmp_path / sources.CIFAR100_DIR), arrays)
    _same(load_dataset(tmp_path), arrays)  # the folder holding cifar-100-python/
    up = load_dataset(tmp_path, image_size=48)
    assert up.x_train.shape == (8, 48, 48, 3) and up.summary.image_size == 48


def test_bad_meta_and_labels_are_named(tmp_path: Path) -> None:
    make_cifar100(tmp_path / "a", meta=pickle.dumps({b"other": 1}))
    with pytest.raises(DataError, match=r"meta is not a readable CIFAR-100 meta file"):
        load_dataset(tmp_path / "a" / sources.CIFAR100_DIR)
    make_cifar100(tmp_path / "b")
    train = tmp_path / "b" / sources.CIFAR100_DIR / "train"
    train.write_bytes(_pickled(np.zeros((2, 32, 32, 3), np.uint8), [0, 7]))
    with pytest.raises(DataError, match=r"train has labels outside 0\.\.4"):
        load_dataset(train.parent)


@pytest.fixture
def served(tmp_path: Path):
    """A local HTTP server (loopback only) over tmp_path/www, stopped afterwards."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_checks_the_hash_and_is_cached(tmp_path: Path, served,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    www, base = served
    archive, arrays = make_cifar100(www)
    digest = sources.sha256_file(archive)
    url = f"{base}/{sources.CIFAR100_ARCHIVE_NAME}"
    cache = tmp_path / "cache"
    got = sources.download_cifar100(cache, url=url, sha256=digest)
    assert got == cache / "downloads" / sources.CIFAR100_ARCHIVE_NAME
    assert sources.sha256_file(got) == digest
    # End to end: data="cifar100" downloads (here: finds the cached download) and reads it.
    monkeypatch.setattr(sources, "CIFAR100_URL", url)
    monkeypatch.setattr(sources, "CIFAR100_SHA256", digest)
    archive.unlink()  # the server no longer has it: the cached copy must serve
    ds = load_dataset("cifar100", cache_dir=cache)
    _same(ds, arrays)
    assert ds.source == f"cifar100-archive:{got}"


def test_download_end_to_end_from_the_server(tmp_path: Path, served,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    www, base = served
    archive, arrays = make_cifar100(www)
    monkeypatch.setattr(sources, "CIFAR100_URL", f"{base}/{sources.CIFAR100_ARCHIVE_NAME}")
    monkeypatch.setattr(sources, "CIFAR100_SHA256", sources.sha256_file(archive))
    monkeypatch.chdir(tmp_path)  # no folder named cifar100 here
    _same(load_dataset("CIFAR100", cache_dir=tmp_path / "cache"), arrays)


def test_download_with_a_wrong_hash_leaves_no_file(tmp_path: Path, served) -> None:
    www, base = served
    make_cifar100(www)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"CIFAR-100 archive downloaded from .* is corrupt or "
                                        r"incomplete.*it was deleted"):
        sources.download_cifar100(cache, url=f"{base}/{sources.CIFAR100_ARCHIVE_NAME}",
                                  sha256="0" * 64)
    assert [p for p in (cache / "downloads").rglob("*") if p.is_file()] == []


def test_download_failure_says_how_to_provide_data(tmp_path: Path, served) -> None:
    _, base = served
    with pytest.raises(DataError, match=r"No CIFAR-100 data found .*--data PATH"):
        sources.download_cifar100(tmp_path / "cache", url=f"{base}/missing.tar.gz")
