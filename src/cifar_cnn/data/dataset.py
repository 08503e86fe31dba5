"""Loading CIFAR-10 into memory, with an on-disk cache of the decoded arrays."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cifar_cnn.data.sources import Arrays, Source, detect_source, download_archive
from cifar_cnn.errors import DataError
from cifar_cnn.files import atomic_path

DATA_ENV = "CIFAR_CNN_DATA"
CACHE_ENV = "CIFAR_CNN_CACHE"
_CACHE_FORMAT = 1


@dataclass(frozen=True)
class CifarData:
    """Train and test images as uint8 ``(N, 32, 32, 3)`` arrays with uint8 labels.

    Attributes:
        fingerprint: SHA-256 of the raw bytes of each array (keys ``train_images``,
            ``train_labels``, ``test_images``, ``test_labels``): identifies the exact data.
        source: a short description of where the data came from.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    fingerprint: dict[str, str] = field(default_factory=dict)
    source: str = "in-memory arrays"

    def __post_init__(self) -> None:
        for name in ("x_train", "x_test"):
            x = getattr(self, name)
            if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
                raise DataError(f"{name} must be uint8 of shape (N, H, W, 3); "
                                f"received dtype={x.dtype}, shape={x.shape}.")
        if len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test):
            raise DataError("Images and labels differ in length.")
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", fingerprint_arrays(
                self.x_train, self.y_train, self.x_test, self.y_test))

    @classmethod
    def from_arrays(
        cls,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_test: np.ndarray,
        y_test: np.ndarray,
        class_names: tuple[str, ...] | list[str],
    ) -> CifarData:
        """Build from any array-likes: images are cast to uint8, labels flattened to uint8."""
        return cls(
            np.ascontiguousarray(x_train, dtype=np.uint8),
            np.asarray(y_train).reshape(-1).astype(np.uint8),
            np.ascontiguousarray(x_test, dtype=np.uint8),
            np.asarray(y_test).reshape(-1).astype(np.uint8),
            tuple(class_names),
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def fingerprint_arrays(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> dict[str, str]:
    """SHA-256 of each array's raw bytes (C order), as in the dataset README."""
    arrays = {"train_images": x_train, "train_labels": y_train,
              "test_images": x_test, "test_labels": y_test}
    return {k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
            for k, v in arrays.items()}


def default_cache_dir() -> Path:
    """``$CIFAR_CNN_CACHE``, else ``$XDG_CACHE_HOME/cifar-cnn``, else ``~/.cache/cifar-cnn``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cifar-cnn"


def _source_key(source: Source) -> str:
    """Hash of the source's location and its files' names, sizes and modification times."""
    h = hashlib.sha256(f"{_CACHE_FORMAT}|{source.kind}|{source.path}".encode())
    for p in source.signature_files():
        try:
            st = p.stat()
        except OSError:
            continue
        h.update(f"|{p.relative_to(source.path) if p != source.path else p.name}"
                 f"|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _load_cached(path: Path) -> CifarData | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return CifarData(z["x_train"], z["y_train"], z["x_test"], z["y_test"],
                             tuple(meta["class_names"]), meta["fingerprint"], meta["source"])
    except Exception:  # an unreadable cache entry is rebuilt, never trusted
        return None


def _save_cached(path: Path, data: CifarData) -> None:
    meta = {"class_names": list(data.class_names), "fingerprint": data.fingerprint,
            "source": data.source}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
                 y_test=data.y_test, meta=np.array(json.dumps(meta)))


def resolve_source(data: str | os.PathLike[str] | None, cache_dir: Path) -> Source:
    """Pick the source: explicit path, then ``$CIFAR_CNN_DATA``, then the official download."""
    if data is not None:
        return detect_source(data)
    if os.environ.get(DATA_ENV):
        return detect_source(os.environ[DATA_ENV])
    return Source("archive", download_archive(cache_dir))


def load_cifar10(
    data: str | os.PathLike[str] | CifarData | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> CifarData:
    """Load CIFAR-10 (or a CIFAR-style folder dataset) as uint8 arrays.

    Args:
        data: the official archive, its extracted batches, or a ``train/<class>/`` +
            ``test/<class>/`` tree of 32x32 images. ``None`` uses ``$CIFAR_CNN_DATA`` and
            then downloads the official archive once (hash-checked). A ``CifarData`` is
            returned as is.
        cache_dir: where downloads and decoded arrays are cached (see `default_cache_dir`).
        use_cache: read and write the decoded-array cache.

    Returns:
        A `CifarData`.

    Raises:
        DataError: no data could be found, or the source is corrupt (the message names the file).

    Example:
        >>> ds = load_cifar10("path/to/cifar10")  # doctest: +SKIP
        >>> ds.x_train.shape
        (50000, 32, 32, 3)
    """
    if isinstance(data, CifarData):
        return data
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    source = resolve_source(data, cache)
    cache_file = cache / "arrays" / f"{source.kind}-{_source_key(source)}.npz"
    if use_cache and cache_file.is_file():
        cached = _load_cached(cache_file)
        if cached is not None:
            return cached
    arrays: Arrays = source.read()
    result = CifarData(arrays.x_train, arrays.y_train, arrays.x_test, arrays.y_test,
                       arrays.class_names, source=f"{source.kind}:{source.path}")
    if use_cache:
        with contextlib.suppress(OSError):  # a read-only or full cache must not stop training
            _save_cached(cache_file, result)
    return result
