"""Training: a recipe, data and a seed in; a complete run directory out."""

from __future__ import annotations

import contextlib
import csv
import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cifar_cnn.calibration import fit_calibration
from cifar_cnn.data import CifarData, load_cifar10, split_validation
from cifar_cnn.data.augment import AlternatingFlipTranslate, make_train_dataset
from cifar_cnn.errors import RunError
from cifar_cnn.files import atomic_path, write_json
from cifar_cnn.models import create_model, data_dependent_init
from cifar_cnn.recipes import Recipe, get_recipe
from cifar_cnn.runs import RunDir, environment_info, new_run_dir
from cifar_cnn.training.callbacks import (
    EpochTensorBoard,
    Progress,
    StaticImageSize,
    StopBetweenSteps,
)
from cifar_cnn.training.checkpoints import EpochCheckpoint, latest_epoch, restore
from cifar_cnn.training.distribute import (
    Cluster,
    agree,
    fit_distributed,
    make_cluster,
    sync_batch_norm,
)
from cifar_cnn.training.precision import resolve_precision
from cifar_cnn.training.work import forward_flops, train_flops
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


@dataclass(frozen=True)
class _Splits:
    """The images a run trains on, monitors each epoch, and calibrates on afterwards."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None  # monitored after each epoch ("monitor" says which set)
    y_val: np.ndarray | None
    x_hold: np.ndarray | None  # held out from training: the validation or calibration split
    y_hold: np.ndarray | None
    monitor: str  # "validation", "test" or "none"


def _split(ds: CifarData, val_size: int, calibration_size: int, monitor_test: bool,
           seed: int) -> _Splits:
    """Hold out the validation split, else the calibration split; choose what is monitored."""
    x_train, y_train, x_hold, y_hold = ds.x_train, ds.y_train, None, None
    if val_size or calibration_size:
        x_train, y_train, x_hold, y_hold = split_validation(
            x_train, y_train, val_size or calibration_size, seed=seed)
    if val_size:
        return _Splits(x_train, y_train, x_hold, y_hold, x_hold, y_hold, "validation")
    if monitor_test:
        return _Splits(x_train, y_train, ds.x_test, ds.y_test, x_hold, y_hold, "test")
    return _Splits(x_train, y_train, None, None, x_hold, y_hold, "none")


def _new_metadata(run: RunDir, r: Recipe, ds: CifarData, splits: _Splits, *, seed: int,
                  val_size: int, calibration_size: int,
                  data: str | os.PathLike[str] | CifarData | None) -> dict[str, Any]:
    """metadata.json of a run that has just started (the schema `Classifier` reads)."""
    return {
        "name": run.name,
        "status": "running",
        "class_names": list(ds.class_names),
        "input": {"shape": list(ds.image_shape), "dtype": "uint8", "range": [0, 255],
                  "layout": "RGB, channels last; scaled inside the model"},
        "recipe": r.to_dict(),
        "settings": {"seed": seed, "val_size": val_size,
                     "calibration_size": calibration_size, "monitor": splits.monitor,
                     "data": None if isinstance(data, CifarData) or data is None
                     else str(Path(data).resolve())},
        "dataset": {"source": ds.source, "fingerprint": ds.fingerprint,
                    "num_train": len(splits.x_train), "num_val": int(val_size),
                    "num_calibration": int(calibration_size), "num_test": len(ds.x_test)},
        "environment": environment_info(),
        "epochs_done": 0,
    }


def _resumable(path: str | os.PathLike[str]) -> tuple[RunDir, dict[str, Any]]:
    """An unfinished run directory and its metadata.

    Raises:
        RunError: if it is missing, unreadable or already complete.
    """
    run = RunDir(Path(path))
    meta = run.read_metadata()
    if meta.get("status") == "complete":
        raise RunError(f"{run.path} has already finished training ({meta['epochs_done']} "
                       "epochs); start a new run instead of --resume.")
    return run, meta


def _epoch_shapes(r: Recipe, images: tuple[int, ...]) -> list[tuple[int, int]]:
    """``(height, width)`` of the training images in each epoch (see `Recipe.train_sizes`)."""
    h, w = images[1:3]
    return [(s, s) if s != h else (h, w) for s in r.epoch_sizes(h)]


def _fit(net: keras.Model, r: Recipe, run: RunDir, make_data: Callable[..., Any],
         splits: _Splits, num_classes: int, steps: int, epochs_done: int, verbose: int,
         callbacks: Sequence[keras.callbacks.Callback],
         cluster: Cluster | None) -> keras.callbacks.History:
    """Train from `epochs_done` on, with progress, checkpoints, CSV log and TensorBoard:
    ``model.fit`` on one device, `fit_distributed` under a strategy (where only the chief
    writes, so the other workers get the progress display and `callbacks` alone)."""
    validation = None
    if splits.y_val is not None:
        validation = (splits.x_val, keras.utils.to_categorical(splits.y_val, num_classes)
                      if r.label_smoothing > 0 else splits.y_val)
    progress = Progress(r.epochs, steps, min(len(splits.x_train), steps * r.batch_size),
                        verbose=verbose)
    stop = StopBetweenSteps()  # Ctrl-C lands between steps (see `train`'s resume hint)
    if cluster is None or cluster.chief:
        _trim_history(run.history, epochs_done)
        fit_callbacks = [
            stop,
            progress,
            # history.csv before the checkpoint: a kill between the two leaves a row that
            # the resume trims (_trim_history), never a checkpoint without its row.
            keras.callbacks.CSVLogger(str(run.history), append=epochs_done > 0),
            EpochCheckpoint(run.checkpoints),
            EpochTensorBoard(str(run.tensorboard), write_graph=False),
            *callbacks,
        ]
    else:
        fit_callbacks = [stop, progress, *callbacks]
    if cluster is not None:
        def worker_data(context: Any) -> Any:  # this worker's share, per device
            return make_data(shard=(context.input_pipeline_id, context.num_input_pipelines),
                             replicas=cluster.local_replicas)

        with stop:
            return fit_distributed(net, cluster, worker_data, epochs=r.epochs,
                                   initial_epoch=epochs_done, steps=steps,
                                   shapes=_epoch_shapes(r, splits.x_train.shape),
                                   callbacks=fit_callbacks, validation=validation,
                                   validation_batch_size=max(r.batch_size, 256))
    train_data = make_data()
    if isinstance(train_data, tuple):  # plain arrays: let Keras batch and shuffle
        inputs = {"x": train_data[0], "y": train_data[1], "batch_size": r.batch_size,
                  "shuffle": True}
    elif isinstance(train_data, AlternatingFlipTranslate):  # image size may change
        inputs = {"x": train_data.to_tf_dataset(), "shuffle": False}
        if r.train_sizes:
            fit_callbacks.insert(0, StaticImageSize(_epoch_shapes(r, splits.x_train.shape)))
    else:
        inputs = {"x": train_data, "shuffle": False}  # the pipeline shuffles
    with stop:
        return net.fit(**inputs, epochs=r.epochs, initial_epoch=epochs_done,
                       validation_data=validation,
                       validation_batch_size=max(r.batch_size, 256),
                       callbacks=fit_callbacks, verbose=0)


def _final_metrics(history: keras.callbacks.History, monitor: str) -> dict[str, float | None]:
    last = {k: float(v[-1]) for k, v in history.history.items() if v}
    prefix = {"validation": "val", "test": "test"}.get(monitor, "monitored")
    return {
        "train_loss": last.get("loss"),
        "train_accuracy": last.get("accuracy"),
        f"{prefix}_loss": last.get("val_loss"),
        f"{prefix}_accuracy": last.get("val_accuracy"),
        "images_per_sec": last.get("images_per_sec"),
    }


def _build_and_fit(r: Recipe, run: RunDir, meta: dict[str, Any], ds: CifarData,
                   splits: _Splits, *, seed: int, verbose: int,
                   callbacks: Sequence[keras.callbacks.Callback], cluster: Cluster | None,
                   ) -> tuple[keras.Model, keras.callbacks.History, float, int]:
    """Build, initialise (or restore) and fit the network; save model.keras (the chief).

    Returns the network, its history, the training seconds and the epochs done before.
    """
    chief = cluster is None or cluster.chief
    keras.utils.set_random_seed(seed)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(r.precision)
    try:
        # Training time counts from here: model building, data-dependent initialisation,
        # tracing and augmentation are all part of it.
        t0 = time.perf_counter()
        epochs_done = latest_epoch(run.checkpoints)
        if cluster is not None:
            epochs_done = agree(cluster, epochs_done, "checkpoints")
        make_data = functools.partial(
            make_train_dataset, splits.x_train, splits.y_train, r.batch_size, r.augmentation,
            seed=seed, num_classes=ds.num_classes if r.label_smoothing > 0 else 0,
            first_epoch=epochs_done, options=r.augmentation_options,
            sizes=r.epoch_sizes(ds.image_shape[0]) if r.train_sizes else (),
            size_mode=r.train_size_mode)
        n = len(splits.x_train)
        whole_batches = cluster is not None or r.augmentation == "alternating_flip_translate"
        steps = n // r.batch_size if whole_batches else int(np.ceil(n / r.batch_size))
        scope = cluster.strategy.scope if cluster else contextlib.nullcontext
        with scope():  # variables (the optimizer's too) made under the strategy
            net = build_model(r, ds.num_classes, ds.image_shape, steps)
        # Data-derived initialisation (e.g. patch whitening) uses 5,000 random training
        # images (folder datasets come sorted by class); a checkpoint then overwrites it.
        # Outside the strategy's scope, so that each worker computes it alone (alike).
        sample = np.random.default_rng(seed).permutation(n)[:5000]
        data_dependent_init(net, splits.x_train[np.sort(sample)])
        if epochs_done:
            with scope():
                restore(net, run.checkpoints, epochs_done)
        sync_batch_norm(net, cluster is not None and cluster.num_replicas > 1)
        if r.train_sizes:  # smaller images in early epochs: any height and width, for now
            net.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: ds.image_shape[-1]})
        try:
            history = _fit(net, r, run, make_data, splits, ds.num_classes, steps,
                           epochs_done, verbose, callbacks, cluster)
        except KeyboardInterrupt:
            if chief:
                meta["status"] = "interrupted"
                run.write_metadata(meta)
            print(f"\nInterrupted. Continue from the last finished epoch with:\n"
                  f"  cifar-cnn train --resume {run.path}", file=sys.stderr)
            raise
        train_seconds = time.perf_counter() - t0
        if r.train_sizes:  # the saved model checks its input shape again
            del net._manual_input_spec  # where Keras keeps a spec that was set
        sync_batch_norm(net, False)  # the saved model is the same as a one-device run's
        if chief:
            with atomic_path(run.model) as tmp:
                net.save(tmp)
            if cluster is not None:  # predict alone from here on, without the other workers
                net = keras.saving.load_model(run.model)
        return net, history, train_seconds, epochs_done
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _multi_worker_run(cluster: Cluster, runs_dir: str | os.PathLike[str],
                      name: str) -> Path | None:
    """The run directory of a multi-worker job if it is to be resumed, else None.

    Every worker runs the same command, so the directory is ``runs_dir/name`` exactly (no
    numbering): an unfinished run there is resumed from its last checkpoint, which is how a
    restarted job carries on. All workers must see the same state (a shared volume).
    """
    meta_file = RunDir(Path(runs_dir) / name).metadata
    state = 0
    if meta_file.is_file():
        state = 2 if RunDir(meta_file.parent).read_metadata().get("status") == "complete" else 1
    state = agree(cluster, state, f"states of the run directory {meta_file.parent}")
    if state == 2:
        raise RunError(f"{meta_file.parent} has already finished training; give the job "
                       "another --name.")
    return meta_file.parent if state == 1 else None


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
    strategy: str = "default",
    devices: Sequence[str] = (),
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
        strategy: "default" (one device), "mirrored" (the GPUs of this machine, or
            `devices`) or "multi-worker" (several machines, configured by ``TF_CONFIG``).
            The recipe's batch size is the global batch, split evenly over all devices, so
            the learning-rate rule is unchanged (see `cifar_cnn.training.distribute`).
            Under "multi-worker" every worker runs the same call; the run directory is
            ``runs_dir/name`` (the recipe's name by default) on storage all workers share,
            only the chief writes it, and a restarted job resumes its last checkpoint.
        devices: for "mirrored": device names such as ``["GPU:0", "GPU:1"]``.

    Returns:
        The `RunDir` holding model.keras, metadata.json, calibration.json, history.csv,
        checkpoints/ and tensorboard/.

    Example:
        >>> run = cifar_cnn.train("baseline", epochs=10, data="path/to/cifar10")
        ... # doctest: +SKIP
    """
    # 0. Where: one device, or the devices and workers of a tf.distribute strategy.
    cluster = make_cluster(strategy, devices)
    chief = cluster is None or cluster.chief
    if cluster is not None and cluster.kind == "multi-worker" and resume is None:
        resume = _multi_worker_run(cluster, runs_dir,
                                   name or (recipe if isinstance(recipe, str) else recipe.name))

    # 1. What to train: a new run's recipe and settings, or a resumed run's own.
    reason = None  # why "auto" precision chose what it did
    if resume is not None:
        run, meta = _resumable(resume)
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
        requested = r.precision
        chosen, reason = resolve_precision(requested)
        r = r.replace(precision=chosen)  # the run records, and resumes with, what it used
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    if reason and verbose and chief:
        print(f"Precision {requested}: {chosen} ({reason})", flush=True)

    # 2. The data, split into what is trained on, monitored and held out for calibration.
    ds = load_cifar10(data)
    if resume is None:
        calibration_size = 0 if val_size else calibration_holdout(r, len(ds.y_train),
                                                                  ds.num_classes)
    splits = _split(ds, val_size, calibration_size, monitor_test, seed)
    if resume is not None and meta["dataset"]["fingerprint"] != ds.fingerprint:
        raise RunError(f"The data given differs from the data {run.path} was trained on "
                       "(dataset fingerprints differ); resume with the same --data.")
    if resume is None:
        if cluster is not None and cluster.kind == "multi-worker":
            run = RunDir(Path(runs_dir) / (name or r.name))  # the same on every worker
            if chief:
                run.path.mkdir(parents=True, exist_ok=True)
        else:
            run = new_run_dir(runs_dir, name or r.name)
        meta = _new_metadata(run, r, ds, splits, seed=seed, val_size=val_size,
                             calibration_size=calibration_size, data=data)
        meta["settings"]["precision"] = {"requested": requested, "used": chosen,
                                         "reason": reason}
        if chief:
            run.write_metadata(meta)
    if cluster is not None:
        meta["distribution"] = cluster.describe()

    # 3. Fit, from the last checkpoint on when resuming.
    net, history, train_seconds, epochs_done = _build_and_fit(
        r, run, meta, ds, splits, seed=seed, verbose=int(verbose), callbacks=callbacks,
        cluster=cluster)
    if not chief:
        return run  # the chief writes the rest

    # 4. Bookkeeping: calibration on the held-out images, final metadata.
    if splits.y_hold is not None:
        calibration = calibrate(net, splits.x_hold, splits.y_hold, seed=seed,
                                fit_on="validation split" if val_size else "calibration split")
        write_json(run.calibration, calibration)
        meta["calibration"] = {k: v for k, v in calibration.items() if k != "seed"}
    flops = train_flops(r, len(splits.x_train), num_classes=ds.num_classes,
                        image_shape=ds.image_shape, model=net)
    meta.update(
        status="complete",
        epochs_done=r.epochs,
        train_seconds=round(train_seconds, 3),  # this process's fit time
        # The whole run's (resumed or not), counted from layer shapes: see training.work.
        work={"train_pflops": round(flops / 1e15, 6),
              "forward_gflops_per_image": round(forward_flops(net) / 1e9, 4),
              "train_sizes": r.epoch_sizes(ds.image_shape[0])},
        resumed_from_epoch=epochs_done or None,
        final_metrics=_final_metrics(history, splits.monitor),
    )
    run.write_metadata(meta)
    return run
