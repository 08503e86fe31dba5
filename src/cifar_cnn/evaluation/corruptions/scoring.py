"""Scoring a model on the corruptions: accuracy and calibration per corruption and
severity, per family, over the 15 benchmark corruptions and the held-out ones, and after
JPEG round trips at `JPEG_QUALITIES`; and the fixed-width table of the result."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from cifar_cnn.evaluation.corruptions.digital import jpeg_roundtrip
from cifar_cnn.evaluation.corruptions.numeric import Images
from cifar_cnn.evaluation.corruptions.parameters import SEVERITIES
from cifar_cnn.evaluation.corruptions.registry import (
    BENCHMARK,
    CORRUPTIONS,
    FAMILIES,
    HELD_OUT,
    _check_images,
    corrupt,
    resolve_corruptions,
)

JPEG_QUALITIES = (95, 75, 50)  # the sweep of benchmarks/robustness.py


def _scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from cifar_cnn.calibration import expected_calibration_error

    return {"accuracy": float(np.mean(probs.argmax(axis=1) == labels)),
            "ece": float(expected_calibration_error(probs, labels))}


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def _summary(per_corruption: Mapping[str, Mapping[str, Any]], names: Sequence[str],
             clean_accuracy: float) -> dict[str, Any]:
    names = [n for n in names if n in per_corruption]
    if not names:
        return {}
    accuracy = _mean(per_corruption[n]["mean_accuracy"] for n in names)
    return {
        "corruptions": names,
        "accuracy": [_mean(per_corruption[n]["accuracy"][s] for n in names) for s in range(5)],
        "ece": [_mean(per_corruption[n]["ece"][s] for n in names) for s in range(5)],
        "mean_accuracy": accuracy,
        "mean_error": 1.0 - accuracy,
        "mean_ece": _mean(per_corruption[n]["mean_ece"] for n in names),
        "accuracy_drop": clean_accuracy - accuracy,
    }


def score_corruptions(
    predict: Callable[[Images], np.ndarray],
    images: Any,
    labels: Any,
    *,
    names: bool | str | Iterable[str] = True,
    seed: int = 0,
    jpeg_qualities: Sequence[int] = JPEG_QUALITIES,
    clean_probs: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Accuracy and ECE (15 bins) of ``predict`` on corrupted copies of ``images``.

    Args:
        predict: images -> class probabilities ``(N, C)`` (those whose calibration counts).
        images: uint8 ``(N, 32, 32, 3)``; labels: their integer classes.
        names: which corruptions (see `resolve_corruptions`); True: all 19.
        seed: see `corrupt`.
        jpeg_qualities: the JPEG round trips to score besides (empty: none).
        clean_probs: ``predict(images)`` if the caller has it.
        progress: called with a line after each corruption.

    Returns:
        A JSON-ready dict: ``clean``; ``per_corruption`` (family, whether benchmark,
        accuracy and ECE per severity and their means); ``per_family`` and ``mean`` (over
        the chosen benchmark corruptions, per severity and overall, with ``accuracy_drop``
        from clean; ``complete`` says whether all 15 were scored); ``held_out`` likewise;
        ``jpeg`` per quality; ``seed``, ``images`` and timings.
    """
    images = _check_images(images)
    labels = np.asarray(labels).astype(np.int64).ravel()
    chosen = resolve_corruptions(names)
    generate_s = predict_s = 0.0
    t = time.perf_counter()
    clean = _scores(predict(images) if clean_probs is None else clean_probs, labels)
    predict_s += time.perf_counter() - t
    per_corruption: dict[str, dict[str, Any]] = {}
    for name in chosen:
        accuracy, ece = [], []
        for severity in SEVERITIES:
            t0 = time.perf_counter()
            corrupted = corrupt(images, name, severity, seed=seed)
            t1 = time.perf_counter()
            s = _scores(predict(corrupted), labels)
            predict_s += time.perf_counter() - t1
            generate_s += t1 - t0
            accuracy.append(s["accuracy"])
            ece.append(s["ece"])
        per_corruption[name] = {
            "family": CORRUPTIONS[name].family, "benchmark": name in BENCHMARK,
            "accuracy": accuracy, "ece": ece,
            "mean_accuracy": _mean(accuracy), "mean_ece": _mean(ece),
        }
        if progress:
            progress(f"{name}: accuracy {', '.join(f'{a:.3f}' for a in accuracy)}")
    jpeg = {}
    for quality in jpeg_qualities:
        t0 = time.perf_counter()
        compressed = jpeg_roundtrip(images, int(quality))
        t1 = time.perf_counter()
        jpeg[str(int(quality))] = _scores(predict(compressed), labels)
        predict_s += time.perf_counter() - t1
        generate_s += t1 - t0
    benchmark = [n for n in chosen if n in BENCHMARK]
    families = {f: s for f, members in FAMILIES.items()
                if (s := _summary(per_corruption, members, clean["accuracy"]))}
    mean = _summary(per_corruption, benchmark, clean["accuracy"])
    if mean:
        mean["complete"] = len(benchmark) == len(BENCHMARK)
    return {
        "images": len(images),
        "seed": int(seed),
        "clean": clean,
        "per_corruption": per_corruption,
        "per_family": families,
        "mean": mean,
        "held_out": _summary(per_corruption, HELD_OUT, clean["accuracy"]),
        "jpeg": jpeg,
        "generate_seconds": round(generate_s, 3),
        "predict_seconds": round(predict_s, 3),
    }


