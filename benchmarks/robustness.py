"""Robustness to JPEG: accuracy on lossless images and on the same images saved as JPEG.

Each seed trains the recipe in a fresh process (nothing evaluated during training), then
predicts the chosen split as it is (lossless PNG pixels) and after a JPEG round trip at
qualities 95, 75 and 50 (Pillow, 4:2:0 chroma subsampling, each image its own file in
memory, exactly what saving it as .jpg and reading it back gives), with and without the
recipe's test-time augmentation. It also records the expected calibration error (15 bins)
of the default, calibrated probabilities and of the raw ones, and the training time. The JPEG
round trip is the product's (`cifar_cnn.evaluation.corruptions.jpeg_roundtrip`, the sweep
``cifar-cnn evaluate RUN --corruptions`` reports too); ``--corruption-images N`` also scores
each seed on the product's CIFAR-10-C corruptions (all 19, severities 1-5, on N images of
the split in its class proportions, calibrated probabilities with the recipe's TTA) and
records the mean over the 15 benchmark corruptions, per family and over the held-out ones
(``--corruption-tta none`` scores them without TTA, six times faster, which is enough to
compare training choices; ``--measure RUN`` measures a run kept by ``--keep`` again).
A measurement split over sessions (``--first-seed``) becomes one table with ``--combine``,
which refuses parts that measured different things and joins the finished seeds of a
run that was cut off.

``--split val`` holds out ``--val-size`` training images and evaluates on them instead of the
test set: that is where augmentation choices are made (``--option jpeg=0.5`` etc. override
the recipe's augmentation options), never on the test set.

Writes ``benchmarks/results/robustness-<recipe>-<UTC time>.json``, rewritten after each
seed; until the last one is done its ``seeds_missing`` lists the seeds not yet run.

Usage:
    python -m benchmarks.robustness --recipe fast94 --seeds 3 --data ../shared/datasets/cifar10
    python -m benchmarks.robustness --recipe quick --split val --val-size 5000 --seeds 1 \\
        --option jpeg=0 --data ../shared/datasets/cifar10
    python -m benchmarks.robustness --recipe fast94 --seeds 1 --corruption-images 2000 \\
        --data ../shared/datasets/cifar10
    python -m benchmarks.robustness --recipe fast94 --split val --corruption-images 1000 \\
        --measure kept/fast94-seed0 --data ../shared/datasets/cifar10  # a run kept by --keep
    python -m benchmarks.robustness --recipe fast94 --split val --seeds 1 \\
        --option "distort={'noise': 0.25}" --set "model_options={'whitening_eps': 0.05}" \\
        --corruption-images 1000 --corruption-tta none --data ../shared/datasets/cifar10
    python -m benchmarks.robustness --combine benchmarks/results/robustness-robust-A.json \
        benchmarks/results/robustness-robust-B.json  # seeds 0 and 1-2, one table
"""

from __future__ import annotations

import argparse
import ast
import json
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import run_child, write_result
from cifar_cnn.evaluation.corruptions import JPEG_QUALITIES, jpeg_roundtrip

