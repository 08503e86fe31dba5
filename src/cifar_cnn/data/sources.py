"""Where the data comes from: the official CIFAR-10 or CIFAR-100 archive, their extracted
batches, or folders of images (``DIR/train/<class>/`` with optional val and test folders, or
a flat ``DIR/<class>/``).

Each reader returns uint8 arrays ``(N, S, S, 3)`` and integer labels, in a fixed order, and
raises :class:`~cifar_cnn.errors.DataError` naming the offending file when something is off.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifar_cnn.data import folders
from cifar_cnn.data.summary import SkippedFile
from cifar_cnn.errors import DataError
from cifar_cnn.files import sha256_file
from cifar_cnn.images import DEFAULT_RESIZE, MAX_PIXELS

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

CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
# The SHA-256 Keras publishes for this archive (keras/src/datasets/cifar100.py, file_hash);
# the archive's official MD5 is eb9058c3a382ffc7106e4002c42a8d85.
CIFAR100_SHA256 = "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"
CIFAR100_ARCHIVE_NAME = "cifar-100-python.tar.gz"
CIFAR100_DIR = "cifar-100-python"
CIFAR100_FILES = ("train", "test", "meta")
# Names that mean "download the official archive" when no such path exists.
DOWNLOAD_NAMES = {"cifar10": "archive", "cifar-10": "archive",
                  "cifar100": "cifar100-archive", "cifar-100": "cifar100-archive"}
FOLDER_KINDS = frozenset({"folders", "flat"})

HOW_TO_PROVIDE = (
    "pass --data PATH (Python: data=PATH) pointing at a folder of images with one folder per "
    "class (DIR/<class>/, or DIR/train/<class>/ with optional DIR/val/<class>/ and "
    f"DIR/test/<class>/), the official CIFAR-10 archive {ARCHIVE_NAME} or its extracted "
    f"batches, or the CIFAR-100 archive {CIFAR100_ARCHIVE_NAME} or its extracted folder "
    f"{CIFAR100_DIR}/; or pass --data cifar10 or --data cifar100 to download the official "
    "archive once; or set the CIFAR_CNN_DATA environment variable to such a path; or connect "
    "to the internet so cifar-cnn can download the official CIFAR-10 archive once"
)


@dataclass(frozen=True)
class Arrays:
    """Decoded CIFAR-style data as uint8 arrays.

    Attributes:
        x_test, y_test: empty (zero rows) when the source has no test split.
        x_val, y_val: the source's validation split (a val/ folder), else None.
        files: split -> image paths relative to the data root, in array order (folder
            sources only).
        skipped, warnings: what a folder source did not use, and problems that did not stop
            the load.
        splits: the splits the source has.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    files: dict[str, tuple[str, ...]] | None = None
    skipped: tuple[SkippedFile, ...] = ()
    warnings: tuple[str, ...] = ()
    splits: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True)
class Source:
    """A resolved data source: what kind it is and the files that identify it."""

    # "archive" | "batches" | "cifar100-archive" | "cifar100-batches" | "folders" | "flat"
    kind: str
    path: Path

    def signature_files(self) -> list[Path]:
        """The files whose paths, sizes and times identify this source for the cache
        (folder sources are identified by `scan` instead)."""
        if self.kind in ("archive", "cifar100-archive"):
            return [self.path]
        if self.kind == "batches":
            return [self.path / name for name in (*TRAIN_BATCHES, TEST_BATCH)]
        if self.kind == "cifar100-batches":
            return [self.path / name for name in CIFAR100_FILES]
        return []

    def scan(self) -> folders.Listing:
        """List a folder source's images and check its classes (see `folders.scan_folders`)."""
        return folders.scan_folders(self.path, self.kind)

    def read(self, *, image_size: int = 32, resize: str = DEFAULT_RESIZE,
             max_pixels: int = MAX_PIXELS, workers: int | None = None,
             listing: folders.Listing | None = None) -> Arrays:
        """Decode the source into arrays of ``image_size`` x ``image_size`` pixels.

        Args:
            listing: a folder source's `scan`, if already made.
        """
        if self.kind in FOLDER_KINDS:
            return read_folders(self.path, image_size=image_size, resize=resize,
                                max_pixels=max_pixels, workers=workers,
                                listing=listing or self.scan())
        if self.kind == "archive":
            arrays = read_archive(self.path)
        elif self.kind == "batches":
            arrays = read_batches(self.path)
        elif self.kind == "cifar100-archive":
            arrays = read_cifar100_archive(self.path, sha256=CIFAR100_SHA256)
        else:
            arrays = read_cifar100_batches(self.path)
        if image_size == IMAGE_SIZE[0]:
            return arrays
        return Arrays(folders.resize_arrays(arrays.x_train, image_size, resize=resize,
                                            workers=workers), arrays.y_train,
                      folders.resize_arrays(arrays.x_test, image_size, resize=resize,
                                            workers=workers), arrays.y_test,
                      arrays.class_names)


