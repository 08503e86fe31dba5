"""Data sources, cache, errors and the validation split, on tiny data made here."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_cnn.data import CifarData, DataWarning, load_cifar10, sources, split_validation
from cifar_cnn.data import dataset as dataset_mod
from cifar_cnn.errors import DataError
from tests.conftest import CLASSES, write_folder_dataset


def _batch_bytes(images: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled the way the official archive does (dict of bytes keys)."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return pickle.dumps({b"data": data, b"labels": labels, b"batch_label": b"x"}, protocol=2)


def make_official_archive(path: Path, per_batch: int = 4, seed: int = 0) -> tuple[Path, np.ndarray]:
    """A small archive in the official layout; returns it and its training images."""
    rng = np.random.default_rng(seed)
    train = []
    with tarfile.open(path, "w:gz") as tar:
        for name in (*sources.TRAIN_BATCHES, sources.TEST_BATCH):
            images = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, 10, per_batch)]
            if name != sources.TEST_BATCH:
                train.append(images)
            raw = _batch_bytes(images, labels)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path, np.concatenate(train)


def test_folder_tree_loads_in_class_then_name_order(folder_dataset: Path) -> None:
    ds = load_cifar10(folder_dataset)
    assert ds.class_names == CLASSES
    assert ds.x_train.shape == (120, 32, 32, 3) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (40, 32, 32, 3)
    assert list(ds.y_train[:13]) == [0] * 12 + [1]
    first = np.asarray(Image.open(folder_dataset / "train/airplane/airplane_000.png"))
    np.testing.assert_array_equal(ds.x_train[0], first)
    expected = hashlib.sha256(np.ascontiguousarray(ds.x_train).tobytes()).hexdigest()
    assert ds.fingerprint["train_images"] == expected


def test_second_load_comes_from_cache_and_changes_invalidate_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_folder_dataset(tmp_path / "d", 3, 2)
    first = load_cifar10(root)

    def boom(self, **kwargs):  # the cache must answer without decoding
        raise AssertionError("decoded again")

    monkeypatch.setattr(sources.Source, "read", boom)
    again = load_cifar10(root)
    np.testing.assert_array_equal(first.x_train, again.x_train)
    assert again.fingerprint == first.fingerprint
    # Changing a file must miss the cache.
    img = root / "train/cat/cat_000.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    os.utime(img, ns=(1, 1))
    with pytest.raises(AssertionError, match="decoded again"):
        load_cifar10(root)


def test_cache_holds_no_partial_files(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "d", 2, 1)
    load_cifar10(root)
    cache = Path(os.environ["CIFAR_CNN_CACHE"]) / "arrays"
    names = [p.name for p in cache.iterdir()]
    assert len(names) == 1 and names[0].endswith(".npz") and not names[0].startswith(".")


def test_class_missing_from_test_folder_is_a_warning(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "d", 2, 1)
    for f in (root / "test/dog").iterdir():
        f.unlink()
    (root / "test/dog").rmdir()
    with pytest.warns(DataWarning, match=r"test has no images of class\(es\) dog"):
        ds = load_cifar10(root)
    assert ds.class_names == CLASSES and len(ds.y_test) == 9
    assert ds.summary.counts["test"][CLASSES.index("dog")] == 0
    assert any("dog" in w for w in ds.summary.warnings)


def test_other_size_image_is_brought_to_the_input_size(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "d", 2, 1)
    Image.new("RGB", (40, 32), (200, 10, 10)).save(root / "train/frog/zz_big.png")
    ds = load_cifar10(root)
    assert ds.x_train.shape == (21, 32, 32, 3)
    frog_last = np.flatnonzero(ds.y_train == CLASSES.index("frog"))[-1]
    assert ds.files["train"][frog_last] == "train/frog/zz_big.png"
    assert (ds.x_train[frog_last] == (200, 10, 10)).all()


def test_unreadable_image_is_skipped_and_named(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "d", 2, 1)
    (root / "test/ship/broken.png").write_bytes(b"not a png at all")
    ds = load_cifar10(root)
    assert len(ds.y_test) == 10
    (skip,) = ds.summary.unreadable
    assert skip.path == "test/ship/broken.png" and "not a readable image" in skip.reason
    with pytest.raises(DataError, match=r"test/ship/broken\.png: not a readable image"):
        load_cifar10(root, strict=True)


def test_unknown_layout_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_cifar10(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is not a dataset"):
        load_cifar10(tmp_path / "empty")


def test_official_archive_and_batches(tmp_path: Path) -> None:
    archive, train = make_official_archive(tmp_path / sources.ARCHIVE_NAME)
    got = sources.read_archive(archive, sha256=sources.sha256_file(archive))
    np.testing.assert_array_equal(got.x_train, train)
    assert got.x_train.shape == (20, 32, 32, 3) and got.x_test.shape == (4, 32, 32, 3)
    assert got.class_names == sources.CLASS_NAMES
    # Through load_cifar10 the official checksum is required, which this archive lacks.
    with pytest.raises(DataError, match=f"expected {sources.CIFAR10_SHA256}"):
        load_cifar10(archive)
    # Extracted batches give the same arrays.
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    ds = load_cifar10(tmp_path / "x")
    np.testing.assert_array_equal(ds.x_train, train)


def test_truncated_archive_is_refused_before_unpickling(tmp_path: Path) -> None:
    archive, _ = make_official_archive(tmp_path / sources.ARCHIVE_NAME)
    digest = sources.sha256_file(archive)
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz is not the official"):
        sources.read_archive(archive, sha256=digest)


def test_batch_with_foreign_objects_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir()
    evil = pickle.dumps({b"data": os.system, b"labels": []})
    for name in (*sources.TRAIN_BATCHES, sources.TEST_BATCH):
        (folder / name).write_bytes(evil)
    with pytest.raises(DataError, match=r"data_batch_1 is not a readable CIFAR-10 batch"):
        load_cifar10(folder)


@pytest.fixture
def file_server(tmp_path: Path):
    """A local HTTP server for download tests (loopback only, stopped afterwards)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_checks_hash_and_caches(tmp_path: Path, file_server: str) -> None:
    archive, train = make_official_archive(tmp_path / sources.ARCHIVE_NAME)
    digest = sources.sha256_file(archive)
    cache = tmp_path / "cache"
    url = f"{file_server}/{sources.ARCHIVE_NAME}"
    got = sources.download_archive(cache, url=url, sha256=digest)
    assert got == cache / "downloads" / sources.ARCHIVE_NAME
    np.testing.assert_array_equal(sources.read_archive(got, sha256=digest).x_train, train)
    archive.unlink()  # a second call must not need the server's file
    assert sources.download_archive(cache, url=url, sha256=digest) == got


