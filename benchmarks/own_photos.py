"""Own photos: how well training on a folder of a user's photos comes out, from scratch and
fine-tuned from a trained model, at several training sizes.

Two tasks:

- ``folder``: a folder of photos (``../shared/datasets/animals`` by default: cats, dogs,
  panda), held out as ``cifar-cnn train --data DIR`` holds it out (20% of each class,
  stratified, by the seed). Size ``all`` trains on the folder itself, the way a user does;
  size ``N`` trains on N photos per class of the same training part (a tree of symbolic
  links with the same held-out photos as ``val/``). Scored on the held-out photos.
- ``cifar5to5``: new classes without new data. A backbone is trained once on five CIFAR-10
  classes (airplane, automobile, bird, cat, deer; all their 25,000 training images, the
  recipe ``robust`` as registered, seed 0); runs then train on N images per class of the
  other five (dog, frog, horse, ship, truck), scratch or fine-tuned from that backbone,
  with 200 other training images per class as their ``val/`` folder (monitored, calibrated
  on). Scored on 800 more training images per class (``--split val``, for choosing) or on
  those classes' 5,000 test images (``--split test``, for the final figures).

Each variant is a set of `cifar_cnn.train` options (see `VARIANTS`; ``--variant
NAME=JSON`` adds one); every run trains and is scored in a fresh process. Per run: holdout
accuracy without and with the recipe's test-time augmentation, its 95% Wilson interval,
macro F1, training seconds, the plan the run chose; per cell, mean and SD over seeds.

Writes ``benchmarks/results/own_photos-<UTC time>.json``, rewritten after each run.

Usage:
    python -m benchmarks.own_photos --task folder --sizes 20,100,all --variants default,scratch
    python -m benchmarks.own_photos --task cifar5to5 --sizes 20,100,1000 --split test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import run_child, write_result

REPO = Path(__file__).resolve().parents[1]
ANIMALS = REPO.parent / "shared/datasets/animals"
CIFAR10 = REPO.parent / "shared/datasets/cifar10"
OLD_CLASSES = ("airplane", "automobile", "bird", "cat", "deer")
NEW_CLASSES = ("dog", "frog", "horse", "ship", "truck")
CIFAR_HELD_PER_CLASS = 1000  # the last 1,000 training images of each new class, by name
CIFAR_VAL_PER_CLASS = 200  # of which each run's val/ folder; it scores on test/

# name -> (what it is, `train` options). "BACKBONE" is replaced by the task's trained model
# to start from: the packaged model for a folder, the five-class backbone for cifar5to5.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("`cifar-cnn train --data DIR` with no other option (for cifar5to5: "
                "`--init BACKBONE`)", {}),
    "scratch": ("the defaults without a trained model to start from (`--init none`)",
                {"init": "none"}),
    "scratch_same_steps": ("`--init none` with the batch and epochs the default (fine-tuning) "
                           "plans", {"init": "none", "plan_as": "finetune"}),
    # What `cifar-cnn train --data DIR` did before issue 38: the baseline CNN, 32 px.
    "before_baseline": ("before issue 38: `--data DIR` alone (the baseline CNN for 10 epochs "
                        "at batch 32, 32 px)",
                        {"recipe": "baseline", "init": "none", "epochs": 10,
                         "batch_size": 32, "image_size": 32}),
    "before_fast94_init": ("before issue 38: `--recipe fast94 --init default` (12 epochs at "
                           "batch 2000 or the whole set, 32 px, rates x0.1)",
                           {"recipe": "fast94", "init": "BACKBONE", "epochs": 12,
                            "batch_size": 2000, "image_size": 32, "freeze_epochs": 0}),
    "before_fast94_scratch": ("before issue 38: `--recipe fast94` from scratch (12 epochs at "
                              "batch 2000 or the whole set, 32 px)",
                              {"recipe": "fast94", "init": "none", "epochs": 12,
                               "batch_size": 2000, "image_size": 32}),
    # The grid: the default with one choice changed.
    "g_48px": ("the default at 48 px instead of the size the rule picks",
               {"image_size": 48}),
    "g_no_freeze": ("the default without the head-first epochs (`--freeze-epochs 0`)",
                    {"freeze_epochs": 0}),
    "g_steps_x2": ("the default with twice the planned epochs (head-first share kept)",
                   {"steps_mult": 2}),
    "g_no_distort": ("the default without the robust recipe's distortions (its JPEG share "
                     "kept)", {"recipe_changes": {"augmentation_options": {"distort": {}}}}),
    "g_lr_x3": ("the default at 0.3 of the recipe's rates once the whole network trains "
                "(0.1 by default)", {"finetune_lr_mult": 0.3}),
}


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst)


def folder_tree(data: Path, per_class: int | None, seed: int, root: Path) -> Path:
    """The folder itself (``per_class`` None), or a ``train/`` + ``val/`` tree of links: N
    photos per class of the part `cifar-cnn train` trains on with this seed, and the photos
    it holds out, as they are."""
    if per_class is None:
        return data
    from cifar_cnn.data import load_dataset

    ds = load_dataset(data, seed=seed)  # the hold-out of `train --data DIR --seed SEED`
    rng = np.random.default_rng(seed)
    for label, name in enumerate(ds.class_names):
        mine = [f for f, y in zip(ds.files["train"], ds.y_train, strict=True) if y == label]
        if per_class > len(mine):
            raise SystemExit(f"{data}: class {name} has {len(mine)} training photos, fewer "
                             f"than {per_class}")
        for f in sorted(rng.choice(mine, per_class, replace=False)):
            _link(data / f, root / "train" / f)
    for f in ds.files["val"]:
        _link(data / f, root / "val" / f)
    return root


def _class_files(cifar: Path, split: str, name: str) -> list[Path]:
    return sorted((cifar / split / name).iterdir())


def cifar_backbone_tree(cifar: Path, root: Path) -> Path:
    """``train/<class>/`` of the five old classes, all their training images."""
    for name in OLD_CLASSES:
        for f in _class_files(cifar, "train", name):
            _link(f, root / "train" / name / f.name)
    return root


def cifar_new_tree(cifar: Path, per_class: int, seed: int, split: str, root: Path) -> Path:
    """N training images per new class (chosen by the seed among the first 4,000 of its
    training images); as ``val/`` (monitored and calibrated on, as a user's val folder)
    200 of its last 1,000; as ``test/`` (scored) the other 800 (``split`` "val", for
    choosing) or the class's 1,000 test images ("test")."""
    rng = np.random.default_rng(seed)
    for name in NEW_CLASSES:
        files = _class_files(cifar, "train", name)
        pool, held = files[:-CIFAR_HELD_PER_CLASS], files[-CIFAR_HELD_PER_CLASS:]
        for f in sorted(rng.choice(pool, per_class, replace=False)):
            _link(f, root / "train" / name / f.name)
        for f in held[:CIFAR_VAL_PER_CLASS]:
            _link(f, root / "val" / name / f.name)
        exam = held[CIFAR_VAL_PER_CLASS:] if split == "val" else _class_files(cifar, "test", name)
        for f in exam:
            _link(f, root / "test" / name / f.name)
    return root


def train_backbone(cifar: Path, keep: Path) -> Path:
    """The five-class backbone run (trained once, kept in `keep`)."""
    run = keep / "backbone-5class"
    if (run / "metadata.json").is_file() and json.loads(
            (run / "metadata.json").read_text()).get("status") == "complete":
        return run
    from cifar_cnn import train
    from cifar_cnn.recipes import get_recipe

    tree = cifar_backbone_tree(cifar, Path(tempfile.mkdtemp(prefix="backbone-")))
    r = get_recipe("robust")  # as registered: not sized to the 24,000 images
    return train(r, data=tree, init="none", epochs=r.epochs, batch_size=r.batch_size,
                 runs_dir=keep, name=run.name, seed=0, verbose=2).path


def resolve_options(options: dict[str, Any], backbone: str | None) -> dict[str, Any]:
    out = dict(options)
    if out.get("init") == "BACKBONE":
        out["init"] = backbone or "default"
    elif "init" not in out and backbone is not None:
        out["init"] = backbone
    return out


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Train and score one run in this process (the child): `spec` holds the task, data
    tree, options and seed."""
    from cifar_cnn import train
    from cifar_cnn.evaluation import evaluate
    from cifar_cnn.evaluation.metrics import wilson_interval
    from cifar_cnn.recipes import get_recipe

    options = dict(spec["options"])
    recipe = options.pop("recipe", None)
    changes = options.pop("recipe_changes", None)
    if changes:  # a grid row that changes the recipe itself
        base = get_recipe(recipe or "robust")  # the packaged model's, as `train` picks it
        for key in ("optimizer_options", "augmentation_options", "model_options"):
            if key in changes:
                changes[key] = {**getattr(base, key), **changes[key]}
        recipe = base.replace(**changes)
    if recipe is not None:
        options["recipe"] = recipe
    mult = options.pop("steps_mult", None)
    like = options.pop("plan_as", None)  # "finetune": the batch and epochs fine-tuning gets
    if changes and like is None:  # a `Recipe` object is not sized: size it as `train` would
        like = "finetune" if options.get("init") != "none" else "scratch"
    if mult is not None or like is not None:  # the plan's epochs (as `train` sizes them)
        from cifar_cnn.data import load_dataset
        from cifar_cnn.training.plan import size_schedule

        r = recipe if recipe is not None and not isinstance(recipe, str) else get_recipe(
            recipe or "robust")
        n = len(load_dataset(spec["data"], seed=spec["seed"]).y_train)
        fine_tune = like == "finetune" if like else options.get("init") != "none"
        batch, epochs = size_schedule(r, n, fine_tune=fine_tune)
        if mult is not None:
            options["epochs"] = round(epochs * mult)
        options.setdefault("epochs", epochs)
        if like is not None:
            options.setdefault("batch_size", batch)
    with tempfile.TemporaryDirectory() as runs:
        t0 = time.perf_counter()
        run = train(data=spec["data"], seed=spec["seed"], runs_dir=runs, verbose=2,
                    **options)
        wall = time.perf_counter() - t0
        meta = run.read_metadata()
        scores = {}
        for tta in (False, None):
            m = evaluate(run.path, split="test", tta=tta, report=False)
            key = "tta" if tta is None else "no_tta"
            n = int(m["num_images"])
            correct = round(m["accuracy"] * n)
            scores[key] = {"accuracy": m["accuracy"], "macro_f1": m["macro"]["f1"],
                           "tta": m["tta"], "ci95": wilson_interval(correct, n)}
    settings = meta["settings"]
    return {**{k: spec[k] for k in ("task", "size", "variant", "seed")},
            **scores, "num_images": n, "train_seconds": meta["train_seconds"],
            "wall_seconds": round(wall, 1), "recipe": meta["recipe"]["name"],
            "model": meta["recipe"]["model"], "epochs": meta["recipe"]["epochs"],
            "batch_size": meta["recipe"]["batch_size"],
            "image_size": meta["input"]["shape"][0], "num_train": meta["dataset"]["num_train"],
            "init": meta.get("init"), "plan": meta.get("plan"), "bn": settings.get("bn"),
            "freeze_epochs": settings.get("freeze_epochs")}


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        cells.setdefault((r["task"], str(r["size"]), r["variant"]), []).append(r)
    out = []
    for (task, size, variant), rs in cells.items():
        def stat(get: Any, rs: list[dict[str, Any]] = rs) -> dict[str, float]:
            xs = [get(r) for r in rs]
            return {"mean": round(statistics.fmean(xs), 4),
                    "sd": round(statistics.stdev(xs), 4) if len(xs) > 1 else 0.0}

        out.append({"task": task, "size": size, "variant": variant, "seeds": len(rs),
                    "accuracy_no_tta": stat(lambda r: r["no_tta"]["accuracy"]),
                    "accuracy_tta": stat(lambda r: r["tta"]["accuracy"]),
                    "macro_f1_tta": stat(lambda r: r["tta"]["macro_f1"]),
                    "train_seconds": stat(lambda r: r["train_seconds"])})
    return out


def compare(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task and size: the default against the best row (TTA accuracy, mean over seeds),
    against training from scratch, and against the defaults before issue 38."""
    out = []
    for key in sorted({(row["task"], row["size"]) for row in summary}):
        rows = {row["variant"]: row["accuracy_tta"]["mean"] for row in summary
                if (row["task"], row["size"]) == key}
        if "default" not in rows:
            continue
        best = max(rows, key=rows.get)
        entry = {"task": key[0], "size": key[1], "default": rows["default"], "best": best,
                 "default_minus_best": round(rows["default"] - rows[best], 4)}
        for other in ("scratch", "before_baseline", "before_fast94_init"):
            if other in rows:
                entry[f"default_minus_{other}"] = round(rows["default"] - rows[other], 4)
        out.append(entry)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=["folder", "cifar5to5"], default="folder")
    p.add_argument("--data", default=str(ANIMALS), help="the photo folder (task folder)")
    p.add_argument("--cifar", default=str(CIFAR10), help="CIFAR-10 as class folders "
                   "(task cifar5to5)")
    p.add_argument("--sizes", default="20,100,all",
                   help="training images per class, comma-separated; all: the whole folder")
    p.add_argument("--variants", default="default,scratch")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                   help="another variant: its name and its train options as JSON")
    p.add_argument("--seeds", type=int, default=3, help="seeds first..first+N-1")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--split", choices=["val", "test"], default="val",
                   help="cifar5to5: score on held-out training images (val) or the test set")
    p.add_argument("--keep", default=str(REPO / "runs" / "own_photos"),
                   help="where the cifar5to5 backbone is trained once and kept")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(run_one(json.loads(args.child))), flush=True)
        return

    variants = dict(VARIANTS)
    for item in args.variant:
        name, _, text = item.partition("=")
        variants[name] = ("grid row", json.loads(text))
    names = [v for v in args.variants.split(",") if v]
    names += [item.partition("=")[0] for item in args.variant if item.partition("=")[0]
              not in names]
    unknown = [v for v in names if v not in variants]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {sorted(variants)}")
    sizes: list[int | None] = [None if s == "all" else int(s) for s in args.sizes.split(",")]
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    backbone = None
    split = "val" if args.task == "folder" else args.split
    if args.task == "cifar5to5":
        if None in sizes:
            raise SystemExit("cifar5to5 takes sizes in images per class, not all")
        backbone = str(train_backbone(Path(args.cifar), Path(args.keep)))

    record: dict[str, Any] = {
        "task": args.task, "data": args.data if args.task == "folder" else args.cifar,
        "split": split, "sizes": args.sizes, "seeds": seeds, "backbone": backbone,
        "variants": {n: {"description": variants[n][0], "options": variants[n][1]}
                     for n in names}, "runs": []}
    path = None
    for size in sizes:
        for seed in seeds:
            with tempfile.TemporaryDirectory(prefix="own-photos-") as tmp:
                if args.task == "folder":
                    tree = folder_tree(Path(args.data), size, seed, Path(tmp))
                else:
                    tree = cifar_new_tree(Path(args.cifar), size, seed, split, Path(tmp))
                for name in names:
                    spec = {"task": args.task, "size": "all" if size is None else size,
                            "variant": name, "seed": seed, "data": str(tree), "split": split,
                            "options": resolve_options(variants[name][1], backbone)}
                    record["runs"].append(run_child(["benchmarks.own_photos", "--child",
                                                     json.dumps(spec)]))
                    record["summary"] = summarize(record["runs"])
                    record["comparisons"] = compare(record["summary"])
                    path = write_result("own_photos", record, path)
    for row in record["summary"]:
        print(f"{row['task']:<9} {row['size']:>5} {row['variant']:<24} "
              f"{row['accuracy_tta']['mean'] * 100:6.2f} ± {row['accuracy_tta']['sd'] * 100:.2f}% "
              f"(no TTA {row['accuracy_no_tta']['mean'] * 100:.2f}%) "
              f"{row['train_seconds']['mean']:7.1f} s")
    for c in record["comparisons"]:
        print(f"{c['task']} {c['size']}: default - best ({c['best']}) "
              f"{c['default_minus_best'] * 100:+.2f} points; default - scratch "
              f"{c.get('default_minus_scratch', float('nan')) * 100:+.2f}")
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
