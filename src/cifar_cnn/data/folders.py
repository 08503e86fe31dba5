"""Image-folder datasets: ``DIR/train/<class>/`` (with optional ``val|valid|validation``
and ``test`` folders beside it) or a flat ``DIR/<class>/``; images of any size and format.

`scan_folders` lists the files (one ``os.scandir`` per folder) and checks the classes;
`decode_listing` opens every image in a thread pool through `cifar_cnn.images` (EXIF
rotation, RGB, pixel limit, resize policy) and skips, with the reason, what cannot be read.
"""

from __future__ import annotations

import hashlib
import os
import stat
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar_cnn.data.summary import SkippedFile
from cifar_cnn.errors import DataError
from cifar_cnn.images import IMAGE_SUFFIXES, MAX_PIXELS, prepare_image, try_load_image

# Folder names (any case) of each split of the ``DIR/train/<class>/`` layout.
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"),
                 "test": ("test",)}
_CHUNK = 32  # images per task of the decoding pool


def label_dtype(num_classes: int) -> type[np.integer]:
    """uint8 labels (as CIFAR-10's) up to 256 classes, else int32."""
    return np.uint8 if num_classes <= 256 else np.int32


def default_workers() -> int:
    """Decoding threads: two per usable CPU core (Pillow releases the GIL), 2 to 32."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(2, min(32, 2 * cores))


@dataclass(frozen=True)
class Listing:
    """The image files of a folder dataset, before decoding.

    Attributes:
        root: the data root; every path below is relative to it, with ``/``.
        layout: "folders" or "flat".
        class_names: sorted class folder names of the training split.
        files: split -> ``(label, path, size, mtime_ns)`` in load order (class, then
            byte-wise path inside the class folder); only the splits the data has.
        folders: split -> its folder relative to the root ("" for a flat layout).
        skipped: entries not used (hidden, not images, outside class folders).
        warnings: problems found while listing.
    """

    root: Path
    layout: str
    class_names: tuple[str, ...]
    files: dict[str, tuple[tuple[int, str, int, int], ...]]
    folders: dict[str, str]
    skipped: tuple[SkippedFile, ...]
    warnings: tuple[str, ...]

    def key(self, *parts: object) -> str:
        """Hash of the layout, every listed name with its size and modification time, and
        `parts` (the decoding settings): the decoded-array cache's key."""
        h = hashlib.sha256("|".join(map(str, (self.layout, self.root, *parts))).encode())
        for split, files in sorted(self.files.items()):
            h.update(f"\n[{split}:{self.folders[split]}]\n".encode())
            h.update("\n".join(f"{lab}|{rel}|{size}|{mtime}"
                               for lab, rel, size, mtime in files).encode("utf-8",
                                                                          "surrogateescape"))
        h.update("\n".join(f"{s.kind}|{s.path}" for s in self.skipped).encode(
            "utf-8", "surrogateescape"))
        return h.hexdigest()[:24]


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError as e:
        raise DataError(f"{folder} cannot be read ({e.strerror or e}); check that it exists "
                        "and that you may read it.") from e


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _class_files(class_dir: Path, rel: str,
                 skipped: list[SkippedFile]) -> list[tuple[str, int, int]]:
    """``(path, size, mtime_ns)`` of the image files under `class_dir` (recursively), in
    byte-wise order of their path inside it; everything else goes to `skipped`."""
    found: list[tuple[bytes, str, int, int]] = []
    seen: set[tuple[int, int]] = set()
    stack = [(class_dir, "")]
    while stack:
        folder, sub = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as e:
            skipped.append(SkippedFile(_join(rel, sub), f"folder cannot be read "
                                       f"({e.strerror or e})", "unreadable"))
            continue
        for e in entries:
            inner = f"{sub}/{e.name}" if sub else e.name
            if _is_hidden(e.name):
                what = "folder" if _is_dir(e) else "file"
                skipped.append(SkippedFile(_join(rel, inner), f"hidden {what} (name starts "
                                           "with '.')", "hidden"))
                continue
            if _is_dir(e):
                st = e.stat()
                if (st.st_dev, st.st_ino) not in seen:  # a symlink loop is walked once
                    seen.add((st.st_dev, st.st_ino))
                    stack.append((Path(e.path), inner))
                continue
            suffix = os.path.splitext(e.name)[1].lower()
            if suffix not in IMAGE_SUFFIXES:
                skipped.append(SkippedFile(_join(rel, inner), "not an image file (its name "
                                           f"ends in {suffix or 'no extension'!r})",
                                           "not-image"))
                continue
            try:
                st = e.stat()
            except OSError as err:  # e.g. a broken symlink
                skipped.append(SkippedFile(_join(rel, inner), f"cannot be read "
                                           f"({err.strerror or err})", "unreadable"))
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped.append(SkippedFile(_join(rel, inner), "not a regular file", "other"))
                continue
            found.append((os.fsencode(inner), inner, st.st_size, st.st_mtime_ns))
    found.sort()
    return [(_join(rel, inner), size, mtime) for _, inner, size, mtime in found]


