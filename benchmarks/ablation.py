"""Ablation: what each choice of a fast recipe is worth, measured on a validation split.

Trains the recipe as registered and variants that each undo one of its choices, each in a
fresh process, on the training set less a stratified validation split (5,000 images by
default), and reports validation accuracy without test-time augmentation, with flips, and
with flips and shifts, beside the training time. The test set is never touched, so these
figures may be used for tuning.

Writes ``benchmarks/results/ablation-<recipe>-<UTC time>.json``, rewritten after each run;
until the last one is done its ``runs_missing`` lists the ``variant:seed`` runs not yet made.

Usage:
    python -m benchmarks.ablation --recipe quick --data ../shared/datasets/cifar10
    python -m benchmarks.ablation --recipe quick --variants recipe,gelu --seeds 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np

from benchmarks.averaging import Lookahead
from benchmarks.common import run_child, write_result
from benchmarks.robustness import jpeg_copy
from benchmarks.selective import SelectiveBackprop, selective_recipe
from cifar_cnn.data.augment import images_per_epoch
from cifar_cnn.recipes import Recipe, get_recipe
from cifar_cnn.tta import EXTRA_VIEW_SETS, VIEW_SETS, View, view_probs


def _options(r: Recipe, **changes: object) -> Recipe:
    return r.replace(optimizer_options={**r.optimizer_options, **changes})


def _model(r: Recipe, **changes: object) -> Recipe:
    return r.replace(model_options={**r.model_options, **changes})


def _augment(r: Recipe, **changes: object) -> Recipe:
    return r.replace(augmentation_options={**r.augmentation_options, **changes})


def _progressive_10(r: Recipe) -> Recipe:
    return r.replace(epochs=10, train_sizes=((16, 0.4), (24, 0.7)), train_size_mode="resize")


def _narrow_longer(r: Recipe) -> Recipe:
    widths = r.model_options.get("widths", (64, 256, 256))  # the airbench network's default
    return _model(r, widths=tuple(w * 3 // 4 for w in widths)).replace(epochs=r.epochs + 2)


def _other_activation(r: Recipe) -> Recipe:
    current = r.model_options.get("activation", "gelu")  # the airbench network's default
    return _model(r, activation="relu" if current == "gelu" else "gelu")


# name -> (what the variant changes, how). Each undoes one choice of the airbench recipes.
VARIANTS: dict[str, tuple[str, Callable[[Recipe], Recipe]]] = {
    "recipe": ("the recipe as registered", lambda r: r),
    "no_whitening": ("a trained 2x2 conv in place of the frozen data-derived whitening",
                     lambda r: _model(r, whitening=False)),
    "whiten_bias_trained": ("the whitening bias trained to the end (not stopped after 3 "
                            "epochs)", lambda r: _options(r, stop_after_epochs={})),
    "no_label_smoothing": ("no label smoothing (0.2 in the recipe)",
                           lambda r: r.replace(label_smoothing=0.0)),
    "random_flips": ("independent random flips each epoch instead of alternating ones",
                     lambda r: r.replace(augmentation_options={"alternate": False})),
    "no_translate": ("alternating flips without the 2-pixel shifts",
                     lambda r: r.replace(augmentation_options={"translate": 0})),
    "sgd": ("Nesterov SGD for the conv kernels too, at airbench94's kernel rate "
            "(0.0015 x batch, untuned), instead of Muon",
            lambda r: _options(r, muon=False, sgd_learning_rates={
                **r.optimizer_options.get("sgd_learning_rates", {}),
                "conv": 0.0015 * r.batch_size})),
    "other_activation": ("GELU for ReLU, or ReLU for GELU", _other_activation),
    "float32": ("float32 on any hardware (the recipes' auto takes mixed bfloat16 where it "
                "is native)", lambda r: r.replace(precision="float32")),
    # Less work (issue "94% with a third less work"): progressive resizing.
    "progressive_crop": ("epochs 1-2 on random 16x16 crops, 3-5 on 24x24 crops, the rest "
                         "full size (about 62% of the work)",
                         lambda r: r.replace(train_sizes=((16, 0.25), (24, 0.625)),
                                             train_size_mode="crop")),
    "progressive_resize": ("as progressive_crop, with whole images downscaled instead of "
                           "cropped", lambda r: r.replace(train_sizes=((16, 0.25), (24, 0.625)),
                                                          train_size_mode="resize")),
    "progressive_resize_9": ("9 epochs: 1-2 on images downscaled to 16x16, 3-6 to 24x24, "
                             "the rest full size (about 69% of the work)",
                             lambda r: r.replace(epochs=9, train_sizes=((16, 2 / 9), (24, 6 / 9)),
                                                 train_size_mode="resize")),
    "progressive_mild": ("epochs 1-3 on random 24x24 crops, the rest full size (about 84% "
                         "of the work)", lambda r: r.replace(train_sizes=((24, 0.375),))),
    "progressive_10": ("10 epochs: 1-4 on images downscaled to 16x16, 5-7 to 24x24, the "
                       "last 3 full size (about 68% of fast94's work)",
                       _progressive_10),
    "jpeg_full_size_only": ("the JPEG share only in the epochs at full size",
                            lambda r: _augment(r, jpeg_full_size_only=True)),
    "progressive_10_jpeg_full_size_only": (
        "progressive_10 with the JPEG share only in the epochs at full size",
        lambda r: _augment(_progressive_10(r), jpeg_full_size_only=True)),
    # The batch size on a CPU: images per second hardly depend on it above a few hundred,
    # so a smaller batch buys more steps for the same work (airbench's 2000 suits GPUs).
    "half_batch": ("half the batch (1000 for fast94): twice the steps for the same work "
                   "(the per-image SGD rates kept, Muon's normalised rate as it is)",
                   lambda r: r.replace(batch_size=r.batch_size // 2)),
    "two_epochs_more": ("two more epochs (the same schedule, stretched), for what more "
                        "full-size work buys", lambda r: r.replace(epochs=r.epochs + 2)),
    # Width against epochs: conv work falls about as the square of the width, so 3/4 of it
    # for 10 epochs is about 73% of fast94's work (0.199 against 0.272 PFLOP on 49,000).
    "narrow_longer": ("the conv groups 3/4 as wide, two epochs more (the schedule stretched)",
                      _narrow_longer),
    # Selective backpropagation (benchmarks/selective.py): a proxy network far smaller picks
    # the hardest half of each batch, and the network trains on that half only.
    "selective_half": ("the network trains on the half of each batch a small proxy finds "
                       "hardest (about 55% of fast94's work)",
                       lambda r: selective_recipe(r, SELECTIVE["selective_half"], r.epochs)),
    "selective_half_10": ("selective_half over 10 epochs (the schedule stretched; about 68% "
                          "of fast94's work)",
                          lambda r: selective_recipe(r, SELECTIVE["selective_half_10"], 10)),
    # Weight averaging and the schedule's shape (the third idea).
    "lookahead": ("Lookahead (benchmarks/averaging.py, as airbench94 had it): every 5 steps "
                  "the weights are reset to their moving average, batch-norm statistics "
                  "included, whose decay grows to 0.95 per step; training ends on the average",
                  lambda r: r),
    "cosine_schedule": ("the rates decay to zero as a cosine (higher early, lower late) "
                        "instead of a straight line", lambda r: r.replace(
                            lr_schedule="warmup_cosine", warmup_fraction=0.0)),
    "one_epoch_less": ("one epoch fewer (the same schedule, squeezed), for comparing less "
                       "work by resizing with less work by stopping sooner",
                       lambda r: r.replace(epochs=r.epochs - 1)),
}

# Variants that train a SelectiveModel ranked by SelectiveBackprop: the fraction of each
# batch kept.
SELECTIVE = {"selective_half": 0.5, "selective_half_10": 0.5}
# Variants that train with Lookahead.
LOOKAHEAD = {"lookahead"}


# The TTA each run is scored with (cifar_cnn.tta's view sets): suffix of the key -> set.
TTA_SETS = {"_flip": VIEW_SETS["flip"], "_flip_translate": VIEW_SETS["flip_translate"],
            "_flip_shift8": EXTRA_VIEW_SETS["flip_shift8"]}


def tta_accuracies(model: object, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy without TTA and with each of `TTA_SETS`, every distinct view computed once."""
    probs = view_probs(model, x, [View(), *(v for s in TTA_SETS.values() for _, v in s.views)])
    acc = {"val_accuracy": float((probs[View()].argmax(1) == y).mean())}
    acc.update({f"val_accuracy{suffix}": float((s.combine(probs).argmax(1) == y).mean())
                for suffix, s in TTA_SETS.items()})
    return acc


