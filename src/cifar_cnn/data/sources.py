"""Where CIFAR-10 comes from: the official archive, its extracted batches, or class folders.

Each reader returns uint8 arrays ``(N, 32, 32, 3)`` and uint8 labels, in a fixed order, and
raises :class:`~cifar_cnn.errors.DataError` naming the offending file when something is off.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifar_cnn.errors import DataError
from cifar_cnn.files import sha256_file
from cifar_cnn.images import IMAGE_SUFFIXES

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# The SHA-256 Keras publishes for this archive (keras.datasets.cifar10).
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
IMAGE_SIZE = (32, 32)

HOW_TO_PROVIDE = (
    "pass --data PATH (Python: data=PATH) pointing at the official archive "
    f"{ARCHIVE_NAME}, its extracted batches or a train/<class>/ + test/<class>/ image folder "
    "tree; or set the CIFAR_CNN_DATA environment variable to such a path; or connect to the "
    "internet so cifar-cnn can download the official archive once"
)


@dataclass(frozen=True)
class Arrays:
    """Decoded CIFAR-style data as uint8 arrays."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class Source:
    """A resolved data source: what kind it is and the files that identify it."""

    kind: str  # "archive" | "batches" | "folders"
    path: Path

    def signature_files(self) -> list[Path]:
        """The files whose paths, sizes and times identify this source for the cache."""
        if self.kind == "archive":
            return [self.path]
        if self.kind == "batches":
            return [self.path / name for name in (*TRAIN_BATCHES, TEST_BATCH)]
        return [p for split in ("train", "test") for p in _image_files(self.path / split)]

    def read(self) -> Arrays:
        """Decode the source into arrays."""
        if self.kind == "archive":
            return read_archive(self.path)
        if self.kind == "batches":
            return read_batches(self.path)
        return read_folders(self.path)


def detect_source(path: str | os.PathLike[str]) -> Source:
    """Work out which kind of CIFAR-10 source `path` is.

    Raises:
        DataError: if `path` does not exist or matches no known layout.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"Data path {p} does not exist. To provide CIFAR-10: {HOW_TO_PROVIDE}.")
    if p.is_file():
        if tarfile.is_tarfile(p) or p.name.endswith((".tar.gz", ".tgz", ".tar")):
            return Source("archive", p.resolve())
        raise DataError(
            f"{p} is a file but not a tar archive; expected the official CIFAR-10 archive "
            f"{ARCHIVE_NAME} (or a folder)."
        )
    for candidate in (p, p / "cifar-10-batches-py"):
        if (candidate / TRAIN_BATCHES[0]).is_file():
            return Source("batches", candidate.resolve())
    if (p / "train").is_dir():
        return Source("folders", p.resolve())
    if (p / ARCHIVE_NAME).is_file():
        return Source("archive", (p / ARCHIVE_NAME).resolve())
    raise DataError(
        f"{p} is not a CIFAR-10 source: expected the archive {ARCHIVE_NAME}, a folder holding "
        f"{', '.join(TRAIN_BATCHES)} and {TEST_BATCH}, or a folder with train/<class>/ and "
        "test/<class>/ image folders."
    )


def download_archive(
    cache_dir: str | os.PathLike[str],
    *,
    url: str = CIFAR10_URL,
    sha256: str = CIFAR10_SHA256,
) -> Path:
    """Download the official archive once (hash-checked by Keras) and return its cached path.

    A download whose SHA-256 does not match is deleted, never unpickled.

    Raises:
        DataError: when there is no network, the server fails, or the hash does not match.
    """
    import keras

    cache_dir = Path(cache_dir)
    target = cache_dir / "downloads" / ARCHIVE_NAME
    target.parent.mkdir(parents=True, exist_ok=True)  # else Keras falls back to /tmp/.keras
    try:
        path = keras.utils.get_file(
            fname=ARCHIVE_NAME,
            origin=url,
            file_hash=sha256,
            hash_algorithm="sha256",
            cache_dir=str(cache_dir),
            cache_subdir="downloads",
        )
    except ValueError as e:  # hash mismatch after download
        target.unlink(missing_ok=True)
        raise DataError(
            f"The CIFAR-10 archive downloaded from {url} is corrupt or incomplete (its SHA-256 "
            f"does not match {sha256}); it was deleted. Try again, or {HOW_TO_PROVIDE}."
        ) from e
    except Exception as e:
        target.unlink(missing_ok=True)
        raise DataError(
            f"No CIFAR-10 data found and the download from {url} failed ({e}). To provide "
            f"CIFAR-10: {HOW_TO_PROVIDE}."
        ) from e
    return Path(path)


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch and nothing else: only NumPy's array reconstruction is allowed."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"forbidden object {module}.{name} in a CIFAR batch")
        return super().find_class(module, name)


def _parse_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pickled batch into (images NHWC uint8, labels uint8)."""
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as e:
        raise DataError(f"{where} is not a readable CIFAR-10 batch ({e}).") from e
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(
            f"{where} has the wrong shape: expected data (N, 3072) and N labels, got data "
            f"{data.shape} and {len(labels)} labels."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise DataError(f"{where} has labels outside 0..9.")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.uint8)


