"""The ``cifar-cnn`` command: one subcommand per step, each a thin call into the Python API."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path

from cifar_cnn import __version__
from cifar_cnn.errors import CifarCnnError, WorkerLostError
from cifar_cnn.export import FORMATS
from cifar_cnn.serve.limits import Limits, limit_options
from cifar_cnn.training.config import cli_options
from cifar_cnn.tta import TTA_CHOICES, TTA_DEFAULT


@contextlib.contextmanager
def _native_stderr_hidden() -> Iterator[None]:
    """Send what native code writes to stderr (file descriptor 2) aside; replay it on error."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as aside:
        os.dup2(aside.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            aside.seek(0)
            sys.stderr.write(aside.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _quiet_tensorflow() -> None:
    """Hide TensorFlow's C++ and absl log lines (oneDNN, CPU features, a CUDA probe that
    fails on every machine without a GPU). Users read them as our failures; real errors
    reach them as exceptions, which `main` words. ``--verbose`` shows everything."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # A few lines are written while TensorFlow loads, before the level above applies.
    with _native_stderr_hidden():
        import tensorflow  # noqa: F401
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)


def cmd_train(args: argparse.Namespace) -> int:
    from cifar_cnn.card import read_run_card
    from cifar_cnn.training import train
    from cifar_cnn.training.config import config_from_args

    try:
        run = train(config_from_args(args))
    except KeyboardInterrupt:
        return 130  # train() has said how to resume
    card = read_run_card(run) if run.metadata.is_file() else None
    if card is None or card.status != "complete":  # a multi-worker job's other workers
        print(f"This worker's part is done; the chief writes {run.path}.")
        return 0
    fm = card.final_metrics or {}
    monitored = {"validation": "val", "test": "test"}.get(card.monitor)
    acc = f"; {monitored} accuracy {fm[f'{monitored}_accuracy']:.4f}" if monitored else ""
    epochs = f"{card.epochs_done} epoch{'s' if card.epochs_done != 1 else ''}"
    print(f"Saved {run.model} ({epochs} in {card.train_seconds:.1f} s, "
          f"{fm['images_per_sec']:.0f} images/s{acc})")
    print(f"Next: cifar-cnn evaluate {run.path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cifar_cnn.evaluation import evaluate
    from cifar_cnn.evaluation.metrics import format_metrics_table
    from cifar_cnn.runs import RunDir

    metrics = evaluate(args.run, data=args.data, split=args.split, tta=args.tta,
                       report=not args.no_report, corruptions=args.corruptions or False,
                       corruption_images=args.corruption_images, seed=args.corruption_seed)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(format_metrics_table(metrics))
        if "corruptions" in metrics:
            from cifar_cnn.evaluation.corruptions import format_corruption_table

            print("\n" + format_corruption_table(metrics["corruptions"]))
        if not args.no_report:
            print(f"\nReport: {RunDir(Path(args.run)).report_html}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from cifar_cnn.predict import MAX_PIXELS, Classifier
    from cifar_cnn.runs import resolve_artifact

    model, inputs = split_model_and_inputs(args.inputs)
    artifact = resolve_artifact(model)
    clf = Classifier.load(artifact)
    if not args.verbose and artifact.format == "litert":
        import numpy as np

        # LiteRT logs creating its XNNPACK delegate on the first call; make that call here.
        with _native_stderr_hidden():
            clf.model.predict(np.zeros((1, *clf.spec.shape), np.uint8))
    calibrated = False if args.uncalibrated else (True if args.calibrated else None)
    results = clf.predict_files(inputs, top_k=args.top_k, tta=args.tta,
                                calibrated=calibrated, batch_size=args.batch_size,
                                workers=args.workers, max_pixels=args.max_pixels or MAX_PIXELS)
    out, failed, total = sys.stdout, 0, 0
    if args.json:
        out.write("[")
    for pred in results:  # streamed: each batch is written as soon as it is predicted
        total += 1
        if pred.error is not None:
            failed += 1
            print(f"error: {pred.error}", file=sys.stderr)
        if args.json:
            out.write(("," if total > 1 else "") + "\n" + json.dumps(pred.to_dict()))
        elif args.jsonl:
            out.write(json.dumps(pred.to_dict()) + "\n")
        elif pred.error is None:
            out.write(pred.file + "\n")
            for c, p in pred.top_k or ():
                out.write(f"  {c:<12} {p * 100:6.2f}%\n")
    if args.json:
        out.write("\n]\n")
    out.flush()
    if failed:
        print(f"{failed} of {total} inputs could not be read; the others were predicted.",
              file=sys.stderr)
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from cifar_cnn.errors import ExportParityError
    from cifar_cnn.export import export_run

    failed = None
    # Converters log on the native stderr: hidden, and replayed if the export crashes.
    with contextlib.nullcontext() if args.verbose else _native_stderr_hidden():
        try:
            result = export_run(args.run, args.format, quantize=args.quantize, out=args.out,
                                data=args.data, seed=args.seed)
        except ExportParityError as e:  # the numbers say it all
            failed = e
    if failed is not None:
        print(f"error: {failed}", file=sys.stderr)
        print(json.dumps(failed.report, indent=2), file=sys.stderr)
        return 1
    print(f"Exported {result.path} ({result.card.export['parity']}; within "
          f"{_limits(result.parity.limits)})")
    print(f"Next: cifar-cnn predict {result.path} IMAGE")
    return 0


def _limits(limits: dict[str, float | None]) -> str:
    return ", ".join(f"{k} {v}" for k, v in limits.items() if v is not None)


def cmd_serve(args: argparse.Namespace) -> int:
    from cifar_cnn.serve import create_app, run_server

    try:
        app = create_app(args.run, tta=args.tta,
                         **{f.name: getattr(args, f.name) for f in fields(Limits)})
        service = app.state.service
        run_server(app, args.host, args.port,
                   log_level="info" if args.verbose else "warning",
                   access_log=args.verbose or args.access_log,
                   on_ready=lambda url: print(f"Serving {service.name} ({service.version}) on "
                                              f"{url}", flush=True))
    except KeyboardInterrupt:  # before the server took over Ctrl-C (loading the model)
        return 130
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from cifar_cnn.evaluation.compare import compare_runs
    from cifar_cnn.runs import RunDir

    runs = []
    for path in args.runs:
        rd = RunDir(Path(path))
        rd.read_metadata()  # a clear error for a folder that is not a run
        runs.append({"name": rd.name, "history": rd.read_history(), "metrics": rd.read_metrics()})
    table, png = compare_runs(runs, args.out)
    print(table)
    if png is not None:
        print(f"\nPlot: {png}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from cifar_cnn.models import list_models
    from cifar_cnn.recipes import get_recipe, list_recipes
    from cifar_cnn.training.work import train_flops

    print("Recipes (cifar-cnn train --recipe NAME; work: training FLOPs on CIFAR-10's "
          "49,000 images left after calibration):")
    for name in list_recipes():
        r = get_recipe(name)
        sizes = f", image sizes by epoch {r.epoch_sizes(32)}" if r.train_sizes else ""
        print(f"  {name:<10} model={r.model}, {r.epochs} epochs, batch {r.batch_size}, "
              f"{r.optimizer} lr={r.learning_rate}, {r.precision}{sizes}, work "
              f"{train_flops(r, 49000) / 1e15:.3f} PFLOP. {r.description}")
    print("Models (cifar-cnn train --model NAME):")
    for name in list_models():
        print(f"  {name}")
    return 0


def _add_tta(p: argparse.ArgumentParser) -> None:
    """``--tta [MODE]`` and ``--no-tta``: test-time augmentation, as HTTP's ``tta`` option."""
    p.add_argument("--tta", nargs="?", const=True, default=None, choices=TTA_CHOICES,
                   metavar="MODE",
                   help=f"test-time augmentation: {', '.join(TTA_CHOICES)} (default: the "
                        "run's recipe's; --tta alone: that, or flip if it has none)")
    p.add_argument("--no-tta", dest="tta", action="store_const", const=False,
                   help="no test-time augmentation (the same as --tta none)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cifar-cnn",
        description="Train, evaluate and use CNN image classifiers on CIFAR-10.",
    )
    parser.add_argument("--version", action="version", version=f"cifar-cnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own log lines (hidden by default)")
    data_help = ("the images: a folder (DIR/train/<class>/ with optional val/ and test/, "
                 "or DIR/<class>/), the CIFAR-10 or CIFAR-100 archive or its extracted "
                 "folder, or cifar10 / cifar100 (default: the data the run was trained on)")

    p = sub.add_parser("train", parents=[common], help="train a network; writes runs/<name>/")
    for flag, options in cli_options():  # one per TrainConfig field
        p.add_argument(flag, **options)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", parents=[common],
                       help="metrics, plots and an HTML report for a run")
    p.add_argument("run", help="run directory")
    p.add_argument("--data", help=data_help)
    p.add_argument("--split", choices=["test", "val"], default="test")
    _add_tta(p)
    p.add_argument("--json", action="store_true", help="print metrics.json to stdout")
    p.add_argument("--no-report", action="store_true", help="skip writing RUN/report/")
    p.add_argument("--corruptions", nargs="?", const="all", default=None, metavar="NAMES",
                   help="also score CIFAR-10-C corruptions made from the split at severities "
                        "1-5, and JPEG at quality 95/75/50: all 19 when given alone (after "
                        "RUN), or comma-separated corruption names, families (noise, blur, "
                        "weather, digital), benchmark (the 15) or held_out (the 4)")
    p.add_argument("--corruption-images", type=int, default=None, metavar="N",
                   help="score the corruptions on N of the split's images, every class in "
                        "its share, chosen by --corruption-seed (default: all; each "
                        "corruption and severity predicts them once more)")
    p.add_argument("--corruption-seed", type=int, default=0, metavar="SEED",
                   help="random numbers of the corruptions (default 0)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", parents=[common], help="class probabilities for image files")
    p.add_argument("inputs", nargs="+", metavar="[RUN] IMAGE",
                   help="optionally a run directory, .keras model file or export (SavedModel "
                        "folder, .tflite, .onnx) first (default: the packaged model), "
                        "then image files (PNG, JPEG, BMP, GIF, WebP, TIFF...), directories "
                        "(read recursively) or glob patterns")
    p.add_argument("--top-k", type=int, default=3, help="classes to list per image (default 3)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true",
                     help="a JSON array: per image all class probabilities and the top-k")
    out.add_argument("--jsonl", action="store_true",
                     help="the same as JSON Lines, one image per line as it is predicted")
    _add_tta(p)
    cal = p.add_mutually_exclusive_group()
    cal.add_argument("--uncalibrated", action="store_true",
                     help="the model's raw probabilities (default: calibrated with the "
                          "temperature fitted after training, when the run has one)")
    cal.add_argument("--calibrated", action="store_true",
                     help="require calibrated probabilities: an error if the run has none")
    p.add_argument("--batch-size", type=int, default=1000,
                   help="images decoded and predicted together (default 1000)")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding threads (default: one per CPU core)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse images with more pixels than this, before decoding them "
                        "(decompression bombs; default: cifar_cnn.predict.MAX_PIXELS, 80 "
                        "megapixels)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", parents=[common],
                       help="a run's model as a SavedModel, LiteRT or ONNX file, checked "
                            "against the Keras model on the test set")
    p.add_argument("run", help="run directory")
    p.add_argument("--format", choices=list(FORMATS), default="savedmodel",
                   help="savedmodel (TF Serving; uint8 pixels or encoded images), litert "
                        "(.tflite) or onnx (default savedmodel)")
    p.add_argument("--quantize", choices=sorted({q for qs in FORMATS.values() for q in qs
                                                 if q is not None}),
                   help="litert only: float16 weights, or full-integer int8 (activation "
                        "ranges from a few hundred training images)")
    p.add_argument("--out", help="export folder (default RUN/export/FORMAT[-QUANTIZE]; for "
                                 "the packaged model exports/robust/... in this directory); "
                                 "replaced only when the new export passes")
    p.add_argument("--data", help=data_help + "; its test (else validation) split gates "
                                              "the export")
    p.add_argument("--seed", type=int, default=0,
                   help="picks int8's representative images (default 0)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", parents=[common],
                       help="an HTTP prediction service (also TensorFlow Serving's REST API)")
    p.add_argument("run", nargs="?", default=None, metavar="RUN",
                   help="run directory or .keras model file (default: the packaged model)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only; "
                        "0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0: any free)")
    for flag, kwargs in limit_options():  # the service's limits, defaults in `Limits`
        p.add_argument(flag, **kwargs)
    p.add_argument("--tta", choices=TTA_CHOICES, default=TTA_DEFAULT,
                   help="test-time augmentation of requests that do not choose one (default: "
                        "the run's recipe's; flip_translate costs six model passes per image, "
                        "none the most throughput)")
    p.add_argument("--access-log", action="store_true", help="log one line per request")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("compare", parents=[common],
                       help="compare runs: table and overlaid training curves")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", default=None, help="write the overlay plot to this PNG")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("models", parents=[common], help="list recipes and networks")
    p.set_defaults(func=cmd_models)
    return parser


