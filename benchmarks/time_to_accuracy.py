"""Time to accuracy: train a recipe for several seeds; record test accuracy, time and memory.

Each seed runs in a fresh process (clean TensorFlow state, honest peak memory). Training
time is the wall time of ``cifar_cnn.train`` with the decoded dataset already in memory:
model building, data-dependent initialisation, graph tracing, augmentation and every step
up to the saved final weights. Nothing is evaluated during training (``monitor_test=False``);
the test set is evaluated afterwards, untimed, without and with the recipe's test-time
augmentation (flips if it has none).

Writes ``benchmarks/results/time_to_accuracy-<recipe>-<UTC time>.json``.

Usage:
    python -m benchmarks.time_to_accuracy --recipe baseline --seeds 5 \\
        --data ../shared/datasets/cifar10
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_result


def run_seed(recipe: str, seed: int, data: str | None, epochs: int | None) -> dict:
    """Train and evaluate one seed in this process; returns the per-seed record."""
    from cifar_cnn import train
    from cifar_cnn.data import load_cifar10
    from cifar_cnn.predict import Classifier, predict_probs

    ds = load_cifar10(data)
    with tempfile.TemporaryDirectory() as runs:
        t0 = time.perf_counter()
        run = train(recipe, epochs=epochs, data=ds, seed=seed, runs_dir=runs,
                    monitor_test=False, verbose=2)
        seconds = time.perf_counter() - t0
        meta = run.read_metadata()
        clf = Classifier.load(run.path)
        acc = float((predict_probs(clf.model, ds.x_test).argmax(1) == ds.y_test).mean())
        tta = clf.tta or "flip"  # the recipe's test-time augmentation, else flips
        acc_tta = float(
            (predict_probs(clf.model, ds.x_test, tta=tta).argmax(1) == ds.y_test).mean())
    images = meta["epochs_done"] * meta["dataset"]["num_train"]
    return {
        "seed": seed,
        "epochs": meta["epochs_done"],
        "test_accuracy": acc,
        "test_accuracy_tta": acc_tta,
        "tta": tta,
        "train_seconds": round(seconds, 2),
        "fit_seconds": meta["train_seconds"],  # inside train(): model build, init, fit
        "images_per_second": round(images / seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="baseline")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--data", default=None)
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child is not None:  # one seed, result as the last line of stdout
        print(json.dumps(run_seed(args.recipe, args.child, args.data, args.epochs)))
        return

    seeds = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        cmd = [sys.executable, "-m", "benchmarks.time_to_accuracy", "--recipe", args.recipe,
               "--child", str(seed)]
        cmd += ["--data", args.data] if args.data else []
        cmd += ["--epochs", str(args.epochs)] if args.epochs else []
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1]) as child:
            lines = []
            for line in child.stdout:  # echo the child's progress, keep its last line
                print(line, end="", file=sys.stderr, flush=True)
                lines.append(line)
        if child.returncode:
            raise SystemExit(f"seed {seed} failed (exit {child.returncode})")
        record = json.loads(lines[-1])
        seeds.append(record)
        print(json.dumps(record), flush=True)

    def mean(key: str) -> float:
        return round(statistics.fmean(s[key] for s in seeds), 5)

    numbers = {
        "recipe": args.recipe,
        "tta": seeds[0]["tta"] + " (see cifar_cnn.predict.predict_probs)",
        "test_images": 10000,
        "seeds": seeds,
        "mean_test_accuracy": mean("test_accuracy"),
        "std_test_accuracy": round(statistics.pstdev(s["test_accuracy"] for s in seeds), 5),
        "mean_test_accuracy_tta": mean("test_accuracy_tta"),
        "mean_train_seconds": mean("train_seconds"),
        "mean_images_per_second": mean("images_per_second"),
        "max_peak_rss_mb": max(s["peak_rss_mb"] for s in seeds),
    }
    path = write_result(f"time_to_accuracy-{args.recipe}", numbers)
    print(f"{args.recipe}: mean test accuracy {numbers['mean_test_accuracy']:.4f} "
          f"(TTA {numbers['mean_test_accuracy_tta']:.4f}) over {len(seeds)} seeds, "
          f"mean training time {numbers['mean_train_seconds']:.1f} s -> {path}")


if __name__ == "__main__":
    main()