def _join(parts: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*parts, strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def read_archive(path: Path, *, sha256: str | None = CIFAR10_SHA256) -> Arrays:
    """Read the official ``cifar-10-python.tar.gz`` without extracting it to disk.

    The archive's SHA-256 is checked first; nothing is unpickled from an archive that fails.
    """
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            raise DataError(
                f"{path} is not the official CIFAR-10 archive or is corrupt/truncated: its "
                f"SHA-256 is {actual}, expected {sha256}. Download it again or point --data at "
                "the extracted batches."
            )
    members: dict[str, bytes] = {}
    wanted = {*TRAIN_BATCHES, TEST_BATCH}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = Path(member.name).name
                if member.isfile() and name in wanted:
                    f = tar.extractfile(member)
                    assert f is not None
                    members[name] = f.read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path} is a corrupt or truncated archive ({e}).") from e
    missing = sorted(wanted - members.keys())
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}; it is not the CIFAR-10 archive.")
    x_train, y_train = _join(_parse_batch(members[n], f"{path}:{n}") for n in TRAIN_BATCHES)
    x_test, y_test = _parse_batch(members[TEST_BATCH], f"{path}:{TEST_BATCH}")
    return Arrays(x_train, y_train, x_test, y_test, CLASS_NAMES)


def read_batches(folder: Path) -> Arrays:
    """Read extracted ``data_batch_1..5`` and ``test_batch`` files."""

    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        f = folder / name
        if not f.is_file():
            raise DataError(f"{f} is missing; a CIFAR-10 batch folder needs "
                            f"{', '.join(TRAIN_BATCHES)} and {TEST_BATCH}.")
        return _parse_batch(f.read_bytes(), str(f))

    x_train, y_train = _join(load(n) for n in TRAIN_BATCHES)
    x_test, y_test = load(TEST_BATCH)
    return Arrays(x_train, y_train, x_test, y_test, CLASS_NAMES)


def _image_files(folder: Path) -> list[Path]:
    """Image files of a split folder, ordered by class folder then byte-wise file name."""
    if not folder.is_dir():
        return []
    files = []
    for class_dir in sorted(d for d in folder.iterdir() if d.is_dir()):
        names = sorted(
            (e.name for e in os.scandir(class_dir)
             if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES),
            key=os.fsencode,
        )
        files.extend(class_dir / n for n in names)
    return files


def _decode_tile(path: Path) -> np.ndarray:
    """Decode one dataset image, which must be 32x32; converted to RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.size != IMAGE_SIZE:
                raise DataError(
                    f"{path} is {im.size[0]}x{im.size[1]} pixels; every image in a CIFAR-10 "
                    "folder tree must be 32x32. Resize the dataset first, or use "
                    "`cifar-cnn predict` for single images of any size."
                )
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path} is not a readable image ({e}). Remove or replace it.") from e


def _read_split(root: Path, split: str, class_names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    folder = root / split
    if not folder.is_dir():
        raise DataError(f"{folder} is missing; the folder layout needs train/<class>/ and "
                        "test/<class>/ with the same class folders.")
    found = tuple(sorted(d.name for d in folder.iterdir() if d.is_dir()))
    missing = sorted(set(class_names) - set(found))
    if missing:
        raise DataError(
            f"{folder} lacks the class folder(s) {', '.join(missing)} that train/ has; "
            "train/ and test/ must hold the same classes."
        )
    extra = sorted(set(found) - set(class_names))
    if extra:
        raise DataError(f"{folder} has class folder(s) {', '.join(extra)} that train/ lacks.")
    paths = _image_files(folder)
    counts = {c: 0 for c in class_names}
    for p in paths:
        counts[p.parent.name] += 1
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        raise DataError(f"{folder} has no images in: {', '.join(empty)}.")
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        tiles = list(pool.map(_decode_tile, paths, chunksize=256))
    labels = np.repeat(np.arange(len(class_names), dtype=np.uint8),
                       [counts[c] for c in class_names])
    return np.stack(tiles), labels


def read_folders(root: Path) -> Arrays:
    """Read a ``train/<class>/*`` and ``test/<class>/*`` tree of 32x32 images.

    Class names are the sorted folder names of train/ (for CIFAR-10 this is the official
    label order). Images are ordered by class, then by byte-wise file name.
    """
    train_dir = root / "train"
    class_names = tuple(sorted(d.name for d in train_dir.iterdir() if d.is_dir()))
    if len(class_names) < 2:
        raise DataError(f"{train_dir} must hold at least two class folders; found "
                        f"{len(class_names)}.")
    x_train, y_train = _read_split(root, "train", class_names)
    x_test, y_test = _read_split(root, "test", class_names)
    return Arrays(x_train, y_train, x_test, y_test, class_names)