def _archive_kind(p: Path) -> str:
    """"cifar100-archive" for the CIFAR-100 archive (by name, else by its first members),
    else "archive" (CIFAR-10, whose checksum is checked when it is read)."""
    name = p.name.lower()
    if "cifar-100" in name or "cifar100" in name:
        return "cifar100-archive"
    if "cifar-10" in name or "cifar10" in name:
        return "archive"
    try:
        with tarfile.open(p, "r:*") as tar:
            for i, member in enumerate(tar):
                top = member.name.lstrip("./").split("/")[0]
                if top == CIFAR100_DIR:
                    return "cifar100-archive"
                if top == "cifar-10-batches-py" or i >= 8:
                    break
    except (tarfile.TarError, OSError, EOFError):
        pass  # reported, with the checksum, when it is read
    return "archive"


def _is_cifar100_folder(p: Path) -> bool:
    return all((p / name).is_file() for name in CIFAR100_FILES)


def detect_source(path: str | os.PathLike[str]) -> Source:
    """Work out which kind of data source `path` is.

    Raises:
        DataError: if `path` does not exist or matches no known layout.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"Data path {p} does not exist. To provide data: {HOW_TO_PROVIDE}.")
    if p.is_file():
        if tarfile.is_tarfile(p) or p.name.endswith((".tar.gz", ".tgz", ".tar")):
            return Source(_archive_kind(p), p.resolve())
        raise DataError(
            f"{p} is a file but not a tar archive; expected the official CIFAR-10 archive "
            f"{ARCHIVE_NAME} or CIFAR-100 archive {CIFAR100_ARCHIVE_NAME}, or a folder of "
            "images with one folder per class."
        )
    for candidate in (p, p / "cifar-10-batches-py"):
        if (candidate / TRAIN_BATCHES[0]).is_file():
            return Source("batches", candidate.resolve())
    for candidate in (p, p / CIFAR100_DIR):
        if _is_cifar100_folder(candidate):
            return Source("cifar100-batches", candidate.resolve())
    splits = folders.split_folders(p)
    if "train" in splits:
        return Source("folders", p.resolve())
    for name in (ARCHIVE_NAME, CIFAR100_ARCHIVE_NAME):
        if (p / name).is_file():
            return Source(_archive_kind(p / name), (p / name).resolve())
    if splits:
        found = ", ".join(f"{v}/" for v in splits.values())
        raise DataError(
            f"{p} has {found} but no train/ folder. Put the training images in "
            f"{p / 'train'}/<class>/ (one folder per class), or use a flat {p}/<class>/ "
            "layout and let cifar-cnn hold out the validation images.")
    with os.scandir(p) as entries:
        has_folders = any(not e.name.startswith(".") and e.is_dir() for e in entries)
    if has_folders:
        return Source("flat", p.resolve())
    raise DataError(
        f"{p} is not a dataset: expected a folder of images with one folder per class "
        f"({p}/<class>/ or {p}/train/<class>/), the archive {ARCHIVE_NAME} or "
        f"{CIFAR100_ARCHIVE_NAME}, or a folder holding {', '.join(TRAIN_BATCHES)} and "
        f"{TEST_BATCH} (CIFAR-10) or {', '.join(CIFAR100_FILES)} (CIFAR-100)."
    )


def _download(cache_dir: str | os.PathLike[str], fname: str, url: str, sha256: str,
              what: str) -> Path:
    """Download `url` once into ``cache_dir/downloads/fname``, hash-checked by Keras."""
    import keras

    cache_dir = Path(cache_dir)
    target = cache_dir / "downloads" / fname
    target.parent.mkdir(parents=True, exist_ok=True)  # else Keras falls back to /tmp/.keras
    try:
        path = keras.utils.get_file(
            fname=fname,
            origin=url,
            file_hash=sha256,
            hash_algorithm="sha256",
            cache_dir=str(cache_dir),
            cache_subdir="downloads",
        )
    except ValueError as e:  # hash mismatch after download
        target.unlink(missing_ok=True)
        raise DataError(
            f"The {what} archive downloaded from {url} is corrupt or incomplete (its SHA-256 "
            f"does not match {sha256}); it was deleted. Try again, or {HOW_TO_PROVIDE}."
        ) from e
    except Exception as e:
        target.unlink(missing_ok=True)
        raise DataError(
            f"No {what} data found and the download from {url} failed ({e}). To provide "
            f"data: {HOW_TO_PROVIDE}."
        ) from e
    return Path(path)


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
    return _download(cache_dir, ARCHIVE_NAME, url, sha256, "CIFAR-10")


def download_cifar100(
    cache_dir: str | os.PathLike[str],
    *,
    url: str | None = None,
    sha256: str | None = None,
) -> Path:
    """Download the official CIFAR-100 archive once into ``cache_dir/downloads`` (its
    SHA-256 checked by Keras) and return its path; later calls reuse it.

    Args:
        url, sha256: default to `CIFAR100_URL` and `CIFAR100_SHA256`.

    Raises:
        DataError: when there is no network, the server fails, or the hash does not match
            (the download is then deleted, never unpickled).
    """
    return _download(cache_dir, CIFAR100_ARCHIVE_NAME, url or CIFAR100_URL,
                     sha256 or CIFAR100_SHA256, "CIFAR-100")


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


def _parse_batch(raw: bytes, where: str, *, label_key: bytes = b"labels",
                 num_classes: int = len(CLASS_NAMES),
                 what: str = "CIFAR-10") -> tuple[np.ndarray, np.ndarray]:
    """Decode one pickled batch into (images NHWC uint8, labels uint8)."""
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except Exception as e:
        raise DataError(f"{where} is not a readable {what} batch ({e}).") from e
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(
            f"{where} has the wrong shape: expected data (N, 3072) and N labels, got data "
            f"{data.shape} and {len(labels)} labels."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{where} has labels outside 0..{num_classes - 1}.")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.uint8)


def _join(parts: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*parts, strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def _check_archive(path: Path, sha256: str | None, what: str, advice: str) -> None:
    """Raise `DataError` unless the file's SHA-256 is `sha256` (None: not checked), before
    anything is unpickled from it."""
    if sha256 is None:
        return
    actual = sha256_file(path)
    if actual != sha256:
        raise DataError(f"{path} is not the official {what} archive or is corrupt/truncated: "
                        f"its SHA-256 is {actual}, expected {sha256}. {advice}")


def read_archive(path: Path, *, sha256: str | None = CIFAR10_SHA256) -> Arrays:
    """Read the official ``cifar-10-python.tar.gz`` without extracting it to disk.

    The archive's SHA-256 is checked first; nothing is unpickled from an archive that fails.
    """
    _check_archive(path, sha256, "CIFAR-10",
                   "Download it again or point --data at the extracted batches.")
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


def _parse_cifar100_meta(raw: bytes, where: str) -> tuple[str, ...]:
    """The fine class names of CIFAR-100's ``meta`` pickle, in label order."""
    try:
        meta = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
        names = tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n)
                      for n in meta[b"fine_label_names"])
    except Exception as e:
        raise DataError(f"{where} is not a readable CIFAR-100 meta file ({e}); it must hold "
                        "the class names under fine_label_names.") from e
    if len(names) < 2 or len(set(names)) != len(names):
        raise DataError(f"{where} must list at least two distinct fine_label_names; "
                        f"found {len(names)}.")
    return names