_python_format_warning = warnings.formatwarning


def _format_warning(message: Warning | str, category: type[Warning], filename: str,
                    lineno: int, line: str | None = None) -> str:
    """cifar-cnn's own warnings (`cifar_cnn.data.DataWarning`...) as one plain line."""
    if category.__module__.startswith("cifar_cnn"):
        return f"warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cifar-cnn`` command; returns the exit code."""
    warnings.formatwarning = _format_warning
    args = build_parser().parse_args(argv)
    if not args.verbose:
        _quiet_tensorflow()
    try:
        return int(args.func(args))
    except BrokenPipeError:  # the reader went away (`cifar-cnn predict ... | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except CifarCnnError as e:
        print(f"error: {e}", file=sys.stderr)
        if isinstance(e, WorkerLostError):
            # TensorFlow's teardown of the cluster can wait on the lost worker for minutes
            # (seen in CI); the checkpoints are on disk, so leave at once.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2


def split_model_and_inputs(items: Sequence[str]) -> tuple[str | None, list[str]]:
    """``[MODEL] IMAGE...``: a leading run, ``.keras`` file or export is the model (None:
    the packaged default); the rest are inputs.

    A first argument that names nothing and cannot be an image or a pattern is taken for
    a mistyped model, better reported as such than as an unreadable image.

    Raises:
        CifarCnnError: if the only argument is a model.
    """
    import glob

    from cifar_cnn.images import IMAGE_SUFFIXES
    from cifar_cnn.runs import is_model_path

    first = items[0]
    p = Path(first)
    missing_model = (len(items) > 1 and not p.exists()
                     and p.suffix.lower() not in IMAGE_SUFFIXES and not glob.has_magic(first))
    if is_model_path(first) or missing_model:
        if len(items) == 1:
            raise CifarCnnError(f"No images given: {first} is a model; add image files, "
                                "directories or patterns after it.")
        return first, list(items[1:])
    return None, list(items)
