"""Test-time augmentation with more views: what each set of views is worth on a validation split.

TTA costs no training work, only inference (issue "94% with a third less work"). This takes
a run trained with ``--val-size`` (so the split is one the network never saw), rebuilds its
validation split from the run's metadata, computes the model's probabilities for every view
(the image and its mirror, each shifted by up to 2 pixels with reflect padding) once, and
scores several ways of combining them, beside the forward passes each costs. Never the test
set: these figures may be used to choose.

Writes ``benchmarks/results/tta_views-<UTC time>.json``.

Usage:
    cifar-cnn train --recipe fast94 --val-size 5000 --data ../shared/datasets/cifar10
    python -m benchmarks.tta_views --run runs/fast94 --data ../shared/datasets/cifar10
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.common import write_result

MAX_SHIFT = 2
Views = dict[tuple[int, int, bool], np.ndarray]  # (dy, dx, mirrored) -> probabilities


def view_probs(model: object, x: np.ndarray, batch_size: int = 500) -> Views:
    """Probabilities for every shift up to `MAX_SHIFT` pixels, with and without the mirror."""
    h, w = x.shape[1:3]
    m = MAX_SHIFT
    padded = np.pad(x, ((0, 0), (m, m), (m, m), (0, 0)), mode="reflect")
    out: Views = {}
    for dy, dx in itertools.product(range(-m, m + 1), repeat=2):
        view = np.ascontiguousarray(padded[:, m + dy:m + dy + h, m + dx:m + dx + w])
        for mirrored in (False, True):
            batch = np.ascontiguousarray(view[:, :, ::-1]) if mirrored else view
            out[dy, dx, mirrored] = model.predict(batch, batch_size=batch_size,
                                                  verbose=0).astype(np.float64)
    return out


def _shifts(ring: str) -> list[tuple[int, int]]:
    return {"none": [], "diag2": [(-1, -1), (1, 1)],
            "cross4": [(-1, 0), (1, 0), (0, -1), (0, 1)],
            "ring8": [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)],
            "grid24": [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                       if (dy, dx) != (0, 0)]}[ring]


def combine(views: Views, ring: str, centre_weight: float, mean: str = "probs") -> np.ndarray:
    """Mirror pairs of the centre and of the `ring` shifts; the centre pair weighs
    `centre_weight`, the shifts share the rest. ``mean="log"``: a weighted geometric mean."""
    shifts = _shifts(ring)
    weights = {(0, 0): centre_weight if shifts else 1.0}
    weights.update({s: (1.0 - centre_weight) / len(shifts) for s in shifts})
    f: Callable[[np.ndarray], np.ndarray] = (lambda p: np.log(np.clip(p, 1e-12, 1.0))
                                             ) if mean == "log" else (lambda p: p)
    total = sum(wt * 0.5 * (f(views[dy, dx, False]) + f(views[dy, dx, True]))
                for (dy, dx), wt in weights.items())
    return total


# name -> (ring of shifts, weight of the centre pair, mean, what it is)
VIEW_SETS = {
    "mirror": ("none", 1.0, "probs", "the image and its mirror (TTA 'flip')"),
    "airbench": ("diag2", 0.5, "probs", "airbench's 'flip_translate': the mirror pair at "
                 "half weight, the pairs shifted one pixel up-left and down-right a quarter each"),
    "cross4": ("cross4", 0.5, "probs", "half on the mirror pair, half on the pairs shifted "
               "one pixel up, down, left, right"),
    "ring8": ("ring8", 0.5, "probs", "half on the mirror pair, half on the 8 one-pixel shifts"),
    "ring8_equal": ("ring8", 1 / 9, "probs", "the mirror pairs of all 9 positions, equal"),
    "grid24": ("grid24", 0.5, "probs", "half on the mirror pair, half on all 24 shifts "
               "of up to 2 pixels"),
    "airbench_log": ("diag2", 0.5, "log", "airbench's views, geometric mean"),
    "ring8_log": ("ring8", 0.5, "log", "ring8, geometric mean"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a run directory trained with --val-size")
    p.add_argument("--data", default=None)
    args = p.parse_args()

    from cifar_cnn import Classifier
    from cifar_cnn.data import load_cifar10, split_validation
    from cifar_cnn.runs import RunDir

    meta = RunDir(Path(args.run)).read_metadata()
    seed, val_size = meta["settings"]["seed"], meta["settings"]["val_size"]
    if not val_size:
        raise SystemExit(f"{args.run} was trained without --val-size: it has no validation "
                         "split, and the test set is not for choosing TTA.")
    ds = load_cifar10(args.data)
    if ds.fingerprint != meta["dataset"]["fingerprint"]:
        raise SystemExit(f"{args.data} is not the dataset {args.run} was trained on "
                         "(fingerprints differ).")
    _, _, x_val, y_val = split_validation(ds.x_train, ds.y_train, val_size, seed=seed)
    model = Classifier.load(args.run).model
    views = view_probs(model, x_val)
    rows = {"none": {"forward_passes": 1, "val_accuracy": float(
        (views[0, 0, False].argmax(1) == y_val).mean()), "what": "no TTA"}}
    for name, (ring, centre, mean, what) in VIEW_SETS.items():
        probs = combine(views, ring, centre, mean)
        rows[name] = {"forward_passes": 2 * (1 + len(_shifts(ring))),
                      "val_accuracy": float((probs.argmax(1) == y_val).mean()), "what": what}
    numbers = {"run": str(Path(args.run).resolve()), "recipe": meta["recipe"]["name"],
               "seed": seed, "val_size": val_size, "view_sets": rows}
    path = write_result("tta_views", numbers)
    for name, row in rows.items():
        print(f"{name:14s} {row['forward_passes']:3d} passes  val {row['val_accuracy']:.4f}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