def test_download_with_wrong_hash_is_deleted(tmp_path: Path) -> None:
    archive, _ = make_official_archive(tmp_path / "served.tar.gz")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="corrupt or incomplete"):
        sources.download_archive(cache, url=archive.as_uri(), sha256="0" * 64)
    assert not (cache / "downloads" / sources.ARCHIVE_NAME).exists()


def test_no_data_and_no_network_names_the_three_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    offline = functools.partial(sources.download_archive, url="http://127.0.0.1:9/none.tar.gz")
    monkeypatch.setattr(dataset_mod, "download_archive", offline)
    with pytest.raises(DataError) as info:
        load_cifar10()
    msg = str(info.value)
    assert "--data PATH" in msg and "CIFAR_CNN_DATA" in msg and "download" in msg


def test_environment_variable_is_a_source(folder_dataset: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIFAR_CNN_DATA", str(folder_dataset))
    assert load_cifar10().x_train.shape == (120, 32, 32, 3)


def test_validation_split_is_stratified_and_repeatable(tiny_data: CifarData) -> None:
    _x_tr, y_tr, _x_val, y_val = split_validation(tiny_data.x_train, tiny_data.y_train, 50, seed=3)
    assert len(y_val) == 50 and len(y_tr) == 150
    assert np.bincount(y_val).tolist() == [5] * 10
    again = split_validation(tiny_data.x_train, tiny_data.y_train, 50, seed=3)
    np.testing.assert_array_equal(again[3], y_val)
    with pytest.raises(DataError, match="val_size"):
        split_validation(tiny_data.x_train, tiny_data.y_train, 5)