def _class_dirs(folder: Path, rel: str, skipped: list[SkippedFile]) -> dict[str, Path]:
    """Class name -> folder, for the non-hidden folders of `folder`; its files and hidden
    entries go to `skipped`."""
    classes = {}
    for e in _entries(folder):
        path = _join(rel, e.name)
        if _is_hidden(e.name):
            what = "folder" if _is_dir(e) else "file"
            skipped.append(SkippedFile(path, f"hidden {what} (name starts with '.')", "hidden"))
        elif _is_dir(e):
            classes[e.name] = Path(e.path)
        else:
            skipped.append(SkippedFile(path, "not inside a class folder", "outside-class"))
    return classes


def split_folders(root: Path) -> dict[str, str]:
    """Split -> folder name of the ``train/``-style layout found in `root` (any case).

    Raises:
        DataError: if two folders name the same split (e.g. val/ and validation/).
    """
    found: dict[str, list[str]] = {}
    for e in _entries(root):
        if not _is_hidden(e.name) and _is_dir(e):
            for split, names in SPLIT_FOLDERS.items():
                if e.name.lower() in names:
                    found.setdefault(split, []).append(e.name)
    for split, names in found.items():
        if len(names) > 1:
            raise DataError(f"{root} has several {split} folders ({', '.join(sorted(names))});"
                            f" keep one and rename or remove the others.")
    return {split: names[0] for split, names in found.items()}


def scan_folders(root: Path, layout: str) -> Listing:
    """List an image-folder dataset and check its classes.

    Classes are the sorted folder names of the training folder (the root for a flat
    layout); the other splits' folders are mapped to them by name.

    Raises:
        DataError: no class folder, a single class, a class without any training image, or
            a val/test class that training lacks.
    """
    skipped: list[SkippedFile] = []
    warnings: list[str] = []
    if layout == "flat":
        folders = {"train": ""}
    else:
        folders = split_folders(root)
        for e in _entries(root):
            if (not _is_hidden(e.name) and _is_dir(e)
                    and e.name not in folders.values()):
                skipped.append(SkippedFile(e.name, "not a split folder (train, val, valid, "
                                           "validation or test); not read", "other"))
                warnings.append(f"{root / e.name} is not a split folder (train, val, valid, "
                                "validation or test) and was not read; move its class "
                                "folders into train/ if it holds training images.")
    train_dir = root / folders["train"]
    train_classes = _class_dirs(train_dir, folders["train"], skipped)
    where = f"{train_dir}/<class>/" if layout != "flat" else f"{root}/<class>/"
    if not train_classes:
        raise DataError(f"{train_dir} has no class folders. Put each class's images in a "
                        f"folder named after the class ({where}), e.g. {train_dir / 'cat'} "
                        f"and {train_dir / 'dog'}.")
    if len(train_classes) == 1:
        (only,) = train_classes
        raise DataError(f"{train_dir} has a single class folder ({only}); a classifier needs "
                        f"at least two classes. Add a folder of images for each class "
                        f"({where}).")
    class_names = tuple(sorted(train_classes))
    index = {name: i for i, name in enumerate(class_names)}
    files: dict[str, tuple[tuple[int, str, int, int], ...]] = {}
    for split in ("train", "val", "test"):
        if split not in folders:
            continue
        rel = folders[split]
        classes = (train_classes if split == "train"
                   else _class_dirs(root / rel, rel, skipped))
        extra = sorted(set(classes) - set(index))
        if extra:
            raise DataError(
                f"{root / rel} has class folder(s) {', '.join(extra)} that "
                f"{train_dir} lacks; classes come from the training folders. Add "
                f"training images in {train_dir}/<class>/ for them, or rename or remove "
                f"those folders of {rel}/.")
        per_class = {name: _class_files(classes[name], _join(rel, name), skipped)
                     for name in sorted(classes)}
        empty = [name for name in class_names if not per_class.get(name)]
        if split == "train" and empty:
            raise DataError(
                f"{train_dir} has no training images for class(es) "
                f"{', '.join(empty)} (in {', '.join(str(train_dir / n) for n in empty)}). "
                f"Add images (any of {', '.join(sorted(IMAGE_SUFFIXES))}) or remove the "
                "folder(s).")
        if split != "train":
            if len(empty) == len(class_names):
                warnings.append(f"{root / rel} holds no images in class folders; it is not "
                                f"used as the {split} split.")
                continue
            if empty:
                warnings.append(f"{root / rel} has no images of class(es) {', '.join(empty)};"
                                f" the {split} results will not cover them.")
        files[split] = tuple((index[name], path, size, mtime)
                             for name in class_names
                             for path, size, mtime in per_class.get(name, ()))
    return Listing(root, layout, class_names, files, folders, tuple(skipped), tuple(warnings))


