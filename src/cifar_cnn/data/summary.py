"""What a data load found: per-class counts of each split, skipped files and warnings."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

SPLITS = ("train", "val", "test")

# Why a file was not used (`SkippedFile.kind`), as the summary's table counts them.
SKIP_KINDS = {
    "unreadable": "unreadable",
    "not-image": "not an image file",
    "hidden": "hidden (name starts with '.')",
    "outside-class": "not inside a class folder",
    "other": "other",
}


class DataWarning(UserWarning):
    """Something about the data worth knowing that does not stop training (e.g. a class
    missing from the test folder)."""


@dataclass(frozen=True)
class SkippedFile:
    """A file or folder the load did not use.

    Attributes:
        path: relative to the data root, with ``/`` separators.
        reason: why, in words (for unreadable images: the decoder's reason).
        kind: a key of `SKIP_KINDS`.
    """

    path: str
    reason: str
    kind: str = "other"

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class DataSummary:
    """Per-class counts of a loaded dataset, what was skipped and why, and warnings.

    Attributes:
        source: where the data came from (as `CifarData.source`).
        layout: "archive", "batches", "cifar100-archive", "cifar100-batches", "folders"
            (``train/<class>/`` with optional val and test folders) or "flat" (``<class>/``).
        class_names: in label order.
        counts: split name ("train", "val", "test") -> images per class, in label order;
            only the splits the dataset has. "val" is the validation folder, or the images
            held out of training (see `holdout`).
        skipped: files not used (unreadable, not images, hidden, outside class folders).
        warnings: problems that did not stop the load (also issued as `DataWarning`).
        image_size: the side of the square images, in pixels.
        resize: the resize policy images of another size were brought to it with.
        holdout: how the validation split was held out of the training folder (see
            `CifarData.holdout`), or None.
    """

    source: str
    layout: str
    class_names: tuple[str, ...]
    counts: dict[str, tuple[int, ...]]
    skipped: tuple[SkippedFile, ...] = ()
    warnings: tuple[str, ...] = ()
    image_size: int = 32
    resize: str = "crop"
    holdout: dict[str, Any] | None = field(default=None)

    @property
    def unreadable(self) -> tuple[SkippedFile, ...]:
        """The image files that could not be decoded (truncated, corrupt, too large)."""
        return tuple(s for s in self.skipped if s.kind == "unreadable")

    def skipped_counts(self) -> dict[str, int]:
        """Number of skipped entries per `SkippedFile.kind`."""
        return dict(Counter(s.kind for s in self.skipped))

    def total(self, split: str) -> int:
        return sum(self.counts.get(split, ()))

    def table(self, max_skipped: int = 10) -> str:
        """A short text table: images per class and split, then skipped files and warnings.

        Args:
            max_skipped: list at most this many skipped files by name (all are counted).
        """
        splits = [s for s in SPLITS if s in self.counts]
        width = max([len("class"), len("total"), *(len(c) for c in self.class_names)])
        cols = [max(len(s), len(str(self.total(s)))) for s in splits]
        lines = [f"Data: {self.source} ({self.image_size}x{self.image_size}, "
                 f"resize {self.resize})",
                 "  ".join([f"{'class':<{width}}", *(f"{s:>{w}}" for s, w in zip(splits, cols,
                                                                                 strict=True))])]
        for i, name in enumerate(self.class_names):
            cells = [f"{self.counts[s][i]:>{w}}" for s, w in zip(splits, cols, strict=True)]
            lines.append("  ".join([f"{name:<{width}}", *cells]))
        lines.append("  ".join([f"{'total':<{width}}", *(
            f"{self.total(s):>{w}}" for s, w in zip(splits, cols, strict=True))]))
        if self.holdout:
            h = self.holdout
            lines.append(f"val: {h['num_images']} images held out of train "
                         f"(val_split={h['val_split']}, stratified, seed {h['seed']})")
        if self.skipped:
            kinds = ", ".join(f"{n} {SKIP_KINDS.get(k, k)}"
                              for k, n in sorted(self.skipped_counts().items()))
            lines.append(f"skipped {len(self.skipped)}: {kinds}")
            shown = sorted(self.skipped, key=lambda s: (s.kind != "unreadable", s.path))
            lines += [f"  {s}" for s in shown[:max_skipped]]
            if len(shown) > max_skipped:
                lines.append(f"  ... and {len(shown) - max_skipped} more")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record (for a run's metadata)."""
        return {"source": self.source, "layout": self.layout,
                "class_names": list(self.class_names),
                "counts": {s: list(c) for s, c in self.counts.items()},
                "skipped": [{"path": s.path, "reason": s.reason, "kind": s.kind}
                            for s in self.skipped],
                "warnings": list(self.warnings), "image_size": self.image_size,
                "resize": self.resize, "holdout": self.holdout}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSummary:
        """The inverse of `to_dict`."""
        return cls(d["source"], d["layout"], tuple(d["class_names"]),
                   {s: tuple(c) for s, c in d["counts"].items()},
                   tuple(SkippedFile(**s) for s in d.get("skipped", ())),
                   tuple(d.get("warnings", ())), d.get("image_size", 32),
                   d.get("resize", "crop"), d.get("holdout"))