def _cifar100_arrays(raw: dict[str, bytes], where: str) -> Arrays:
    class_names = _parse_cifar100_meta(raw["meta"], f"{where}meta")
    parse = functools.partial(_parse_batch, label_key=b"fine_labels",
                              num_classes=len(class_names), what="CIFAR-100")
    x_train, y_train = parse(raw["train"], f"{where}train")
    x_test, y_test = parse(raw["test"], f"{where}test")
    return Arrays(x_train, y_train, x_test, y_test, class_names)


def read_cifar100_archive(path: Path, *, sha256: str | None = CIFAR100_SHA256) -> Arrays:
    """Read the official ``cifar-100-python.tar.gz`` (fine labels) without extracting it.

    The archive's SHA-256 is checked first (unless `sha256` is None); nothing is unpickled
    from an archive that fails.
    """
    _check_archive(path, sha256, "CIFAR-100",
                   f"Download it again ({CIFAR100_URL}, or --data cifar100), or point --data at "
                   f"its extracted {CIFAR100_DIR}/ folder.")
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if (member.isfile() and len(parts) >= 2 and parts[-2] == CIFAR100_DIR
                        and parts[-1] in CIFAR100_FILES):
                    f = tar.extractfile(member)
                    assert f is not None
                    members[parts[-1]] = f.read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path} is a corrupt or truncated archive ({e}).") from e
    missing = [n for n in CIFAR100_FILES if n not in members]
    if missing:
        raise DataError(f"{path} lacks {', '.join(f'{CIFAR100_DIR}/{n}' for n in missing)}; "
                        "it is not the CIFAR-100 archive.")
    return _cifar100_arrays(members, f"{path}:{CIFAR100_DIR}/")