def _run_chunks(n: int, work: Callable[[int, int], None], workers: int) -> None:
    if n <= _CHUNK or workers <= 1:
        work(0, n)
        return
    from PIL import Image

    Image.init()  # load the format plugins once, before the threads race to
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(work, lo, min(lo + _CHUNK, n)) for lo in range(0, n, _CHUNK)]
        try:
            for f in futures:
                f.result()
        except BaseException:  # an error or Ctrl-C: do not decode the rest first
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def short_sides(listing: Listing, *, sample: int = 256, seed: int = 0) -> list[int]:
    """The short side, in pixels, of up to `sample` of the listed training images (chosen
    by `seed`), read from their headers without decoding; unreadable ones are left out."""
    from PIL import Image

    entries = listing.files.get("train", ())
    rng = np.random.default_rng(seed)
    picked = (rng.choice(len(entries), sample, replace=False) if len(entries) > sample
              else range(len(entries)))
    sides = []
    for i in sorted(picked):
        try:
            with warnings.catch_warnings():  # a header is read, nothing decoded
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(listing.root / entries[i][1]) as im:
                    sides.append(min(im.size))
        except Exception:  # the load lists unreadable files; not this
            continue
    return sides


def decode_files(root: Path, names: Sequence[str], image_size: int, *, resize: str = "crop",
                 max_pixels: int = MAX_PIXELS,
                 workers: int | None = None) -> tuple[np.ndarray, list[str | None]]:
    """Decode `names` (paths relative to `root`) into ``(N, S, S, 3)`` uint8 in a thread pool.

    Returns:
        The images (rows of unreadable files are left zero) and, per file, None or the
        reason it could not be read.
    """
    n = len(names)
    out = np.zeros((n, image_size, image_size, 3), np.uint8)
    reasons: list[str | None] = [None] * n
    size = (image_size, image_size)

    def work(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            a, why = try_load_image(root / names[i], size, max_pixels=max_pixels,
                                    resize=resize, name=names[i])
            if a is None:
                reasons[i] = why
            else:
                out[i] = a

    _run_chunks(n, work, workers or default_workers())
    return out, reasons


def resize_arrays(x: np.ndarray, image_size: int, *, resize: str = "crop",
                  workers: int | None = None) -> np.ndarray:
    """Bring uint8 images ``(N, H, W, 3)`` to ``(N, S, S, 3)`` with `prepare_image`."""
    if x.shape[1:3] == (image_size, image_size):
        return x
    from PIL import Image

    out = np.empty((len(x), image_size, image_size, 3), np.uint8)
    size = (image_size, image_size)

    def work(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            out[i] = prepare_image(Image.fromarray(x[i]), size, resize=resize)

    _run_chunks(len(x), work, workers or default_workers())
    return out


@dataclass(frozen=True)
class Decoded:
    """A decoded folder dataset: arrays per split, their files, what was skipped."""

    class_names: tuple[str, ...]
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    files: dict[str, tuple[str, ...]]
    skipped: tuple[SkippedFile, ...]
    warnings: tuple[str, ...]


def decode_listing(listing: Listing, image_size: int = 32, *, resize: str = "crop",
                   max_pixels: int = MAX_PIXELS, workers: int | None = None) -> Decoded:
    """Decode every listed image; unreadable ones are skipped with their reason.

    Raises:
        DataError: if a class is left without any readable training image.
    """
    skipped = list(listing.skipped)
    warnings = list(listing.warnings)
    xs, ys, files = {}, {}, {}
    dtype = label_dtype(len(listing.class_names))
    for split, entries in listing.files.items():
        names = [rel for _, rel, _, _ in entries]
        labels = np.array([lab for lab, _, _, _ in entries], dtype=dtype)
        x, reasons = decode_files(listing.root, names, image_size, resize=resize,
                                  max_pixels=max_pixels, workers=workers)
        ok = np.array([r is None for r in reasons], dtype=bool)
        bad = [SkippedFile(name, why, "unreadable")
               for name, why in zip(names, reasons, strict=True) if why is not None]
        skipped += bad
        if bad:
            x, labels = x[ok], labels[ok]
            names = [name for name, good in zip(names, ok, strict=True) if good]
        counts = np.bincount(labels, minlength=len(listing.class_names))
        lost = [c for c, n, before in zip(
            listing.class_names, counts,
            np.bincount([e[0] for e in entries], minlength=len(listing.class_names)),
            strict=True) if n == 0 and before > 0]
        folder = listing.root / listing.folders[split]
        if lost and split == "train":
            raise DataError(
                f"No training image of class(es) {', '.join(lost)} in {folder} could be "
                "read: " + "; ".join(str(s) for s in bad[:5]) + ". Replace those files "
                "with readable images.")
        if lost:
            warnings.append(f"{folder} has no readable images of class(es) "
                            f"{', '.join(lost)}; the {split} results will not cover them.")
        xs[split], ys[split], files[split] = x, labels, tuple(names)
    return Decoded(listing.class_names, xs, ys, files, tuple(skipped), tuple(warnings))
