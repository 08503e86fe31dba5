"""Loading a dataset (CIFAR-10, CIFAR-100 or folders of images) into memory, with an
on-disk cache of the decoded arrays."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifar_cnn.card import ModelCard
from cifar_cnn.data.folders import label_dtype, short_sides
from cifar_cnn.data.sources import (
    DOWNLOAD_NAMES,
    FOLDER_KINDS,
    Arrays,
    Source,
    detect_source,
    download_archive,
    download_cifar100,
)
from cifar_cnn.data.split import stratified_holdout
from cifar_cnn.data.summary import DataSummary, DataWarning, SkippedFile
from cifar_cnn.errors import ConfigError, DataError
from cifar_cnn.files import atomic_path
from cifar_cnn.images import DEFAULT_RESIZE, MAX_PIXELS, check_resize

DATA_ENV = "CIFAR_CNN_DATA"
CACHE_ENV = "CIFAR_CNN_CACHE"
_CACHE_FORMAT = 2
_STRICT_LISTED = 20  # unreadable files named in a strict load's error


@dataclass(frozen=True)
class CifarData:
    """Train, test and (optionally) validation images as uint8 ``(N, S, S, 3)`` arrays with
    integer labels (uint8 up to 256 classes) in the order of `class_names`.

    Attributes:
        x_test, y_test: empty (zero rows) when the data has no test split.
        fingerprint: SHA-256 of the raw bytes of each array (keys ``train_images``,
            ``train_labels``, ``test_images``, ``test_labels``, and ``val_images``,
            ``val_labels`` when there is a validation split): identifies the exact data.
        source: a short description of where the data came from.
        x_val, y_val: the validation split: the data's val/ folder, or the images held out
            of training (see `holdout`); None if there is none.
        summary: per-class counts, skipped files and warnings (`DataSummary`; print
            ``summary.table()``).
        files: folder data only: split ("train", "val", "test") -> image paths relative to
            the data root (``/`` separators), in the order of the arrays' rows.
        holdout: how the validation split was held out of the training images, else None:
            ``{"method": "stratified", "val_split", "seed", "num_images", "files_sha256"}``;
            the same files, `val_split` and `seed` give the same split (`files_sha256` is
            the SHA-256 of ``"\n".join(files["val"])``, to check it).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    fingerprint: dict[str, str] = field(default_factory=dict)
    source: str = "in-memory arrays"
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    summary: DataSummary | None = None
    files: dict[str, tuple[str, ...]] | None = None
    holdout: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        names = ("x_train", "x_test") if self.x_val is None else ("x_train", "x_test", "x_val")
        for name in names:
            x = getattr(self, name)
            if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
                raise DataError(f"{name} must be uint8 of shape (N, H, W, 3); "
                                f"received dtype={x.dtype}, shape={x.shape}.")
        if (self.x_val is None) != (self.y_val is None):
            raise DataError("x_val and y_val must both be given, or neither.")
        if (len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test)
                or (self.x_val is not None and len(self.x_val) != len(self.y_val))):
            raise DataError("Images and labels differ in length.")
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", fingerprint_arrays(
                self.x_train, self.y_train, self.x_test, self.y_test, self.x_val, self.y_val))
        if self.summary is None:
            object.__setattr__(self, "summary", DataSummary(
                self.source, "arrays", tuple(self.class_names), _counts(self),
                image_size=int(self.x_train.shape[1])))

    @classmethod
    def from_arrays(
        cls,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_test: np.ndarray,
        y_test: np.ndarray,
        class_names: tuple[str, ...] | list[str],
        *,
        x_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> CifarData:
        """Build from any array-likes: images are cast to uint8, labels flattened to uint8
        (int32 beyond 256 classes)."""
        dtype = label_dtype(len(class_names))
        return cls(
            np.ascontiguousarray(x_train, dtype=np.uint8),
            np.asarray(y_train).reshape(-1).astype(dtype),
            np.ascontiguousarray(x_test, dtype=np.uint8),
            np.asarray(y_test).reshape(-1).astype(dtype),
            tuple(class_names),
            x_val=None if x_val is None else np.ascontiguousarray(x_val, dtype=np.uint8),
            y_val=None if y_val is None else np.asarray(y_val).reshape(-1).astype(dtype),
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def has_val(self) -> bool:
        """Whether there is a validation split (a val/ folder or a hold-out)."""
        return self.x_val is not None and len(self.x_val) > 0

    @property
    def has_test(self) -> bool:
        """Whether there is a test split (CIFAR's test set or a test/ folder)."""
        return len(self.x_test) > 0


def _counts(ds: CifarData) -> dict[str, tuple[int, ...]]:
    n = len(ds.class_names)
    splits = {"train": ds.y_train, "val": ds.y_val, "test": ds.y_test}
    return {s: tuple(int(c) for c in np.bincount(y, minlength=n)[:n])
            for s, y in splits.items() if y is not None and (s == "train" or len(y))}


def fingerprint_arrays(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
    x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
) -> dict[str, str]:
    """SHA-256 of each array's raw bytes (C order), as in the dataset README; with
    ``val_images`` and ``val_labels`` only when there is a validation split."""
    arrays = {"train_images": x_train, "train_labels": y_train,
              "test_images": x_test, "test_labels": y_test}
    if x_val is not None and y_val is not None:
        arrays.update(val_images=x_val, val_labels=y_val)
    return {k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
            for k, v in arrays.items()}


def default_cache_dir() -> Path:
    """``$CIFAR_CNN_CACHE``, else ``$XDG_CACHE_HOME/cifar-cnn``, else ``~/.cache/cifar-cnn``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cifar-cnn"


def _source_key(source: Source, *settings: object) -> str:
    """Hash of the source's location, its files' names, sizes and modification times, and
    the decoding `settings`."""
    h = hashlib.sha256("|".join(map(str, (_CACHE_FORMAT, source.kind, source.path,
                                          *settings))).encode())
    for p in source.signature_files():
        try:
            st = p.stat()
        except OSError:
            continue
        h.update(f"|{p.relative_to(source.path) if p != source.path else p.name}"
                 f"|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _load_cached(path: Path) -> tuple[Arrays, dict[str, str], str] | None:
    """The arrays, their fingerprint and source description from a cache entry, or None."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode("ascii"))
            has_val = "x_val" in z.files
            arrays = Arrays(
                z["x_train"], z["y_train"], z["x_test"], z["y_test"],
                tuple(meta["class_names"]),
                z["x_val"] if has_val else None, z["y_val"] if has_val else None,
                ({k: tuple(v) for k, v in meta["files"].items()}
                 if meta["files"] is not None else None),
                tuple(SkippedFile(**f) for f in meta["skipped"]), tuple(meta["warnings"]),
                tuple(meta["splits"]))
            return arrays, meta["fingerprint"], meta["source"]
    except Exception:  # an unreadable cache entry is rebuilt, never trusted
        return None


def _save_cached(path: Path, arrays: Arrays, fingerprint: dict[str, str], source: str) -> None:
    meta = {"class_names": list(arrays.class_names), "fingerprint": fingerprint,
            "source": source, "splits": list(arrays.splits),
            "files": ({k: list(v) for k, v in arrays.files.items()}
                      if arrays.files is not None else None),
            "skipped": [{"path": f.path, "reason": f.reason, "kind": f.kind}
                        for f in arrays.skipped],
            "warnings": list(arrays.warnings)}
    blobs = {"x_train": arrays.x_train, "y_train": arrays.y_train, "x_test": arrays.x_test,
             "y_test": arrays.y_test,
             "meta": np.frombuffer(json.dumps(meta).encode("ascii"), dtype=np.uint8)}
    if arrays.x_val is not None:
        blobs.update(x_val=arrays.x_val, y_val=arrays.y_val)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **blobs)


def _named_source(name: str, cache_dir: Path) -> Source | None:
    """The download behind a name such as "cifar100", unless a path of that name exists."""
    kind = DOWNLOAD_NAMES.get(name.strip().lower())
    if kind is None or Path(name).expanduser().exists():
        return None
    if kind == "archive":
        return Source(kind, download_archive(cache_dir))
    return Source(kind, download_cifar100(cache_dir))


def resolve_source(data: str | os.PathLike[str] | None, cache_dir: Path) -> Source:
    """Pick the source: explicit path (or "cifar10" / "cifar100": the official download),
    then ``$CIFAR_CNN_DATA``, then the official CIFAR-10 download."""
    if data is None and os.environ.get(DATA_ENV):
        data = os.environ[DATA_ENV]
    if data is None:
        return Source("archive", download_archive(cache_dir))
    named = _named_source(str(os.fspath(data)), cache_dir)
    return named if named is not None else detect_source(data)


def _check_settings(image_size: int, resize: str, val_split: float, max_pixels: int) -> None:
    check_resize(resize)
    if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer) \
            or image_size < 1:
        raise ConfigError(f"image_size must be a positive whole number of pixels. "
                          f"Received: image_size={image_size!r}")
    if not 0.0 <= val_split < 1.0:
        raise ConfigError(f"val_split must be at least 0 and less than 1. Received: "
                          f"val_split={val_split!r}")
    if max_pixels < 1:
        raise ConfigError(f"max_pixels must be positive. Received: max_pixels={max_pixels!r}")


