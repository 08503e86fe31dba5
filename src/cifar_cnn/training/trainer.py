"""Training: a recipe, data and a seed in; a complete run directory out."""

from __future__ import annotations

import csv
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cifar_cnn.calibration import fit_calibration
from cifar_cnn.data import CifarData, load_cifar10, split_validation
from cifar_cnn.data.augment import make_train_dataset
from cifar_cnn.errors import RunError
from cifar_cnn.files import atomic_path, read_json, write_json
from cifar_cnn.models import create_model, data_dependent_init
from cifar_cnn.recipes import Recipe, get_recipe
from cifar_cnn.runs import RunDir, environment_info, new_run_dir
from cifar_cnn.training.callbacks import EpochBackupAndRestore, EpochTensorBoard, Progress
from cifar_cnn.tta import TTA_MODES, predict_probs


def build_model(recipe: Recipe, num_classes: int, input_shape: tuple[int, int, int],
                steps_per_epoch: int) -> keras.Model:
    """Create and compile the recipe's network under its precision policy."""
    model = create_model(recipe.model, num_classes=num_classes, input_shape=input_shape,
                         **recipe.model_options)
    model.compile(
        optimizer=recipe.build_optimizer(steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing)
        if recipe.label_smoothing
        else keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    return model


def _trim_history(path: Path, epochs_done: int) -> None:
    """Drop history rows of epochs that the last checkpoint does not cover (killed mid-save)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < epochs_done]
    if len(keep) != len(rows):
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(keep)


def calibration_holdout(recipe: Recipe, num_train: int, num_classes: int) -> int:
    """How many training images to hold out for calibration: the recipe's number, at most a
    tenth of the training set, and none if that leaves fewer than one per class."""
    n = min(recipe.calibration_size, num_train // 10)
    return n if n >= num_classes else 0


def calibrate(model: keras.Model, x: np.ndarray, y: np.ndarray, fit_on: str,
              seed: int) -> dict[str, Any]:
    """Fit a temperature for every TTA mode on held-out images (calibration.json's content)."""
    t0 = time.perf_counter()
    modes = fit_calibration({m: predict_probs(model, x, tta=m) for m in (None, *TTA_MODES)}, y)
    return {"fit_on": fit_on, "num_images": len(y), "seed": seed, "modes": modes,
            "seconds": round(time.perf_counter() - t0, 3)}


def _checkpoint_epoch(checkpoints: Path) -> int:
    meta = checkpoints / "training_metadata.json"
    if not meta.is_file():
        return 0
    return int(read_json(meta)["epoch"])


def train(
    recipe: str | Recipe = "baseline",
    *,
    model: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    precision: str | None = None,
    data: str | os.PathLike[str] | CifarData | None = None,
    val_size: int = 0,
    monitor_test: bool = True,
    calibration_size: int | None = None,
    seed: int = 0,
    runs_dir: str | os.PathLike[str] = "runs",
    name: str | None = None,
    resume: str | os.PathLike[str] | None = None,
    verbose: int | str = "auto",
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> RunDir:
    """Train a network and write a run directory.

    Args:
        recipe: a recipe name (see ``cifar-cnn models``) or a `Recipe`.
        model, epochs, batch_size, learning_rate, precision: override the recipe's values.
        data: where CIFAR-10 is (see `cifar_cnn.data.load_cifar10`), or a `CifarData`.
        val_size: hold out this many training images (stratified) as a validation set that
            is monitored each epoch. With 0, the test set is monitored each epoch instead,
            as the TensorFlow tutorial does; never tune settings on it.
        monitor_test: with ``val_size=0``, whether to evaluate the test set after each
            epoch. False evaluates nothing during training (the fastest; used for timing).
        calibration_size: without `val_size`, training images held out (stratified) to fit
            the temperature that calibrates predicted probabilities after training
            (default: the recipe's; at most a tenth of the training set; 0: none).
        seed: seeds weight initialisation, shuffling, augmentation and the held-out splits.
        runs_dir: parent folder of run directories.
        name: run folder name (default: the recipe's name, numbered if taken).
        resume: a run directory to continue from its last checkpoint; every other setting
            (the data path too, unless `data` is given) is read from its metadata.json.
        verbose: "auto" (a live bar on a terminal, a line per epoch otherwise), 0, 1 or 2.
        callbacks: more Keras callbacks for ``model.fit``, called after cifar-cnn's own
            (progress, checkpoints, history.csv, TensorBoard).

    Returns:
        The `RunDir` holding model.keras, metadata.json, calibration.json, history.csv,
        checkpoints/ and tensorboard/.

    Example:
        >>> run = cifar_cnn.train("baseline", epochs=10, data="../shared/datasets/cifar10")
        ... # doctest: +SKIP
    """
    if resume is not None:
        run = RunDir(Path(resume))
        meta = run.read_metadata()
        if meta.get("status") == "complete":
            raise RunError(f"{run.path} has already finished training ({meta['epochs_done']} "
                           "epochs); start a new run instead of --resume.")
        settings = meta["settings"]
        r = Recipe.from_dict(meta["recipe"])
        val_size, seed = settings["val_size"], settings["seed"]
        calibration_size = settings.get("calibration_size", 0)
        monitor_test = settings["monitor"] != "none"
        if data is None:
            data = settings.get("data")
    else:
        r = get_recipe(recipe) if isinstance(recipe, str) else recipe
        r = r.replace(model=model, epochs=epochs, batch_size=batch_size,
                      learning_rate=learning_rate, precision=precision,
                      calibration_size=calibration_size)
        run = None
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2

    ds = load_cifar10(data)
    x_train, y_train = ds.x_train, ds.y_train
    if resume is None:
        calibration_size = 0 if val_size else calibration_holdout(r, len(y_train),
                                                                  ds.num_classes)
    # Held out from training: the validation split, else the calibration split. Either is
    # where the temperature of calibrated probabilities is fitted after training.
    x_hold = y_hold = None
    if val_size or calibration_size:
        x_train, y_train, x_hold, y_hold = split_validation(
            x_train, y_train, val_size or calibration_size, seed=seed)
    if val_size:
        x_val, y_val = x_hold, y_hold
        monitor = "validation"
    elif monitor_test:
        x_val, y_val = ds.x_test, ds.y_test
        monitor = "test"
    else:
        x_val = y_val = None
        monitor = "none"
    if resume is not None and meta["dataset"]["fingerprint"] != ds.fingerprint:
        raise RunError(f"The data given differs from the data {run.path} was trained on "
                       "(dataset fingerprints differ); resume with the same --data.")

    if run is None:
        run = new_run_dir(runs_dir, name or r.name)
        meta = {
            "name": run.name,
            "status": "running",
            "class_names": list(ds.class_names),
            "input": {"shape": list(ds.image_shape), "dtype": "uint8", "range": [0, 255],
                      "layout": "RGB, channels last; scaled inside the model"},
            "recipe": r.to_dict(),
            "settings": {"seed": seed, "val_size": val_size,
                         "calibration_size": calibration_size, "monitor": monitor,
                         "data": None if isinstance(data, CifarData) or data is None
                         else str(Path(data).resolve())},
            "dataset": {"source": ds.source, "fingerprint": ds.fingerprint,
                        "num_train": len(x_train), "num_val": int(val_size),
                        "num_calibration": int(calibration_size),
                        "num_test": len(ds.x_test)},
            "environment": environment_info(),
            "epochs_done": 0,
        }
        run.write_metadata(meta)

    keras.utils.set_random_seed(seed)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(r.precision)
    try:
        # Training time counts from here: model building, data-dependent initialisation,
        # tracing and augmentation are all part of it.
        t0 = time.perf_counter()
        epochs_done = _checkpoint_epoch(run.checkpoints)
        one_hot = r.label_smoothing > 0
        train_data = make_train_dataset(x_train, y_train, r.batch_size, r.augmentation,
                                        seed=seed, num_classes=ds.num_classes if one_hot else 0,
                                        first_epoch=epochs_done,
                                        options=r.augmentation_options)
        steps = (len(train_data) if isinstance(train_data, keras.utils.PyDataset)
                 else int(np.ceil(len(x_train) / r.batch_size)))
        net = build_model(r, ds.num_classes, ds.image_shape, steps)
        # Data-derived initialisation (e.g. patch whitening) uses 5,000 random training
        # images (folder datasets come sorted by class); on resume the checkpoint then
        # overwrites it with the saved weights.
        sample = np.random.default_rng(seed).permutation(len(x_train))[:5000]
        data_dependent_init(net, x_train[np.sort(sample)])
        validation = None
        if y_val is not None:
            validation = (x_val, keras.utils.to_categorical(y_val, ds.num_classes)
                          if one_hot else y_val)
        _trim_history(run.history, epochs_done)
        backup = EpochBackupAndRestore(str(run.checkpoints), save_freq="epoch",
                                       double_checkpoint=True, delete_checkpoint=False)
        tensorboard = EpochTensorBoard(str(run.tensorboard), write_graph=False)
        fit_callbacks = [
            Progress(r.epochs, steps, min(len(x_train), steps * r.batch_size),
                     verbose=int(verbose)),
            backup,
            keras.callbacks.CSVLogger(str(run.history), append=epochs_done > 0),
            tensorboard,
            *callbacks,
        ]
        fit_kwargs: dict[str, Any] = {}
        if isinstance(train_data, tuple):  # plain arrays: let Keras batch and shuffle
            fit_kwargs = {"x": train_data[0], "y": train_data[1], "batch_size": r.batch_size,
                          "shuffle": True}
        else:
            fit_kwargs = {"x": train_data, "shuffle": False}  # the pipeline shuffles
        try:
            history = net.fit(**fit_kwargs, epochs=r.epochs,
                              validation_data=validation,
                              validation_batch_size=max(r.batch_size, 256),
                              callbacks=fit_callbacks, verbose=0)
        except KeyboardInterrupt:
            meta["status"] = "interrupted"
            run.write_metadata(meta)
            print(f"\nInterrupted. Continue from the last finished epoch with:\n"
                  f"  cifar-cnn train --resume {run.path}", file=sys.stderr)
            raise
        train_seconds = time.perf_counter() - t0
        with atomic_path(run.model) as tmp:
            net.save(tmp)
    finally:
        keras.config.set_dtype_policy(previous_policy)

    if y_hold is not None:
        calibration = calibrate(net, x_hold, y_hold, seed=seed,
                                fit_on="validation split" if val_size else "calibration split")
        write_json(run.calibration, calibration)
        meta["calibration"] = {k: v for k, v in calibration.items() if k != "seed"}
    last = {k: float(v[-1]) for k, v in history.history.items() if v}
    prefix = {"validation": "val", "test": "test"}.get(monitor, "monitored")
    meta.update(
        status="complete",
        epochs_done=r.epochs,
        train_seconds=round(train_seconds, 3),  # this process's fit time
        resumed_from_epoch=epochs_done or None,
        final_metrics={
            "train_loss": last.get("loss"),
            "train_accuracy": last.get("accuracy"),
            f"{prefix}_loss": last.get("val_loss"),
            f"{prefix}_accuracy": last.get("val_accuracy"),
            "images_per_sec": last.get("images_per_sec"),
        },
    )
    run.write_metadata(meta)
    return run
