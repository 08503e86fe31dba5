"""Test-time augmentation: class probabilities averaged over several views of each image.

Low in the package: training (to calibrate), evaluation and prediction all use it.

Each way of averaging is data, a `ViewSet`: weighted `View` s (the image shifted by a few
pixels with reflect padding, mirrored or not). `VIEW_SETS` holds the modes offered to users
(`TTA_MODES`: their calibration is fitted at training); `EXTRA_VIEW_SETS` holds wider ones
that benchmarks try before any user gets them. `view_probs` computes each distinct view's
probabilities once, and `ViewSet.combine` averages them, so several view sets that share
views cost the forward passes of their union.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from cifar_cnn.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class View:
    """One view of an image: shifted by (`dy`, `dx`) pixels, ``view[i, j] = image[i + dy,
    j + dx]`` with reflect padding, then mirrored left-right if `flip`."""

    flip: bool = False
    dy: int = 0
    dx: int = 0


MEANS = ("arithmetic", "geometric")


@dataclasses.dataclass(frozen=True)
class ViewSet:
    """Weighted views whose class probabilities are averaged.

    Attributes:
        views: ``(weight, View)`` pairs; distinct views, positive weights summing to 1.
        mean: "arithmetic" (of the probabilities) or "geometric" (a weighted mean of the
            log-probabilities, renormalised to probabilities).
        description: what the set is, in words.
    """

    views: tuple[tuple[float, View], ...]
    mean: str = "arithmetic"
    description: str = ""

    def __post_init__(self) -> None:
        if not self.views or len({v for _, v in self.views}) != len(self.views):
            raise ConfigError(f"A view set needs distinct views; received {self.views!r}.")
        weights = [w for w, _ in self.views]
        if min(weights) <= 0 or abs(sum(weights) - 1.0) > 1e-9:
            raise ConfigError(f"View weights must be positive and sum to 1; received {weights}.")
        if self.mean not in MEANS:
            raise ConfigError(f"mean must be one of {', '.join(MEANS)}; received {self.mean!r}.")

    @property
    def forward_passes(self) -> int:
        """Forward passes of the network per image."""
        return len(self.views)

    def combine(self, probs: Mapping[View, np.ndarray]) -> np.ndarray:
        """The set's probabilities from each view's (as `view_probs` returns them).

        Views of equal weight are summed first, pairwise (mirror pairs, then pairs of
        pairs), then scaled: for "flip" and "flip_translate" exactly the float operations of
        the formulas they had before they were tables.
        """
        def f(p: np.ndarray) -> np.ndarray:
            return np.log(np.clip(p, 1e-12, 1.0)) if self.mean == "geometric" else p

        groups: dict[float, list[np.ndarray]] = {}
        for w, view in self.views:
            groups.setdefault(w, []).append(f(probs[view]))
        total = sum(w * _pairwise_sum(group) for w, group in groups.items())
        if self.mean == "geometric":
            total = np.exp(total - total.max(axis=-1, keepdims=True))
            total /= total.sum(axis=-1, keepdims=True)
        return np.asarray(total)


def _pairwise_sum(arrays: Sequence[np.ndarray]) -> np.ndarray:
    if len(arrays) == 1:
        return arrays[0]
    half = len(arrays) // 2
    return _pairwise_sum(arrays[:half]) + _pairwise_sum(arrays[half:])


def mirror_pairs(shifts: Sequence[tuple[int, int]] = (), centre: float = 0.5, *,
                 mean: str = "arithmetic", description: str = "") -> ViewSet:
    """The image and its mirror image at weight `centre` (1 without `shifts`), the mirror
    pairs of the images shifted by each ``(dy, dx)`` of `shifts` sharing the rest equally."""
    centre = centre if shifts else 1.0
    pairs = [(centre, (0, 0))] + [((1.0 - centre) / len(shifts), s) for s in shifts]
    return ViewSet(tuple((w / 2, View(flip, dy, dx)) for w, (dy, dx) in pairs
                         for flip in (False, True)), mean=mean, description=description)


_RING8 = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))

# The modes offered to users (recipes' `tta`, --tta): each has its calibration fitted when a
# run is trained, so a new one changes every run's calibration.json.
VIEW_SETS: Mapping[str, ViewSet] = MappingProxyType({
    "flip": mirror_pairs(description="the image and its mirror image"),
    "flip_translate": mirror_pairs(
        ((-1, -1), (1, 1)), 0.5,
        description="as airbench, half the weight on the image and its mirror, a quarter "
                    "each on the mirror pairs of the image shifted one pixel up-left and "
                    "down-right (reflect padding). Six forward passes."),
})
TTA_MODES = tuple(VIEW_SETS)
# What a user may ask for, in the CLI and over HTTP alike: "default" is the model's own
# (its recipe's), "none" turns test-time augmentation off.
TTA_DEFAULT = "default"
TTA_CHOICES = (TTA_DEFAULT, "none", *TTA_MODES)

# Wider view sets tried by benchmarks (tta_views, ablation) before any user gets them; a
# name here is accepted by `predict_probs`, not by `tta_mode`.
EXTRA_VIEW_SETS: Mapping[str, ViewSet] = MappingProxyType({
    "flip_cross4": mirror_pairs(
        ((-1, 0), (1, 0), (0, -1), (0, 1)), 0.5,
        description="half on the mirror pair, half on the pairs shifted one pixel up, "
                    "down, left, right"),
    "flip_shift8": mirror_pairs(
        _RING8, 0.5, description="half on the mirror pair, half on the mirror pairs of "
                                 "the 8 one-pixel shifts"),
    "flip_shift8_equal": mirror_pairs(
        _RING8, 1 / 9, description="the mirror pairs of all 9 positions, equal"),
    "flip_shift24": mirror_pairs(
        tuple((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if (dy, dx) != (0, 0)),
        0.5, description="half on the mirror pair, half on all 24 shifts of up to 2 pixels"),
    "flip_translate_log": mirror_pairs(
        ((-1, -1), (1, 1)), 0.5, mean="geometric",
        description="flip_translate's views, geometric mean"),
    "flip_shift8_log": mirror_pairs(
        _RING8, 0.5, mean="geometric", description="flip_shift8's views, geometric mean"),
})


def tta_mode(tta: bool | str | None, default: str | None = None) -> str | None:
    """Resolve a ``tta`` argument: None or "default" -> `default`, True -> `default` or
    "flip", False or "none" -> None.

    Raises:
        ConfigError: for an unknown mode name.
    """
    if tta is None or tta == TTA_DEFAULT:
        return default
    if tta is True:
        return default or "flip"
    if tta is False or tta == "none":
        return None
    if tta not in TTA_MODES:
        raise ConfigError(f"Unknown test-time augmentation {tta!r}; choose from "
                         f"{', '.join(TTA_MODES)}, or False.")
    return tta


def view_set(tta: bool | str | ViewSet | None) -> ViewSet | None:
    """The `ViewSet` a ``tta`` argument names (a mode, or a name of `EXTRA_VIEW_SETS`), or
    None for no test-time augmentation.

    Raises:
        ConfigError: for an unknown name.
    """
    if isinstance(tta, ViewSet):
        return tta
    if isinstance(tta, str) and tta in EXTRA_VIEW_SETS:
        return EXTRA_VIEW_SETS[tta]
    mode = tta_mode(tta)
    return None if mode is None else VIEW_SETS[mode]


def _forward(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    if hasattr(model, "predict_on_batch") and len(x) <= batch_size:
        return np.asarray(model.predict_on_batch(x), dtype=np.float64)  # no per-call setup
    return model.predict(x, batch_size=batch_size, verbose=0).astype(np.float64)


def view_probs(model: Any, x: np.ndarray, views: Iterable[View], *,
               batch_size: int = 500) -> dict[View, np.ndarray]:
    """Class probabilities (float64) of each distinct view of a uint8 batch ``(N, H, W, 3)``:
    one forward pass per view, however often it is given."""
    distinct = list(dict.fromkeys(views))
    h, w = x.shape[1:3]
    m = max((max(abs(v.dy), abs(v.dx)) for v in distinct), default=0)
    padded = np.pad(x, ((0, 0), (m, m), (m, m), (0, 0)), mode="reflect") if m else x
    out = {}
    for v in distinct:
        image = x if v.dy == v.dx == 0 else np.ascontiguousarray(
            padded[:, m + v.dy:m + v.dy + h, m + v.dx:m + v.dx + w])
        if v.flip:
            image = np.ascontiguousarray(image[:, :, ::-1])
        out[v] = _forward(model, image, batch_size)
    return out


def predict_probs(model: Any, x: np.ndarray, *, tta: bool | str | ViewSet | None = None,
                  batch_size: int = 500) -> np.ndarray:
    """Class probabilities (float64) for a uint8 batch ``(N, H, W, 3)``.

    Test-time augmentation averages the probabilities of several views (`VIEW_SETS`):

    - ``"flip"`` (or True): the image and its mirror image.
    - ``"flip_translate"``: as airbench, half the weight on the image and its mirror, a quarter
      each on the mirror pairs of the image shifted one pixel up-left and down-right
      (reflect padding). Six forward passes.

    `tta` may also name a set of `EXTRA_VIEW_SETS` or be a `ViewSet`.
    """
    views = view_set(tta)
    if views is None:
        return _forward(model, x, batch_size)
    return views.combine(view_probs(model, x, (v for _, v in views.views),
                                    batch_size=batch_size))