def _strict_error(unreadable: list[SkippedFile], root: str) -> DataError:
    listed = "\n".join(f"  {s}" for s in unreadable[:_STRICT_LISTED])
    more = (f"\n  ... and {len(unreadable) - _STRICT_LISTED} more"
            if len(unreadable) > _STRICT_LISTED else "")
    return DataError(
        f"{len(unreadable)} image file(s) under {root} cannot be read:\n{listed}{more}\n"
        "Replace or remove them, or load without strict to skip them.")


def _hold_out(arrays: Arrays, val_split: float, seed: int,
              notes: list[str]) -> tuple[Arrays, dict[str, Any] | None]:
    """Hold the validation split out of the training images of a source that has neither
    a validation nor a test split."""
    if val_split <= 0 or arrays.splits != ("train",):
        return arrays, None
    keep, held = stratified_holdout(arrays.y_train, val_split, seed=seed)
    if not len(held):
        notes.append("no image could be held out for validation: every class has a "
                     "single training image. Add images, or a val/ folder.")
        return arrays, None
    files = dict(arrays.files or {})
    if "train" in files:
        names = files["train"]
        files["train"] = tuple(names[i] for i in keep)
        files["val"] = tuple(names[i] for i in held)
    record = {"method": "stratified", "val_split": float(val_split), "seed": int(seed),
              "num_images": len(held),
              "files_sha256": hashlib.sha256("\n".join(files.get("val", ())).encode(
                  "utf-8", "surrogateescape")).hexdigest()}
    return Arrays(arrays.x_train[keep], arrays.y_train[keep], arrays.x_test, arrays.y_test,
                  arrays.class_names, arrays.x_train[held], arrays.y_train[held],
                  files or None, arrays.skipped, arrays.warnings,
                  ("train", "val")), record


