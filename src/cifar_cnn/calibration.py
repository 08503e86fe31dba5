"""Confidence calibration: expected calibration error, reliability bins and temperature scaling.

A classifier is *calibrated* when, among the images it labels with confidence ``p``, a fraction
``p`` is correct. These helpers measure that (ECE, reliability bins) and fix the most common
miscalibration of CNNs, over-confidence, with a single scalar temperature fitted on held-out
data (Guo et al., 2017, "On Calibration of Modern Neural Networks").

The one module of calibration: fitting (`calibrate_model`), applying (`apply_temperature`),
and what is kept of it, `Calibration`: a run's ``calibration.json`` (`read_calibration`,
`write_calibration`) and the model card's ``"calibration"`` entry. Everything here is pure
numpy/scipy so it can run without TensorFlow; `calibrate_model` runs a model given to it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from cifar_cnn.errors import RunError
from cifar_cnn.files import read_json, write_json
from cifar_cnn.tta import TTA_MODES, predict_probs

# Probabilities are clipped to this before taking logs, so a hard 0 does not become -inf.
PROB_FLOOR = 1e-12

# Search range for the temperature, as log T: T in [exp(-5), exp(5)] ~ [0.0067, 148].
_LOG_T_BOUNDS = (-5.0, 5.0)


def validate_probs_and_labels(probs: Any, y_true: Any) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert a (probabilities, labels) pair.

    The one check of this pair: public entry points (`expected_calibration_error`,
    `cifar_cnn.evaluation.metrics.classification_metrics`, `cifar_cnn.evaluate`, ...) call it
    once; what they call next is passed ``check_input=False`` and trusts the arrays.

    Args:
        probs: class probabilities, shape ``(N, C)``.
        y_true: integer labels, shape ``(N,)`` (Keras-style ``(N, 1)`` is accepted and
            flattened).

    Returns:
        ``(probs, y_true)`` as float64 ``(N, C)`` and int64 ``(N,)`` arrays.

    Raises:
        ValueError: on wrong shapes, lengths, non-finite or negative probabilities,
            non-integer labels or labels outside ``[0, C)``.
    """
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[1] < 1:
        raise ValueError(f"probs must be a 2-D array of shape (N, C); received shape {p.shape}.")
    if p.shape[0] == 0:
        raise ValueError("probs must contain at least one row; received shape (0, C).")
    if not np.issubdtype(p.dtype, np.number) or np.issubdtype(p.dtype, np.complexfloating):
        raise ValueError(f"probs must be a real numeric array; received dtype {p.dtype}.")
    p = p.astype(np.float64, copy=False)
    if not np.all(np.isfinite(p)):
        raise ValueError("probs must be finite; received NaN or infinite values.")
    if np.any(p < 0):
        raise ValueError(f"probs must be non-negative; received a minimum of {p.min():.6g}.")

    y = np.asarray(y_true)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"y_true must be a 1-D array of integer labels of shape (N,); "
            f"received shape {np.asarray(y_true).shape}."
        )
    if y.shape[0] != p.shape[0]:
        raise ValueError(
            f"y_true and probs must have the same number of rows; received {y.shape[0]} "
            f"labels and {p.shape[0]} probability rows."
        )
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError("y_true must contain integer class labels; received non-integers.")
    elif not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y_true must contain integer class labels; received dtype {y.dtype}.")
    y = y.astype(np.int64)
    num_classes = p.shape[1]
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(
            f"y_true labels must lie in [0, {num_classes}) for probs with {num_classes} "
            f"columns; received labels from {y.min()} to {y.max()}."
        )
    return p, y


def _check_n_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; received {n_bins!r}.")
    return int(n_bins)


