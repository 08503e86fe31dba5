"""Time to accuracy: train a recipe for several seeds; record test accuracy, time and memory.

Each seed runs in a fresh process (clean TensorFlow state, honest peak memory). Training
time is the wall time of ``cifar_cnn.train`` with the decoded dataset already in memory:
model building, data-dependent initialisation, graph tracing, augmentation and every step
up to the saved final weights. Nothing is evaluated during training (``monitor_test=False``);
the test set is evaluated afterwards, untimed, without and with the recipe's test-time
augmentation (flips if it has none), and so are the weights kept at the end of each epoch
(``curve``: test accuracy against training time; ``benchmarks.plot_curves`` draws it).

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
import tempfile
import time

import keras

from benchmarks.common import run_child, write_result


class EpochSnapshots(keras.callbacks.Callback):
    """Keeps the weights at each epoch's end and the wall time since ``t0`` then.

    Copying ~2M weights takes milliseconds, so the timed training barely notices; the
    snapshots are evaluated on the test set after training, untimed (the accuracy curve).
    """

    def __init__(self, t0: float) -> None:
        super().__init__()
        self.t0 = t0
        self.snapshots: list[tuple[float, list]] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.snapshots.append((time.perf_counter() - self.t0, self.model.get_weights()))


def run_seed(recipe: str, seed: int, data: str | None, epochs: int | None) -> dict:
    """Train and evaluate one seed in this process; returns the per-seed record."""
    from cifar_cnn import train
    from cifar_cnn.data import load_cifar10
    from cifar_cnn.predict import Classifier, predict_probs

    ds = load_cifar10(data)

    def accuracy(model: keras.Model, tta: str | None = None) -> float:
        return float((predict_probs(model, ds.x_test, tta=tta).argmax(1) == ds.y_test).mean())

    with tempfile.TemporaryDirectory() as runs:
        t0 = time.perf_counter()
        snapshots = EpochSnapshots(t0)
        run = train(recipe, epochs=epochs, data=ds, seed=seed, runs_dir=runs,
                    monitor_test=False, verbose=2, callbacks=[snapshots])
        seconds = time.perf_counter() - t0
        meta = run.read_metadata()
        clf = Classifier.load(run.path)
        acc = accuracy(clf.model)
        tta = clf.tta or "flip"  # the recipe's test-time augmentation, else flips
        acc_tta = accuracy(clf.model, tta)
        curve = []
        for epoch, (at, weights) in enumerate(snapshots.snapshots, start=1):
            clf.model.set_weights(weights)
            curve.append({"epoch": epoch, "seconds": round(at, 2),
                          "test_accuracy": accuracy(clf.model)})
    images = meta["epochs_done"] * meta["dataset"]["num_train"]
    return {
        "seed": seed,
        "epochs": meta["epochs_done"],
        "test_accuracy": acc,
        "test_accuracy_tta": acc_tta,
        "tta": tta,
        "precision": meta["settings"]["precision"]["used"],
        "train_seconds": round(seconds, 2),
        "fit_seconds": meta["train_seconds"],  # inside train(): model build, init, fit
        "train_pflops": meta["work"]["train_pflops"],  # see cifar_cnn.training.work
        "train_sizes": meta["work"]["train_sizes"],
        "images_per_second": round(images / seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "curve": curve,  # test accuracy (no TTA) after each epoch, at its training time
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
        cmd = ["benchmarks.time_to_accuracy", "--recipe", args.recipe, "--child", str(seed)]
        cmd += ["--data", args.data] if args.data else []
        cmd += ["--epochs", str(args.epochs)] if args.epochs else []
        record = run_child(cmd)
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
        "train_pflops": seeds[0]["train_pflops"],  # the same for every seed
        "mean_images_per_second": mean("images_per_second"),
        "max_peak_rss_mb": max(s["peak_rss_mb"] for s in seeds),
    }
    path = write_result(f"time_to_accuracy-{args.recipe}", numbers)
    print(f"{args.recipe}: mean test accuracy {numbers['mean_test_accuracy']:.4f} "
          f"(TTA {numbers['mean_test_accuracy_tta']:.4f}) over {len(seeds)} seeds, "
          f"mean training time {numbers['mean_train_seconds']:.1f} s, "
          f"{numbers['train_pflops']:.3f} PFLOP of training work -> {path}")


if __name__ == "__main__":
    main()