@dataclass(frozen=True)
class DataInfo:
    """What a run decides from before the images are decoded (see `inspect_data`).

    Attributes:
        kind: the source's kind ("archive", "folders", "flat", ...), or "arrays".
        class_names: the classes in label order (empty for a CIFAR archive not yet read).
        short_sides: the short sides, in pixels, of a sample of a folder's training images
            (empty for other sources).
        image_side: the side of arrays that come at one size (CIFAR, in-memory arrays).
    """

    kind: str
    class_names: tuple[str, ...] = ()
    short_sides: tuple[int, ...] = ()
    image_side: int | None = None

    @property
    def is_cifar(self) -> bool:
        """CIFAR-10 or CIFAR-100 from its archive or batches."""
        return self.kind not in FOLDER_KINDS and self.kind != "arrays"


def inspect_data(data: str | os.PathLike[str] | CifarData | None = None, *,
                 cache_dir: str | os.PathLike[str] | None = None) -> DataInfo:
    """The kind, classes and image sizes of `data` (as `load_dataset` takes it), from a
    folder's listing and image headers: no image is decoded.

    Raises:
        DataError: as `load_dataset`, for data that cannot be found or has no classes.
    """
    if isinstance(data, CifarData):
        return DataInfo("arrays", data.class_names, image_side=int(data.x_train.shape[1]))
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    source = resolve_source(data, cache)
    if source.kind not in FOLDER_KINDS:
        return DataInfo(source.kind, image_side=32)
    listing = source.scan()
    return DataInfo(source.kind, listing.class_names, tuple(short_sides(listing)))


