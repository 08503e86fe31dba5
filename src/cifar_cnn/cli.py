"""The ``cifar-cnn`` command: one subcommand per step, each a thin call into the Python API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cifar_cnn import __version__
from cifar_cnn.errors import CifarCnnError


def _quiet_tensorflow() -> None:
    """Hide TensorFlow's C++ start-up chatter unless the user asked for it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cmd_train(args: argparse.Namespace) -> int:
    from cifar_cnn.training import train

    try:
        run = train(
            args.recipe,
            model=args.model,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            precision=args.precision,
            data=args.data,
            val_size=args.val_size,
            monitor_test=not args.no_monitor,
            seed=args.seed,
            runs_dir=args.runs_dir,
            name=args.name,
            resume=args.resume,
            verbose=0 if args.quiet else "auto",
        )
    except KeyboardInterrupt:
        return 130  # train() has said how to resume
    meta = run.read_metadata()
    fm = meta["final_metrics"]
    monitored = {"validation": "val", "test": "test"}.get(meta["settings"]["monitor"])
    acc = f"; {monitored} accuracy {fm[f'{monitored}_accuracy']:.4f}" if monitored else ""
    print(f"Saved {run.model} ({meta['epochs_done']} epochs in {meta['train_seconds']:.1f} s, "
          f"{fm['images_per_sec']:.0f} images/s{acc})")
    print(f"Next: cifar-cnn evaluate {run.path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cifar_cnn.evaluation import evaluate
    from cifar_cnn.evaluation.metrics import format_metrics_table

    metrics = evaluate(args.run, data=args.data, split=args.split, tta=args.tta,
                       report=not args.no_report)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(format_metrics_table(metrics))
        if not args.no_report:
            print(f"\nReport: {Path(args.run) / 'report' / 'report.html'}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from cifar_cnn.errors import ImageError
    from cifar_cnn.predict import Classifier

    clf = Classifier.load(args.run)
    results, failed = [], 0
    for f in args.images:
        try:
            probs = clf.predict([f], tta=args.tta, calibrated=args.calibrated)
        except ImageError as e:
            failed += 1
            print(f"error: {e}", file=sys.stderr)
            results.append({"file": f, "error": str(e)})
            continue
        top = clf.top_k(probs, args.top_k)[0]
        results.append({"file": f, "predictions": [{"class": c, "probability": p}
                                                   for c, p in top]})
        if not args.json:
            print(f)
            for c, p in top:
                print(f"  {c:<12} {p * 100:6.2f}%")
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from cifar_cnn.evaluation.compare import compare_runs
    from cifar_cnn.evaluation.plots import read_history_csv
    from cifar_cnn.files import read_json
    from cifar_cnn.runs import RunDir

    runs = []
    for path in args.runs:
        rd = RunDir(Path(path))
        rd.read_metadata()  # a clear error for a folder that is not a run
        metrics_file = rd.report / "metrics.json"
        runs.append({
            "name": rd.name,
            "history": read_history_csv(rd.history) if rd.history.is_file() else {},
            "metrics": read_json(metrics_file) if metrics_file.is_file() else {},
        })
    table, png = compare_runs(runs, args.out)
    print(table)
    if png is not None:
        print(f"\nPlot: {png}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from cifar_cnn.models import list_models
    from cifar_cnn.recipes import get_recipe, list_recipes

    print("Recipes (cifar-cnn train --recipe NAME):")
    for name in list_recipes():
        r = get_recipe(name)
        print(f"  {name:<10} model={r.model}, {r.epochs} epochs, batch {r.batch_size}, "
              f"{r.optimizer} lr={r.learning_rate}, {r.precision}. {r.description}")
    print("Models (cifar-cnn train --model NAME):")
    for name in list_models():
        print(f"  {name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cifar-cnn",
        description="Train, evaluate and use CNN image classifiers on CIFAR-10.",
    )
    parser.add_argument("--version", action="version", version=f"cifar-cnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_help = ("CIFAR-10 location: the official archive, its extracted batches, or a "
                 "train/<class>/ + test/<class>/ image tree (default: $CIFAR_CNN_DATA, "
                 "else download once)")

    p = sub.add_parser("train", help="train a network; writes runs/<name>/")
    p.add_argument("--recipe", default="baseline", help="named recipe (see `cifar-cnn models`)")
    p.add_argument("--model", help="network name, overriding the recipe's")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    p.add_argument("--lr", type=float, help="override the recipe's learning rate")
    p.add_argument("--precision", choices=["float32", "mixed_bfloat16", "mixed_float16"],
                   help="override the recipe's precision policy")
    p.add_argument("--data", help=data_help)
    p.add_argument("--val-size", type=int, default=0,
                   help="hold out N training images (stratified) for validation and "
                        "calibration; 0 monitors the test set, as the TF tutorial does")
    p.add_argument("--no-monitor", action="store_true",
                   help="without --val-size: do not evaluate the test set after each epoch")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--runs-dir", default="runs", help="parent folder for runs (default runs/)")
    p.add_argument("--name", help="run folder name (default: the recipe's name)")
    p.add_argument("--resume", metavar="RUN",
                   help="continue an interrupted run from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="metrics, plots and an HTML report for a run")
    p.add_argument("run", help="run directory")
    p.add_argument("--data", help=data_help)
    p.add_argument("--split", choices=["test", "val"], default="test")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="flip test-time augmentation (default: the recipe's setting)")
    p.add_argument("--json", action="store_true", help="print metrics.json to stdout")
    p.add_argument("--no-report", action="store_true", help="skip writing RUN/report/")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="class probabilities for image files")
    p.add_argument("run", help="run directory or .keras model file")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, BMP, GIF, WebP, TIFF...)")
    p.add_argument("--top-k", type=int, default=3, help="classes to show per image (default 3)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="flip test-time augmentation (default: the recipe's setting)")
    p.add_argument("--calibrated", action="store_true",
                   help="apply the temperature learned by `evaluate` on the validation split")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("compare", help="compare runs: table and overlaid training curves")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", default=None, help="write the overlay plot to this PNG")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("models", help="list recipes and networks")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cifar-cnn`` command; returns the exit code."""
    _quiet_tensorflow()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CifarCnnError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