def format_corruption_table(result: Mapping[str, Any]) -> str:
    """`score_corruptions`' result as a short fixed-width table (accuracy in %)."""

    def pct(v: Any) -> str:
        return "     -" if v is None else f"{v * 100:6.2f}"

    def ece(v: Any) -> str:
        return "     -" if v is None else f"{v:6.3f}"

    per = result.get("per_corruption") or {}
    width = max([len("clean"), *(len(n) for n in per), *(len(f) for f in FAMILIES),
                 len("mean of the 15")])
    head = f"{'':<{width}} {'family':<8}" + "".join(f"{s:>7}" for s in SEVERITIES)
    lines = [f"Corruptions: {result.get('images', 0):,} images, seed {result.get('seed')}; "
             "accuracy % by severity, mean, mean ECE",
             head + f"{'mean':>7}{'ECE':>7}"]
    clean = result.get("clean") or {}
    lines.append(f"{'clean':<{width}} {'':<8}{'':>35}{pct(clean.get('accuracy')):>7}"
                 f"{ece(clean.get('ece')):>7}")
    for name, r in per.items():
        tag = r["family"] + ("" if r.get("benchmark") else "*")
        lines.append(f"{name:<{width}} {tag:<8}" + "".join(f"{pct(a):>7}" for a in r["accuracy"])
                     + f"{pct(r['mean_accuracy']):>7}{ece(r['mean_ece']):>7}")
    rows = [(f, s) for f, s in (result.get("per_family") or {}).items()]
    if result.get("mean"):
        rows.append(("mean of the 15" if result["mean"].get("complete") else "benchmark mean",
                     result["mean"]))
    if result.get("held_out"):
        rows.append(("held-out*", result["held_out"]))
    if rows:
        lines.append("")
    for label, s in rows:
        lines.append(f"{label:<{width}} {'':<8}" + "".join(f"{pct(a):>7}" for a in s["accuracy"])
                     + f"{pct(s['mean_accuracy']):>7}{ece(s['mean_ece']):>7}")
    if result.get("jpeg"):
        lines.append("JPEG round trip: " + ", ".join(
            f"quality {q} {pct(s['accuracy']).strip()}% (ECE {s['ece']:.3f})"
            for q, s in result["jpeg"].items()))
    if any(not r.get("benchmark") for r in per.values()):
        lines.append("* held out: not in the mean of the 15")
    return "\n".join(lines)