def run_variant(recipe: str, variant: str, seed: int, data: str | None,
                val_size: int) -> dict:
    """Train one variant for one seed in this process; returns its record."""
    from cifar_cnn import train
    from cifar_cnn.data import CifarData, load_cifar10, split_validation
    from cifar_cnn.predict import Classifier, predict_probs

    r = VARIANTS[variant][1](get_recipe(recipe))
    ds = load_cifar10(data)
    x, y, x_val, y_val = split_validation(ds.x_train, ds.y_train, val_size, seed=seed)
    # Train on the rest with nothing monitored, so the time compares with time_to_accuracy.
    split = CifarData(x, y, x_val, y_val, ds.class_names, source=f"{ds.source}, split")
    callbacks = []
    if variant in SELECTIVE:
        sample = np.random.default_rng(seed).permutation(len(x))[:5000]
        callbacks.append(SelectiveBackprop(r, x[np.sort(sample)], len(x) // r.batch_size))
    if variant in LOOKAHEAD:
        callbacks.append(Lookahead())
    with tempfile.TemporaryDirectory() as runs:
        t0 = time.perf_counter()
        run = train(r, data=split, monitor_test=False, seed=seed, runs_dir=runs, verbose=2,
                    callbacks=callbacks)
        seconds = time.perf_counter() - t0
        meta = run.read_metadata()
        work = dict(meta["work"])
        if variant in SELECTIVE:  # the work done, not the whole batches' the metadata counts
            images = images_per_epoch(len(x), r.batch_size, r.augmentation) * r.epochs
            work["train_pflops"] = round(callbacks[0].train_pflops(work["train_pflops"],
                                                                   images), 4)
        model = Classifier.load(run.path).model
        acc = tta_accuracies(model, x_val, y_val)
        for q in (75, 50):  # robustness to JPEG, with the recipes' TTA
            probs = predict_probs(model, jpeg_copy(x_val, q), tta="flip_translate")
            acc[f"val_accuracy_jpeg{q}_flip_translate"] = float((probs.argmax(1) == y_val).mean())
    return {"variant": variant, "seed": seed, **acc, "train_seconds": round(seconds, 2),
            "train_pflops": work["train_pflops"], "train_sizes": work["train_sizes"],
            "precision": meta["settings"]["precision"]["used"]}


KEYS = ("val_accuracy", "val_accuracy_flip", "val_accuracy_flip_translate",
        "val_accuracy_flip_shift8", "val_accuracy_jpeg75_flip_translate",
        "val_accuracy_jpeg50_flip_translate", "train_seconds", "train_pflops")


def summary(args: argparse.Namespace, names: list[str], runs: list[dict],
            planned: list[tuple[str, int]]) -> dict:
    """The result of the runs done so far; ``runs_missing`` lists the planned ones not yet run."""
    def mean(variant: str, key: str) -> float | None:
        values = [r[key] for r in runs if r["variant"] == variant and key in r]
        return round(statistics.fmean(values), 5) if values else None

    missing = [f"{v}:{seed}" for v, seed in planned[len(runs):]]
    return {
        "recipe": args.recipe,
        "val_size": args.val_size,
        "seeds_per_variant": args.seeds,
        **({"runs_missing": missing} if missing else {}),
        "variants": {v: {"change": VARIANTS[v][0], **{k: mean(v, k) for k in KEYS}}
                     for v in names if any(r["variant"] == v for r in runs)},
        "runs": runs,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="quick")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per variant")
    p.add_argument("--val-size", type=int, default=5000)
    p.add_argument("--data", default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # "variant:seed"
    args = p.parse_args()

    if args.child is not None:  # one training, result as the last line of stdout
        variant, seed = args.child.rsplit(":", 1)
        print(json.dumps(run_variant(args.recipe, variant, int(seed), args.data,
                                     args.val_size)))
        return

    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"Unknown variant(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(VARIANTS)}.")
    planned = [(v, seed) for v in names for seed in range(args.seeds)]
    runs: list[dict] = []
    path = None
    for variant, seed in planned:
        cmd = ["benchmarks.ablation", "--recipe", args.recipe, "--child",
               f"{variant}:{seed}", "--val-size", str(args.val_size)]
        cmd += ["--data", args.data] if args.data else []
        runs.append(run_child(cmd))
        print(json.dumps(runs[-1]), flush=True)
        numbers = summary(args, names, runs, planned)
        path = write_result(f"ablation-{args.recipe}", numbers, path)  # kept if stopped later
    for v, row in numbers["variants"].items():
        print(f"{v:22s} val {row['val_accuracy']:.4f}  flip+shift TTA "
              f"{row['val_accuracy_flip_translate']:.4f}  {row['train_seconds']:7.1f} s  "
              f"{row['train_pflops']:.3f} PFLOP")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
