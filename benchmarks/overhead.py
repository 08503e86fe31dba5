"""Time cifar-cnn's training against plain ``model.fit`` on the same arrays, same process.

The toolkit adds callbacks (progress, CSV, TensorBoard, checkpoints), the run directory and
model saving around Keras ``fit``; this measures what that costs. Both sides train the same
network with the same recipe settings, seed and validation data; the dataset is loaded once
beforehand and not timed. With ``--repeats R`` the two sides alternate (A B B A ...) so that
drift in the machine's speed falls on both; the ratio is total toolkit time / total plain time.

Usage:
    python -m benchmarks.overhead --data ../shared/datasets/cifar10 --epochs 10 --repeats 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras

from benchmarks.common import write_result
from cifar_cnn import train
from cifar_cnn.data import load_cifar10
from cifar_cnn.models import create_model
from cifar_cnn.recipes import get_recipe


def plain_fit(ds, recipe, epochs: int, seed: int) -> tuple[float, float]:
    """Plain Keras, as the TensorFlow tutorial writes it. Returns (seconds, test accuracy)."""
    keras.utils.set_random_seed(seed)
    model = create_model(recipe.model, num_classes=ds.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    t0 = time.perf_counter()
    hist = model.fit(ds.x_train, ds.y_train, batch_size=recipe.batch_size, epochs=epochs,
                     validation_data=(ds.x_test, ds.y_test),
                     validation_batch_size=max(recipe.batch_size, 256), verbose=2)
    return time.perf_counter() - t0, float(hist.history["val_accuracy"][-1])


def toolkit_fit(ds, recipe_name: str, epochs: int, seed: int, runs_dir: Path,
                name: str) -> tuple[float, float, Path]:
    """cifar_cnn.train, timed whole (model build, fit, run directory, save)."""
    t0 = time.perf_counter()
    run = train(recipe_name, epochs=epochs, data=ds, seed=seed, runs_dir=runs_dir, name=name,
                verbose=2)
    seconds = time.perf_counter() - t0
    return seconds, run.read_metadata()["final_metrics"]["test_accuracy"], run.path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None)
    p.add_argument("--recipe", default="baseline")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--name", default="overhead")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()

    ds = load_cifar10(args.data)
    recipe = get_recipe(args.recipe)
    epochs = args.epochs or recipe.epochs
    plain: list[float] = []
    ours: list[float] = []
    accs: dict[str, float] = {}
    runs: list[str] = []
    for i in range(args.repeats):
        for side in ("plain", "ours") if i % 2 == 0 else ("ours", "plain"):
            if side == "plain":
                seconds, accs["plain"] = plain_fit(ds, recipe, epochs, args.seed)
                plain.append(round(seconds, 2))
            else:
                seconds, accs["ours"], run = toolkit_fit(ds, args.recipe, epochs, args.seed,
                                                         Path(args.runs_dir), args.name)
                ours.append(round(seconds, 2))
                runs.append(str(run))
            print(f"{side}: {seconds:.1f} s", flush=True)
    ratio = sum(ours) / sum(plain)
    numbers = {
        "recipe": args.recipe,
        "epochs": epochs,
        "seed": args.seed,
        "repeats": args.repeats,
        "num_train": len(ds.x_train),
        "plain_fit_seconds": plain,
        "plain_fit_test_accuracy": accs["plain"],
        "cifar_cnn_seconds": ours,
        "cifar_cnn_test_accuracy": accs["ours"],
        "overhead_ratio": round(ratio, 4),
        "run_dirs": runs,
    }
    path = write_result("overhead", numbers)
    print(f"plain fit {plain} s, cifar-cnn {ours} s, ratio {ratio:.3f}  -> {path}")


if __name__ == "__main__":
    main()