def load_dataset(
    data: str | os.PathLike[str] | CifarData | None = None,
    *,
    image_size: int = 32,
    resize: str = DEFAULT_RESIZE,
    strict: bool = False,
    val_split: float = 0.2,
    seed: int = 0,
    max_pixels: int = MAX_PIXELS,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    workers: int | None = None,
) -> CifarData:
    """Load any supported dataset as uint8 arrays of ``image_size`` x ``image_size`` pixels.

    Args:
        data: one of
            - a folder of images, ``DIR/train/<class>/`` with optional
              ``DIR/val|valid|validation/<class>/`` and ``DIR/test/<class>/``, or a flat
              ``DIR/<class>/``: images of any size and format (EXIF rotation applied, any
              mode converted to RGB, alpha over white), brought to `image_size` with
              `resize`. Classes are the sorted training folder names; hidden and non-image
              files are skipped and counted, unreadable images skipped and listed;
            - the official CIFAR-10 archive, its extracted batches, or a folder holding it;
            - the CIFAR-100 archive ``cifar-100-python.tar.gz``, its extracted
              ``cifar-100-python/`` folder, or a folder holding either (fine labels);
            - ``"cifar10"`` or ``"cifar100"``: the official archive, downloaded once into
              the cache and checked against its SHA-256;
            - ``None``: ``$CIFAR_CNN_DATA``, else the CIFAR-10 download;
            - a `CifarData`, returned as is.
        image_size: side of the square images, in pixels.
        resize: how images of another shape are brought to it: "crop", "squish" or "pad"
            (see `cifar_cnn.images.RESIZE_POLICIES`).
        strict: make unreadable (truncated, corrupt, too large) images an error instead of
            skipping them.
        val_split: for data with neither a validation nor a test split (a flat
            ``DIR/<class>/`` or a lone ``DIR/train/``): the fraction of each class held out
            as the validation split (stratified, seeded; see
            `cifar_cnn.data.split.stratified_holdout`). 0 holds nothing out.
        seed: seed of that hold-out.
        max_pixels: images with more pixels are skipped (as unreadable) before decoding.
        cache_dir: where downloads and decoded arrays are cached (see `default_cache_dir`).
        use_cache: read and write the decoded-array cache (keyed by the files' names,
            sizes and modification times, `image_size`, `resize` and `max_pixels`).
        workers: decoding threads (default: two per usable core).

    Returns:
        A `CifarData` with `summary` (print ``ds.summary.table()``), and for folder data
        `files` and, after a hold-out, `holdout`.

    Raises:
        DataError: no data could be found, the source is corrupt, a class problem (no class
            folder, a single class, a class without training images, a val/test class that
            training lacks), or with `strict`, unreadable images; the message names the
            folder or file and what to do.
        ConfigError: an invalid setting.

    Warns:
        DataWarning: a class missing from the val or test folder, and similar (also in
            ``summary.warnings``).
    """
    if isinstance(data, CifarData):
        return data
    _check_settings(image_size, resize, val_split, max_pixels)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    source = resolve_source(data, cache)
    listing = source.scan() if source.kind in FOLDER_KINDS else None
    if listing is not None:
        key = listing.key(_CACHE_FORMAT, image_size, resize, max_pixels)
    else:  # CIFAR arrays: resize matters only when they are resized
        key = _source_key(source, image_size, resize if image_size != 32 else "")
    cache_file = cache / "arrays" / f"{source.kind}-{key}.npz"
    description = f"{source.kind}:{source.path}"
    cached = _load_cached(cache_file) if use_cache and cache_file.is_file() else None
    if cached is not None:
        arrays, fingerprint, description = cached
    else:
        arrays = source.read(image_size=image_size, resize=resize, max_pixels=max_pixels,
                             workers=workers, listing=listing)
        fingerprint = fingerprint_arrays(arrays.x_train, arrays.y_train, arrays.x_test,
                                         arrays.y_test, arrays.x_val, arrays.y_val)
        if use_cache:
            with contextlib.suppress(OSError):  # a read-only or full cache must not stop
                _save_cached(cache_file, arrays, fingerprint, description)
    unreadable = [s for s in arrays.skipped if s.kind == "unreadable"]
    if strict and unreadable:
        raise _strict_error(unreadable, str(source.path))
    notes = list(arrays.warnings)
    arrays, holdout = _hold_out(arrays, val_split, seed, notes)
    n = len(arrays.class_names)
    counts = {s: tuple(int(c) for c in np.bincount(y, minlength=n)[:n])
              for s, y in (("train", arrays.y_train), ("val", arrays.y_val),
                           ("test", arrays.y_test)) if s in arrays.splits}
    summary = DataSummary(description, source.kind, arrays.class_names, counts,
                          arrays.skipped, tuple(notes), image_size, resize, holdout)
    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=2)
    return CifarData(arrays.x_train, arrays.y_train, arrays.x_test, arrays.y_test,
                     arrays.class_names, fingerprint if holdout is None else {},
                     description, arrays.x_val, arrays.y_val, summary, arrays.files, holdout)


def load_cifar10(
    data: str | os.PathLike[str] | CifarData | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    **options: Any,
) -> CifarData:
    """Load CIFAR-10 (or any dataset `load_dataset` reads) as uint8 arrays.

    The same as `load_dataset`, whose keyword options (``image_size``, ``resize``,
    ``strict``, ``val_split``, ``seed``, ``max_pixels``, ``workers``) it passes on.

    Args:
        data: the official archive, its extracted batches, a ``train/<class>/`` +
            ``test/<class>/`` tree of images, or any other source `load_dataset` takes.
            ``None`` uses ``$CIFAR_CNN_DATA`` and then downloads the official archive once
            (hash-checked). A ``CifarData`` is returned as is.
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
    return load_dataset(data, cache_dir=cache_dir, use_cache=use_cache, **options)


def load_run_data(card: ModelCard, data: str | os.PathLike[str] | CifarData | None = None
                  ) -> CifarData:
    """The data of a trained model, loaded as training loaded it (image size, resize
    policy, hold-out): `data` if given, else the data its card recorded (see
    `cifar_cnn.card.ModelCard.recorded_data`). The one loader of evaluate, export and
    resume."""
    return load_dataset(card.recorded_data(data), image_size=card.input.height,
                        resize=card.input.resize,
                        strict=bool(card.settings.get("strict", False)),
                        val_split=float(card.settings.get("val_split", 0.2)),
                        seed=card.seed)
