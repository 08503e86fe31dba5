"""Test-time augmentation with more views: what each set of views is worth on a validation split.

TTA costs no training work, only inference (issue "94% with a third less work"). This takes
a run trained with ``--val-size`` (so the split is one the network never saw), rebuilds its
validation split from the run's metadata, computes the model's probabilities for every view
(the image and its mirror, each shifted by up to 2 pixels with reflect padding) once, and
scores several ways of combining them (view sets of `cifar_cnn.tta`), beside the forward
passes each costs. Never the test set: these figures may be used to choose.

Writes ``benchmarks/results/tta_views-<UTC time>.json``.

Usage:
    cifar-cnn train --recipe fast94 --val-size 5000 --data ../shared/datasets/cifar10
    python -m benchmarks.tta_views --run runs/fast94 --data ../shared/datasets/cifar10
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.common import write_result
from cifar_cnn.tta import EXTRA_VIEW_SETS, View, ViewSet, view_probs
from cifar_cnn.tta import VIEW_SETS as VIEW_SETS_OF_TTA

# name -> (the view set of cifar_cnn.tta, what it is): each scored on the same forward passes
VIEW_SETS: dict[str, tuple[ViewSet, str]] = {
    "mirror": (VIEW_SETS_OF_TTA["flip"], "the image and its mirror (TTA 'flip')"),
    "airbench": (VIEW_SETS_OF_TTA["flip_translate"],
                 "airbench's 'flip_translate': the mirror pair at half weight, the pairs "
                 "shifted one pixel up-left and down-right a quarter each"),
    "cross4": (EXTRA_VIEW_SETS["flip_cross4"], "half on the mirror pair, half on the pairs "
               "shifted one pixel up, down, left, right"),
    "ring8": (EXTRA_VIEW_SETS["flip_shift8"],
              "half on the mirror pair, half on the 8 one-pixel shifts"),
    "ring8_equal": (EXTRA_VIEW_SETS["flip_shift8_equal"],
                    "the mirror pairs of all 9 positions, equal"),
    "grid24": (EXTRA_VIEW_SETS["flip_shift24"], "half on the mirror pair, half on all 24 "
               "shifts of up to 2 pixels"),
    "airbench_log": (EXTRA_VIEW_SETS["flip_translate_log"], "airbench's views, geometric mean"),
    "ring8_log": (EXTRA_VIEW_SETS["flip_shift8_log"], "ring8, geometric mean"),
}


def scores(model: object, x: np.ndarray, y: np.ndarray) -> dict[str, dict]:
    """Accuracy without TTA and with each of `VIEW_SETS`, every distinct view computed once."""
    views = view_probs(model, x, [View(), *(v for s, _ in VIEW_SETS.values()
                                            for _, v in s.views)])
    rows = {"none": {"forward_passes": 1, "val_accuracy": float(
        (views[View()].argmax(1) == y).mean()), "what": "no TTA"}}
    for name, (view_set, what) in VIEW_SETS.items():
        rows[name] = {"forward_passes": view_set.forward_passes, "val_accuracy": float(
            (view_set.combine(views).argmax(1) == y).mean()), "what": what}
    return rows


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
    rows = scores(Classifier.load(args.run).model, x_val, y_val)
    numbers = {"run": str(Path(args.run).resolve()), "recipe": meta["recipe"]["name"],
               "seed": seed, "val_size": val_size, "view_sets": rows}
    path = write_result("tta_views", numbers)
    for name, row in rows.items():
        print(f"{name:14s} {row['forward_passes']:3d} passes  val {row['val_accuracy']:.4f}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