QUALITIES = JPEG_QUALITIES
# Each image saved as its own JPEG file (in memory, 4:2:0) and read back: the product's.
jpeg_copy = jpeg_roundtrip


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["jpeg=0.5", "jpeg_quality=(30, 95)"]`` -> ``{"jpeg": 0.5, "jpeg_quality": (30, 95)}``."""
    return {k: ast.literal_eval(v) for k, v in (p.split("=", 1) for p in pairs)}


def run_seed(recipe_name: str, seed: int, data: str | None, split: str, val_size: int,
             options: dict[str, Any], keep: str | None = None,
             fields: dict[str, Any] | None = None,
             corruption_images: int = 0,
             corruption_tta: str = "default", measure: str | None = None) -> dict[str, Any]:
    """Train one seed in this process and measure it; returns the per-seed record.

    With `measure` (a run directory kept by ``--keep``), measure that run instead of
    training: its recipe and training time are read from its metadata.
    """
    from cifar_cnn import Classifier, train
    from cifar_cnn.calibration import expected_calibration_error
    from cifar_cnn.data import load_cifar10, split_validation
    from cifar_cnn.data.split import stratified_subset
    from cifar_cnn.evaluation.corruptions import score_corruptions
    from cifar_cnn.recipes import Recipe, get_recipe
    from cifar_cnn.runs import RunDir
    from cifar_cnn.tta import predict_probs

    recipe = get_recipe(recipe_name).replace(**(fields or {}))
    if options:
        recipe = recipe.replace(augmentation_options={**recipe.augmentation_options, **options})
    ds = load_cifar10(data)
    if measure:  # a kept run, measured again without training
        run = RunDir(Path(measure))
        meta, clf = run.read_metadata(), Classifier.load(run.path)
        seconds = meta["train_seconds"]
        recipe = Recipe.from_dict(meta["recipe"])
    else:
        with tempfile.TemporaryDirectory() as runs:
            t0 = time.perf_counter()
            run = train(recipe, data=ds, seed=seed, runs_dir=runs, monitor_test=False,
                        val_size=val_size if split == "val" else 0, verbose=2)
            seconds = time.perf_counter() - t0
            meta = run.read_metadata()
            clf = Classifier.load(run.path)
            if keep:  # for later measurements, e.g. --measure or predict_throughput
                shutil.copytree(run.path, Path(keep) / f"{recipe_name}-seed{seed}",
                                dirs_exist_ok=True)
    if split == "val":
        _, _, x, y = split_validation(ds.x_train, ds.y_train, val_size, seed=seed)
    else:
        x, y = ds.x_test, ds.y_test
    tta = clf.tta or "flip"
    record: dict[str, Any] = {"seed": seed, "augmentation_options": recipe.augmentation_options,
                              "model_options": recipe.model_options, "epochs": recipe.epochs,
                              "train_seconds": round(seconds, 2),
                              "fit_seconds": meta["train_seconds"], "tta": tta,
                              "precision": meta["settings"]["precision"]["used"],
                              "train_pflops": meta["work"]["train_pflops"],
                              "train_sizes": meta["work"]["train_sizes"],
                              "temperature": clf.temperatures, "accuracy": {},
                              "accuracy_tta": {}}
    for name, images in [("png", x)] + [(f"jpeg{q}", jpeg_copy(x, q)) for q in QUALITIES]:
        raw = predict_probs(clf.model, images)
        raw_tta = predict_probs(clf.model, images, tta=tta)
        record["accuracy"][name] = float((raw.argmax(1) == y).mean())
        record["accuracy_tta"][name] = float((raw_tta.argmax(1) == y).mean())
        if name == "png":
            record["ece_raw"] = expected_calibration_error(raw, y)
            record["ece_raw_tta"] = expected_calibration_error(raw_tta, y)
            record["ece_calibrated"] = expected_calibration_error(
                clf.calibrate(raw, tta=None), y)
            record["ece_calibrated_tta"] = expected_calibration_error(
                clf.calibrate(raw_tta, tta=tta), y)
    if corruption_images:
        sub = stratified_subset(y, corruption_images, seed=seed)  # every class, not the first
        n = len(sub)
        ctta = tta if corruption_tta == "default" else None
        result = score_corruptions(
            lambda images: clf.calibrate(predict_probs(clf.model, images, tta=ctta), tta=ctta),
            x[sub], y[sub], names=True, seed=seed, jpeg_qualities=())
        record["corruptions"] = {
            "images": n, "tta": ctta, "clean_accuracy": result["clean"]["accuracy"],
            "mean_accuracy": result["mean"]["mean_accuracy"],
            "mean_ece": result["mean"]["mean_ece"],
            "per_family": {f: s["mean_accuracy"] for f, s in result["per_family"].items()},
            "held_out_accuracy": result["held_out"]["mean_accuracy"],
            "per_corruption": {c: r["mean_accuracy"]
                               for c, r in result["per_corruption"].items()},
            "generate_seconds": result["generate_seconds"],
            "predict_seconds": result["predict_seconds"],
        }
    record["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return record


def summary(args: argparse.Namespace, options: dict, fields: dict, seeds: list[dict],
            planned: list[int]) -> dict:
    """The benchmark's numbers over the seeds done so far (``seeds_missing`` if not all)."""
    def mean(key: str, sub: str | None = None) -> float:
        return round(statistics.fmean(s[key][sub] if sub else s[key] for s in seeds), 5)

    names = list(seeds[0]["accuracy"])
    missing = planned[len(seeds):]
    corrupted = [s["corruptions"] for s in seeds if "corruptions" in s]
    corruption_means = {
        "images": corrupted[0]["images"],
        "tta": corrupted[0]["tta"],
        "mean_accuracy": round(statistics.fmean(c["mean_accuracy"] for c in corrupted), 5),
        "mean_ece": round(statistics.fmean(c["mean_ece"] for c in corrupted), 5),
        "held_out_accuracy": round(statistics.fmean(c["held_out_accuracy"]
                                                    for c in corrupted), 5),
        "per_family": {f: round(statistics.fmean(c["per_family"][f] for c in corrupted), 5)
                       for f in corrupted[0]["per_family"]},
        "per_corruption": {n: round(statistics.fmean(c["per_corruption"][n]
                                                     for c in corrupted), 5)
                           for n in corrupted[0]["per_corruption"]},
        "range_mean_accuracy": [min(c["mean_accuracy"] for c in corrupted),
                                max(c["mean_accuracy"] for c in corrupted)],
    } if corrupted else None
    return {
        "recipe": args.recipe,
        "split": args.split,
        "images": 10000 if args.split == "test" else args.val_size,
        "augmentation_options": options or "the recipe's",
        "recipe_changes": fields,
        **({"measured_run": args.measure} if getattr(args, "measure", None) else {}),
        **({"seeds_missing": missing} if missing else {}),
        "seeds": seeds,
        "mean_accuracy": {n: mean("accuracy", n) for n in names},
        "mean_accuracy_tta": {n: mean("accuracy_tta", n) for n in names},
        "range_accuracy_tta": {n: [min(s["accuracy_tta"][n] for s in seeds),
                                   max(s["accuracy_tta"][n] for s in seeds)] for n in names},
        "mean_ece_raw": mean("ece_raw"),
        "mean_ece_calibrated": mean("ece_calibrated"),
        "mean_ece_raw_tta": mean("ece_raw_tta"),
        "mean_ece_calibrated_tta": mean("ece_calibrated_tta"),
        "mean_train_seconds": mean("train_seconds"),
        "train_pflops": seeds[0]["train_pflops"],  # counted from layer shapes; every seed alike
        "max_peak_rss_mb": max(s["peak_rss_mb"] for s in seeds),
        **({"mean_corruptions": corruption_means} if corruption_means else {}),
    }