def read_cifar100_batches(folder: Path) -> Arrays:
    """Read an extracted ``cifar-100-python/`` folder (``train``, ``test``, ``meta``)."""
    raw = {}
    for name in CIFAR100_FILES:
        f = folder / name
        if not f.is_file():
            raise DataError(f"{f} is missing; a CIFAR-100 folder needs "
                            f"{', '.join(CIFAR100_FILES)}.")
        raw[name] = f.read_bytes()
    return _cifar100_arrays(raw, f"{folder}{os.sep}")


def read_folders(root: Path, *, image_size: int = 32, resize: str = DEFAULT_RESIZE,
                 max_pixels: int = MAX_PIXELS, workers: int | None = None,
                 listing: folders.Listing | None = None) -> Arrays:
    """Read a folder dataset: ``train/<class>/`` (optional ``val/``, ``test/``) or a flat
    ``<class>/`` tree of images of any size and format, brought to `image_size`.

    Class names are the sorted folder names of the training folder; images are ordered by
    class, then by byte-wise path inside the class folder. Unreadable images are skipped
    and listed in ``skipped``; a split the folder lacks is empty (zero rows).

    Raises:
        DataError: for the class problems `folders.scan_folders` names.
    """
    if listing is None:
        listing = folders.scan_folders(root, "folders" if "train" in folders.split_folders(
            root) else "flat")
    d = folders.decode_listing(listing, image_size, resize=resize, max_pixels=max_pixels,
                               workers=workers)
    empty_x = np.zeros((0, image_size, image_size, 3), np.uint8)
    empty_y = np.zeros((0,), folders.label_dtype(len(d.class_names)))
    return Arrays(d.x["train"], d.y["train"], d.x.get("test", empty_x),
                  d.y.get("test", empty_y), d.class_names, d.x.get("val"), d.y.get("val"),
                  d.files, d.skipped, d.warnings, tuple(d.x))