def _bin_stats(
    probs: Any, y_true: Any, n_bins: int, check_input: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(edges, correct_sum, confidence_sum, count)`` per equal-width bin on (0, 1]."""
    p, y = validate_probs_and_labels(probs, y_true) if check_input else (probs, y_true)
    n_bins = _check_n_bins(n_bins)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin i holds confidences in (edges[i], edges[i + 1]]; anything <= 0 goes to the first bin
    # and anything > 1 (rows that sum to slightly more than 1) to the last.
    idx = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    correct_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    confidence_sum = np.bincount(idx, weights=confidence, minlength=n_bins)
    return edges, correct_sum, confidence_sum, count


def _ece(correct_sum: np.ndarray, confidence_sum: np.ndarray, count: np.ndarray) -> float:
    return float(np.abs(correct_sum - confidence_sum).sum() / count.sum())


def expected_calibration_error(
    probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15, *, check_input: bool = True
) -> float:
    """Expected calibration error of the top-1 prediction.

    Confidences (the max probability of each row) are grouped into ``n_bins`` equal-width bins
    on (0, 1]; ECE is ``sum_b |accuracy_b - confidence_b| * count_b / N``.

    Args:
        probs: class probabilities, shape ``(N, C)``.
        y_true: integer labels, shape ``(N,)``.
        n_bins: number of confidence bins.
        check_input: False skips `validate_probs_and_labels`, for callers that ran it.

    Returns:
        The ECE as a float in ``[0, 1]``.
    """
    _, correct_sum, confidence_sum, count = _bin_stats(probs, y_true, n_bins, check_input)
    return _ece(correct_sum, confidence_sum, count)


def reliability_bins(
    probs: Any, y_true: Any, n_bins: int = 15, *, check_input: bool = True
) -> dict[str, Any]:
    """Per-bin accuracy and mean confidence, the data behind a reliability diagram.

    Args:
        probs: class probabilities, shape ``(N, C)``.
        y_true: integer labels, shape ``(N,)``.
        n_bins: number of equal-width confidence bins on (0, 1].
        check_input: False skips `validate_probs_and_labels`, for callers that ran it.

    Returns:
        A JSON-serialisable dict with lists ``bin_edges`` (``n_bins + 1`` floats),
        ``accuracy``, ``confidence`` (``n_bins`` floats, ``None`` for empty bins) and
        ``count`` (``n_bins`` ints), and ``ece``: the `expected_calibration_error` of these
        bins (the same float).
    """
    edges, correct_sum, confidence_sum, count = _bin_stats(probs, y_true, n_bins, check_input)
    accuracy: list[float | None] = []
    confidence: list[float | None] = []
    for c_sum, conf_sum, n in zip(correct_sum, confidence_sum, count, strict=True):
        accuracy.append(float(c_sum / n) if n > 0 else None)
        confidence.append(float(conf_sum / n) if n > 0 else None)
    return {
        "bin_edges": [float(e) for e in edges],
        "accuracy": accuracy,
        "confidence": confidence,
        "count": [int(n) for n in count],
        "ece": _ece(correct_sum, confidence_sum, count),
    }


def _log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probs, PROB_FLOOR, None))


def fit_temperature(probs: np.ndarray, y_true: np.ndarray, *, check_input: bool = True) -> float:
    """Fit the temperature that minimises the negative log-likelihood of the labels.

    Uses ``log(probs)`` as logits (softmax is shift-invariant, so this recovers the logits up to
    a per-row constant) and minimises ``NLL(softmax(logits / T))`` over ``log T`` with a
    bounded scalar search. Fit on a validation split, not on the test set you report.

    Args:
        probs: class probabilities, shape ``(N, C)``.
        y_true: integer labels, shape ``(N,)``.
        check_input: False skips `validate_probs_and_labels`, for callers that ran it.

    Returns:
        The temperature ``T > 0``; ``T > 1`` softens over-confident predictions.
    """
    p, y = validate_probs_and_labels(probs, y_true) if check_input else (probs, y_true)
    logits = _log_probs(p)
    true_logit = logits[np.arange(len(y)), y]

    def nll(log_t: float) -> float:
        inv_t = np.exp(-log_t)
        return float(np.mean(logsumexp(logits * inv_t, axis=1) - true_logit * inv_t))

    result = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-5})
    return float(np.exp(result.x))


def apply_temperature(
    probs: np.ndarray, temperature: float, *, check_input: bool = True
) -> np.ndarray:
    """Rescale probabilities with a temperature: ``softmax(log(probs) / T)``.

    Args:
        probs: class probabilities, shape ``(N, C)``.
        temperature: ``T > 0``, e.g. from :func:`fit_temperature`.
        check_input: False skips the checks of ``probs`` (not of ``T``), for callers that
            ran `validate_probs_and_labels`.

    Returns:
        float64 array of shape ``(N, C)`` whose rows sum to 1.

    Raises:
        ValueError: if ``probs`` is not a valid ``(N, C)`` array or ``T`` is not a finite
            positive number.
    """
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(
            f"temperature must be a finite positive number; received {temperature!r}."
        ) from None
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be a finite positive number; received {temperature!r}.")
    p = np.asarray(probs)
    if check_input and (p.ndim != 2 or p.shape[1] < 1):
        raise ValueError(f"probs must be a 2-D array of shape (N, C); received shape {p.shape}.")
    p = p.astype(np.float64)
    if check_input and (not np.all(np.isfinite(p)) or np.any(p < 0)):
        raise ValueError("probs must be finite and non-negative.")
    scaled = _log_probs(p) / t
    scaled -= scaled.max(axis=1, keepdims=True)
    out = np.exp(scaled)
    out /= out.sum(axis=1, keepdims=True)
    return out


def tta_key(tta: str | None) -> str:
    """The key of a test-time augmentation mode in calibration.json ("none" for None)."""
    return tta or "none"


def fit_calibration(probs_by_tta: dict[str | None, np.ndarray], y_true: np.ndarray,
                    n_bins: int = 15) -> dict[str, dict[str, float]]:
    """A temperature per test-time augmentation mode, with the ECE before and after it.

    TTA averages probabilities over views, which softens them, so each mode gets its own
    temperature. The result is what a run's calibration.json holds under "modes".
    """
    out = {}
    for mode, probs in probs_by_tta.items():
        p, y = validate_probs_and_labels(probs, y_true)
        t = fit_temperature(p, y, check_input=False)
        calibrated = apply_temperature(p, t, check_input=False)
        out[tta_key(mode)] = {
            "temperature": t,
            "ece_raw": expected_calibration_error(p, y, n_bins, check_input=False),
            "ece_calibrated": expected_calibration_error(calibrated, y, n_bins,
                                                         check_input=False),
        }
    return out


def calibrate_model(model: Any, x: np.ndarray, y: np.ndarray, *, fit_on: str,
                    seed: int | None = None,
                    modes: tuple[str | None, ...] | None = None) -> dict[str, Any]:
    """Fit a temperature for every TTA mode of a model on held-out images.

    Args:
        model: anything `cifar_cnn.tta.predict_probs` runs (a Keras model).
        x, y: the held-out uint8 images and their labels.
        fit_on: what the images are ("calibration split", "validation split").
        seed: the seed that chose them, recorded.
        modes: the TTA modes to fit (default: none and every mode of `TTA_MODES`).

    Returns:
        The temperatures and their ECE before and after, with what they were fitted on.
    """
    t0 = time.perf_counter()
    fitted = fit_calibration({m: predict_probs(model, x, tta=m)
                              for m in (modes or (None, *TTA_MODES))}, y)
    return Calibration.from_dict({"fit_on": fit_on, "num_images": len(y), "seed": seed,
                                  "modes": fitted,
                                  "seconds": round(time.perf_counter() - t0, 3)})


@dataclass(frozen=True)
class Calibration:
    """Temperature scaling fitted after training, one temperature per TTA mode.

    Attributes:
        temperatures: TTA key ("none", "flip", "flip_translate") -> temperature.
        fit_on: the images it was fitted on ("calibration split", "validation split").
        num_images: how many.
        ece: TTA key -> ``{"ece_raw", "ece_calibrated"}`` on those images.
        seed: the seed that chose them. seconds: how long fitting took.
    """

    temperatures: Mapping[str, float]
    fit_on: str = "validation split"
    num_images: int | None = None
    ece: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    seed: int | None = None
    seconds: float | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        """From calibration.json or the card's ``"calibration"`` entry; files from before
        per-mode calibration held one ``temperature``, read as every mode's.

        Raises:
            KeyError, TypeError, ValueError: for a malformed entry.
        """
        if "modes" not in d:
            t = float(d["temperature"])
            modes: Mapping[str, Mapping[str, Any]] = {
                k: {"temperature": t} for k in ("none", "flip", "flip_translate")}
        else:
            modes = d["modes"]
        return cls({k: float(v["temperature"]) for k, v in modes.items()},
                   d.get("fit_on", "validation split"), d.get("num_images"),
                   {k: {e: float(v[e]) for e in ("ece_raw", "ece_calibrated") if e in v}
                    for k, v in modes.items()}, d.get("seed"), d.get("seconds"))

    def to_dict(self) -> dict[str, Any]:
        """The calibration.json form (the card's too)."""
        d: dict[str, Any] = {"fit_on": self.fit_on, "num_images": self.num_images,
                             "seed": self.seed}
        d["modes"] = {k: {"temperature": t, **self.ece.get(k, {})}
                      for k, t in self.temperatures.items()}
        if self.seconds is not None:
            d["seconds"] = self.seconds
        return d


def read_calibration(path: str | os.PathLike[str]) -> Calibration | None:
    """A run's calibration.json (`cifar_cnn.runs.RunDir.calibration`), or None if there is
    none.

    Raises:
        RunError: if the file is unreadable or holds no temperature.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return Calibration.from_dict(read_json(path))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunError(f"{path} is unreadable ({type(e).__name__}: {e}); delete it to use "
                       "uncalibrated probabilities.") from e


def write_calibration(path: str | os.PathLike[str], calibration: Calibration) -> None:
    """Write a run's calibration.json (`Calibration.to_dict`), whole or not at all."""
    write_json(Path(path), calibration.to_dict())