# What must agree between results before their seeds can share one table.
PROTOCOL = ("recipe", "split", "images", "augmentation_options", "recipe_changes")
SEED_PROTOCOL = ("augmentation_options", "model_options", "epochs", "tta")


def _read_result(path: Path) -> dict:
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"{path}: not a readable result file ({e}); give the JSON files "
                         "benchmarks.robustness wrote under benchmarks/results/") from None
    if not isinstance(result, dict) or "seeds" not in result:
        raise SystemExit(f"{path}: no 'seeds' in it; is it a benchmarks.robustness result?")
    return result


def combine(paths: list[Path]) -> dict:
    """The finished seeds of several results of one protocol, as one table.

    A long multi-seed measurement may have to be split over sessions (``--first-seed``), or
    be cut off after some seeds; this checks that the parts measured the same thing (recipe,
    split, options, the corruption images and TTA), that no seed is counted twice, and
    summarises the seeds that finished together, keeping where each came from (file, commit,
    host) and which seeds a cut-off part never ran.
    """
    results = [(Path(f), _read_result(Path(f))) for f in paths]
    seeds: list[dict] = []
    for path, r in results:
        if not r["seeds"]:
            raise SystemExit(f"{path}: no seed finished in it; nothing to combine")
        for key in PROTOCOL:
            if r.get(key) != results[0][1].get(key):
                raise SystemExit(f"{path}: {key} is {r.get(key)!r}, but "
                                 f"{results[0][0]} has {results[0][1].get(key)!r}; "
                                 "only results of one protocol can share a table")
        source = {"file": path.name, "commit": r["commit"], "cpu": r["cpu"]}
        seeds += [{**s, "source": source} for s in r["seeds"]]
    first = seeds[0]
    for s in seeds:
        for key in SEED_PROTOCOL:
            if s.get(key) != first.get(key):
                raise SystemExit(f"{s['source']['file']}: seed {s['seed']} has {key} "
                                 f"{s.get(key)!r}, seed {first['seed']} has "
                                 f"{first.get(key)!r}")
        c, c0 = s.get("corruptions"), first.get("corruptions")
        if (c and (c["images"], c["tta"])) != (c0 and (c0["images"], c0["tta"])):
            raise SystemExit(f"{s['source']['file']}: seed {s['seed']}'s corruptions were "
                             f"scored as {c and (c['images'], c['tta'])!r} (images, TTA), "
                             f"seed {first['seed']}'s as {c0 and (c0['images'], c0['tta'])!r}")
    numbers = sorted(s["seed"] for s in seeds)
    if len(set(numbers)) != len(numbers):
        raise SystemExit(f"a seed appears twice among {numbers}: each seed counts once")
    seeds.sort(key=lambda s: s["seed"])
    head = results[0][1]
    options = head["augmentation_options"]
    args = argparse.Namespace(recipe=head["recipe"], split=head["split"],
                              val_size=head["images"])
    return {**summary(args, options if isinstance(options, dict) else {},
                      head["recipe_changes"], seeds, numbers),
            "combined_from": [{"file": p.name, "commit": r["commit"], "cpu": r["cpu"],
                               "command": r["command"],
                               **({"seeds_not_run": r["seeds_missing"]}
                                  if r.get("seeds_missing") else {})}
                              for p, r in results]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="fast94")
    p.add_argument("--seeds", type=int, default=3, help="seeds first..first+N-1")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--split", choices=["test", "val"], default="test")
    p.add_argument("--val-size", type=int, default=5000)
    p.add_argument("--option", action="append", default=[],
                   help="augmentation option override KEY=VALUE (Python literal)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="recipe field override, e.g. train_size_mode='crop' (Python literal)")
    p.add_argument("--data", default=None)
    p.add_argument("--keep", default=None, help="copy each seed's run directory into this folder")
    p.add_argument("--corruption-images", type=int, default=0, metavar="N",
                   help="also score CIFAR-10-C corruptions (the product's) on N images of the "
                        "split, every class in its share (default 0: not)")
    p.add_argument("--corruption-tta", choices=["default", "none"], default="default",
                   help="TTA for the corruption scores: the recipe's (default) or none, "
                        "six times faster with flips + shifts, for ablations")
    p.add_argument("--measure", default=None, metavar="RUN",
                   help="measure a run kept by --keep instead of training (its seed only)")
    p.add_argument("--combine", nargs="+", default=None, metavar="RESULT",
                   help="write one table of the finished seeds of these result files "
                        "(one protocol, split over sessions with --first-seed); trains nothing")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.combine:
        numbers = combine([Path(f) for f in args.combine])
        path = write_result(f"robustness-{numbers['recipe']}", numbers)
        print(f"{numbers['recipe']} on {numbers['split']}, seeds "
              f"{[s['seed'] for s in numbers['seeds']]}: with TTA "
              f"{numbers['mean_accuracy_tta']} -> {path}")
        return
    options = parse_options(args.option)
    fields = parse_options(args.set)

    if args.child is not None:  # one seed, result as the last line of stdout
        print(json.dumps(run_seed(args.recipe, args.child, args.data, args.split,
                                  args.val_size, options, args.keep, fields,
                                  args.corruption_images, args.corruption_tta,
                                  args.measure)))
        return

    planned = list(range(args.first_seed, args.first_seed + args.seeds))
    if args.measure:
        meta = json.loads((Path(args.measure) / "metadata.json").read_text())
        planned = [int(meta["settings"]["seed"])]
    seeds: list[dict] = []
    path = None
    for seed in planned:
        cmd = ["benchmarks.robustness", "--recipe", args.recipe, "--child", str(seed),
               "--split", args.split, "--val-size", str(args.val_size)]
        cmd += [a for o in args.option for a in ("--option", o)]
        cmd += [a for o in args.set for a in ("--set", o)]
        cmd += ["--data", args.data] if args.data else []
        cmd += ["--keep", str(Path(args.keep).resolve())] if args.keep else []
        cmd += ["--corruption-images", str(args.corruption_images),
                "--corruption-tta", args.corruption_tta]
        cmd += ["--measure", str(Path(args.measure).resolve())] if args.measure else []
        seeds.append(run_child(cmd))
        print(json.dumps(seeds[-1]), flush=True)
        numbers = summary(args, options, fields, seeds, planned)
        path = write_result(f"robustness-{args.recipe}", numbers, path)  # kept if stopped later
    print(f"{args.recipe} on {args.split}: accuracy {numbers['mean_accuracy']}, with TTA "
          f"{numbers['mean_accuracy_tta']}; ECE raw {numbers['mean_ece_raw_tta']:.4f} -> "
          f"calibrated {numbers['mean_ece_calibrated_tta']:.4f} (TTA); training "
          f"{numbers['mean_train_seconds']:.1f} s, {numbers['train_pflops']:.3f} PFLOP -> {path}")


if __name__ == "__main__":
    main()
