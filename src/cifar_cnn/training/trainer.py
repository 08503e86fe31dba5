"""Training: a `TrainConfig` in, a complete run directory out.

`train` orchestrates: the run's lifecycle and metadata live in `cifar_cnn.runs`, its splits
in `cifar_cnn.data.split`, calibration in `cifar_cnn.calibration`, checkpoints and history
repair in `checkpoints`, work counting in `work`, devices in `distribute`; here the network
is built and fitted.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cifar_cnn.calibration import calibrate_model, write_calibration
from cifar_cnn.card import (
    ModelCard,
    new_run_card,
    resumable_run,
    start_run,
    stop_run,
)
from cifar_cnn.data import (
    CifarData,
    TrainSplits,
    calibration_holdout,
    inspect_data,
    load_dataset,
    load_run_data,
    train_splits,
)
from cifar_cnn.data.augment import AlternatingFlipTranslate, make_train_dataset
from cifar_cnn.errors import ConfigError, RunError, WorkerLostError
from cifar_cnn.files import atomic_path
from cifar_cnn.images import InputSpec
from cifar_cnn.models import create_model, data_dependent_init
from cifar_cnn.recipes import Recipe
from cifar_cnn.runs import COMPLETE, FAILED, INTERRUPTED, RunDir, new_run_dir
from cifar_cnn.training.callbacks import (
    EpochTensorBoard,
    Progress,
    StaticImageSize,
    StopBetweenSteps,
)
from cifar_cnn.training.checkpoints import EpochCheckpoint, latest_epoch, restore, trim_history
from cifar_cnn.training.config import TrainConfig
from cifar_cnn.training.distribute import (
    Cluster,
    agree,
    fit_distributed,
    make_cluster,
    multi_worker_run,
    sync_batch_norm,
)
from cifar_cnn.training.finetune import (
    FineTune,
    InitReport,
    freeze_bn_default,
    init_source,
    load_matching_weights,
    set_trainable,
)
from cifar_cnn.training.plan import (
    choose_image_size,
    choose_start,
    estimate_seconds,
    size_run,
)
from cifar_cnn.training.precision import resolve_precision
from cifar_cnn.training.work import forward_flops, train_flops, work_summary


def build_model(recipe: Recipe, num_classes: int, input_shape: tuple[int, int, int],
                steps_per_epoch: int) -> keras.Model:
    """Create and compile the recipe's network under its precision policy."""
    model = create_model(recipe.model, num_classes=num_classes, input_shape=input_shape,
                         **recipe.model_options)
    compile_model(model, recipe, steps_per_epoch)
    return model


def compile_model(model: keras.Model, recipe: Recipe, steps_per_epoch: int) -> None:
    """Compile with the recipe's optimizer (its schedule over ``recipe.epochs``) and loss."""
    model.compile(
        optimizer=recipe.build_optimizer(steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing)
        if recipe.label_smoothing
        else keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )


def _epoch_shapes(r: Recipe, images: tuple[int, ...]) -> list[tuple[int, int]]:
    """``(height, width)`` of the training images in each epoch (see `Recipe.train_sizes`)."""
    h, w = images[1:3]
    return [(s, s) if s != h else (h, w) for s in r.epoch_sizes(h)]


def _fit(net: keras.Model, r: Recipe, run: RunDir, make_data: Callable[..., Any],
         splits: TrainSplits, num_classes: int, steps: int, epochs_done: int, verbose: int,
         callbacks: Sequence[keras.callbacks.Callback],
         cluster: Cluster | None, *, until: int | None = None,
         class_weight: dict[int, float] | None = None) -> keras.callbacks.History:
    """Train from `epochs_done` on, with progress, checkpoints, CSV log and TensorBoard:
    ``model.fit`` on one device, `fit_distributed` under a strategy (where only the chief
    writes, so the other workers get the progress display and `callbacks` alone)."""
    validation = None
    if splits.y_val is not None:
        validation = (splits.x_val, keras.utils.to_categorical(splits.y_val, num_classes)
                      if r.label_smoothing > 0 else splits.y_val)
    until = until or r.epochs
    progress = Progress(r.epochs, steps, min(len(splits.x_train), steps * r.batch_size),
                        verbose=verbose)
    stop = StopBetweenSteps()  # Ctrl-C lands between steps (see `train`'s resume hint)
    if cluster is None or cluster.chief:
        trim_history(run.history, epochs_done)
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

        if class_weight is not None:
            raise ConfigError("class_weight is not supported under a tf.distribute strategy "
                              "yet; train on one device. Received: class_weight='balanced'")
        with stop:
            return fit_distributed(net, cluster, worker_data, epochs=until,
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
    if class_weight is not None:
        inputs["class_weight"] = class_weight
    with stop:
        return net.fit(**inputs, epochs=until, initial_epoch=epochs_done,
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


def _build_and_fit(r: Recipe, run: RunDir, ds: CifarData, splits: TrainSplits, *, seed: int,
                   verbose: int, callbacks: Sequence[keras.callbacks.Callback],
                   cluster: Cluster | None, fine_tune: FineTune | None = None,
                   class_weight: dict[int, float] | None = None,
                   ) -> tuple[keras.Model, keras.callbacks.History, float, int, InitReport | None]:
    """Build, initialise (or restore, or load trained weights) and fit the network; save
    model.keras (the chief).

    Returns the network, its history, the training seconds, the epochs done before, and
    what was loaded from the model it starts from (None when resuming or from scratch).
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
        resumed_from = epochs_done
        make_data = functools.partial(
            make_train_dataset, splits.x_train, splits.y_train, r.batch_size, r.augmentation,
            seed=seed, num_classes=ds.num_classes if r.label_smoothing > 0 else 0,
            first_epoch=epochs_done, options=r.augmentation_options,
            sizes=r.epoch_sizes(ds.image_shape[0]) if r.train_sizes else (),
            size_mode=r.train_size_mode)
        n = len(splits.x_train)
        whole_batches = cluster is not None or r.augmentation == "alternating_flip_translate"
        steps = max(1, n // r.batch_size if whole_batches else int(np.ceil(n / r.batch_size)))
        scope = cluster.strategy.scope if cluster else contextlib.nullcontext
        with scope():  # variables (the optimizer's too) made under the strategy
            net = build_model(r, ds.num_classes, ds.image_shape, steps)
        # Data-derived initialisation (e.g. patch whitening) uses 5,000 random training
        # images (folder datasets come sorted by class); a checkpoint then overwrites it.
        # Outside the strategy's scope, so that each worker computes it alone (alike).
        sample = np.random.default_rng(seed).permutation(n)[:5000]
        data_dependent_init(net, splits.x_train[np.sort(sample)])
        report = None
        if fine_tune is not None and not epochs_done:
            report = load_matching_weights(net, fine_tune.source, class_names=ds.class_names)
            if verbose and chief:
                print(f"Fine-tuning {fine_tune.source.model_file}: {report.describe()}",
                      flush=True)
        phases = fine_tune.phases(r) if fine_tune else [(r.epochs, r, False)]
        compiled_for = phases[0][0] if fine_tune is None else None  # the phase compiled for
        if epochs_done:  # restore as compiled when the checkpoint was written
            start = 0
            for until, phase_recipe, head_only in phases:
                if start < epochs_done <= until:
                    if fine_tune is not None:
                        set_trainable(net, head_only=head_only, freeze_bn=fine_tune.freeze_bn)
                        with scope():
                            compile_model(net, phase_recipe, steps)
                        compiled_for = until
                    with scope():
                        restore(net, run.checkpoints, epochs_done)
                    break
                start = until
        history = None
        for until, phase_recipe, head_only in phases:
            if epochs_done >= until:
                continue
            if compiled_for != until:  # what trains changed: Keras compiles again
                set_trainable(net, head_only=head_only, freeze_bn=fine_tune.freeze_bn)
                with scope():
                    compile_model(net, phase_recipe, steps)
                compiled_for = until
            sync_batch_norm(net, cluster is not None and cluster.num_replicas > 1)
            if r.train_sizes:  # smaller images in early epochs: any height and width, for now
                net.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: ds.image_shape[-1]})
            history = _fit(net, r, run, make_data, splits, ds.num_classes, steps,
                           epochs_done, verbose, callbacks, cluster, until=until,
                           class_weight=class_weight)
            epochs_done = until
            if r.train_sizes:  # the saved model checks its input shape again
                del net._manual_input_spec  # where Keras keeps a spec that was set
        if fine_tune is not None:
            set_trainable(net, head_only=False, freeze_bn=False)  # saved as a whole network
        train_seconds = time.perf_counter() - t0
        sync_batch_norm(net, False)  # the saved model is the same as a one-device run's
        if chief:
            with atomic_path(run.model) as tmp:
                net.save(tmp)
            if cluster is not None:  # predict alone from here on, without the other workers
                net = keras.saving.load_model(run.model)
        if history is None:  # nothing was left to train
            history = keras.callbacks.History()
            history.history = {}
        return net, history, train_seconds, resumed_from, report
    finally:
        keras.config.set_dtype_policy(previous_policy)


def balanced_class_weights(counts: np.ndarray) -> dict[int, float]:
    """Keras ``class_weight`` for "balanced": ``n / (classes * count)``, as scikit-learn's
    ``compute_class_weight("balanced")``; a class without images gets 0."""
    n, k = counts.sum(), len(counts)
    return {i: float(n / (k * c)) if c else 0.0 for i, c in enumerate(counts)}


@dataclass
class _Job:
    """A run ready to fit: where it goes, its card, recipe, data and starting point."""

    run: RunDir
    card: ModelCard
    recipe: Recipe
    ds: CifarData
    splits: TrainSplits
    seed: int
    fine_tune: FineTune | None
    class_weight: dict[int, float] | None


def _class_notes(ds: CifarData, splits: TrainSplits,
                 class_weight: str | None) -> tuple[list[str], dict[int, float] | None]:
    """The warning for classes of fewer than 5 training images, and the class weights."""
    counts = np.bincount(splits.y_train, minlength=ds.num_classes)
    few = [f"{name} ({c})" for name, c in zip(ds.class_names, counts, strict=True) if c < 5]
    notes = [f"Warning: classes with fewer than 5 training images: {', '.join(few)}."] if few \
        else []
    return notes, balanced_class_weights(counts) if class_weight == "balanced" else None


def _estimate(r: Recipe, ds: CifarData, splits: TrainSplits) -> float:
    """`estimate_seconds` of training `r` on `splits` (the monitored split included)."""
    net = create_model(r.model, num_classes=ds.num_classes, input_shape=ds.image_shape,
                       **r.model_options)
    monitored = 0 if splits.x_val is None else len(splits.x_val)
    return estimate_seconds(
        train_flops(r, len(splits.x_train), num_classes=ds.num_classes,
                    image_shape=ds.image_shape, model=net), r.precision,
        epochs=r.epochs, eval_flops=r.epochs * monitored * forward_flops(net))


def _new_job(config: TrainConfig, cluster: Cluster | None, say: Callable[[str], None]) -> _Job:
    """Plan a new run (`cifar_cnn.training.plan`): its recipe and starting model, the data at
    its image size, its splits, batch and epochs; create its folder and card."""
    info = inspect_data(config.data)
    start = choose_start(config, info)
    r = start.recipe.replace(learning_rate=config.learning_rate, precision=config.precision,
                             calibration_size=config.calibration_size)
    requested = r.precision
    used, reason = resolve_precision(requested)
    r = r.replace(precision=used)  # the run records, and resumes with, what it used
    if reason:
        say(f"Precision {requested}: {used} ({reason})")
    image_size, size_by, size_note = choose_image_size(config, info)
    ds = load_dataset(config.data, image_size=image_size, resize=config.resize,
                      strict=config.strict, val_split=config.val_split, seed=config.seed)
    calibration_size = 0 if config.val_size or ds.has_val else calibration_holdout(
        r.calibration_size, len(ds.y_train), ds.num_classes)
    if ds.files:  # an image folder: what was found
        say(ds.summary.table())
    splits = train_splits(ds, val_size=config.val_size, calibration_size=calibration_size,
                          monitor_test=config.monitor_test, seed=config.seed)
    n_train = len(splits.x_train)
    init = None if start.source is None else (config.init or "default")
    r, plan = size_run(r, n_train, config, fine_tune=start.source is not None,
                       image_size=ds.image_shape[0], init=init,
                       chosen={**start.chosen, "image_size": size_by},
                       notes=[*start.notes, *([size_note] if size_note else [])],
                       seconds=functools.partial(_estimate, ds=ds, splits=splits))
    notes, class_weight = _class_notes(ds, splits, config.class_weight)
    fine_tune = None if start.source is None else FineTune(
        start.source, plan.freeze_epochs, config.finetune_lr_mult,
        freeze_bn_default(config.bn, init, n_train))
    for note in (plan.describe(), *notes):
        say(note)
    if cluster is not None and cluster.kind == "multi-worker":
        run = RunDir(Path(config.runs_dir) / (config.name or r.name))  # alike everywhere
        if cluster.chief:
            run.path.mkdir(parents=True, exist_ok=True)
    else:
        run = new_run_dir(config.runs_dir, config.name or r.name)
    settings = {**config.to_dict(), "recipe": r.name,
                "init": config.to_dict()["init"] if config.init else init,
                "freeze_epochs": plan.freeze_epochs,
                "calibration_size": calibration_size, "monitor": splits.monitor,
                "precision": {"requested": requested, "used": r.precision, "reason": reason},
                **({"bn": "frozen" if fine_tune.freeze_bn else "train"} if fine_tune else {})}
    card = new_run_card(
        run, input_spec=InputSpec(*ds.image_shape, resize=config.resize,
                                  class_names=ds.class_names),
        recipe=r, settings=settings, plan=plan.to_dict(),
        dataset={"source": ds.source, "fingerprint": ds.fingerprint, "num_train": n_train,
                 "num_val": int(config.val_size) or (len(ds.x_val) if ds.has_val else 0),
                 "num_calibration": int(calibration_size), "num_test": len(ds.x_test),
                 **({"holdout": ds.holdout} if ds.holdout else {}),
                 **({"summary": ds.summary.to_dict()} if ds.files else {})})
    return _Job(run, card, r, ds, splits, config.seed, fine_tune, class_weight)


def _resumed_job(config: TrainConfig, say: Callable[[str], None]) -> _Job:
    """An interrupted run, to go on as it started: its recipe, settings and data.

    Raises:
        RunError: a finished run, or data other than it was trained on.
    """
    run, card = resumable_run(config.resume)
    settings, r = card.settings, card.recipe
    ds = load_run_data(card, config.data)
    if ds.files:
        say(ds.summary.table())
    splits = train_splits(ds, val_size=card.val_size,
                          calibration_size=settings.get("calibration_size", 0),
                          monitor_test=card.monitor != "none", seed=card.seed)
    if card.dataset["fingerprint"] != ds.fingerprint:
        raise RunError(f"The data given differs from the data {run.path} was trained on "
                       "(dataset fingerprints differ); resume with the same --data.")
    notes, class_weight = _class_notes(ds, splits, settings.get("class_weight"))
    for note in notes:
        say(note)
    init = settings.get("init")
    fine_tune = None if init in (None, "none") else FineTune(
        init_source(init), int(settings.get("freeze_epochs") or 0),
        float(settings.get("finetune_lr_mult", 1.0)),
        freeze_bn_default(settings.get("bn"), init, len(splits.x_train)))
    return _Job(run, card, r, ds, splits, card.seed, fine_tune, class_weight)


def _finish(job: _Job, card: ModelCard, net: keras.Model, history: keras.callbacks.History,
            train_seconds: float, resumed_from: int) -> None:
    """Calibrate on the held-out images and write the finished run's card.

    Raises:
        RunError: the network's probabilities are not finite (training diverged).
    """
    splits, r = job.splits, job.recipe
    if splits.y_hold is not None:
        try:
            calibration = calibrate_model(
                net, splits.x_hold, splits.y_hold, seed=job.seed,
                fit_on="validation split" if splits.monitor == "validation"
                else "calibration split")
        except ValueError as e:  # non-finite probabilities: the training diverged
            reason = (f"the trained network's probabilities on the held-out images are not "
                      f"usable ({e}): training diverged. Try a lower --lr, more varied "
                      "images, or another recipe.")
            stop_run(job.run, card, FAILED, f"RunError: {reason}")
            raise RunError(f"{job.run.path}: {reason}") from e
        write_calibration(job.run.calibration, calibration)
        card = card.replace(calibration=calibration)
    stop_run(job.run, card.replace(
        epochs_done=r.epochs,
        train_seconds=round(train_seconds, 3),  # this process's fit time
        # The whole run's (resumed or not), counted from layer shapes: see training.work.
        work=work_summary(r, len(splits.x_train), num_classes=job.ds.num_classes,
                          image_shape=job.ds.image_shape, model=net),
        resumed_from_epoch=resumed_from or None,
        final_metrics=_final_metrics(history, splits.monitor)), COMPLETE)


def train(recipe: str | Recipe | TrainConfig | None = None, *,
          callbacks: Sequence[keras.callbacks.Callback] = (), **options: Any) -> RunDir:
    """Train a network and write a run directory.

    Args:
        recipe: a `TrainConfig`, or a recipe name (see ``cifar-cnn models``) or `Recipe`
            whose options follow as keyword arguments; None: chosen for the data (see
            `cifar_cnn.training.plan`).
        callbacks: more Keras callbacks for ``model.fit``, called after cifar-cnn's own
            (progress, checkpoints, history.csv, TensorBoard).
        **options: `TrainConfig` fields (they override a given config's): ``model``,
            ``epochs``, ``batch_size``, ``learning_rate``, ``precision`` override the
            recipe's values; ``data``, ``val_size``, ``monitor_test``,
            ``calibration_size``, ``seed``, ``runs_dir``, ``name``, ``resume``,
            ``verbose``, ``strategy``, ``devices``: see `TrainConfig`. Without a validation
            split (``val_size=0``) the test set is monitored each epoch, as the TensorFlow
            tutorial does: never tune settings on it. The recipe's batch size is the global
            batch under a tf.distribute strategy (see `cifar_cnn.training.distribute`);
            under "multi-worker" every worker runs the same call, the run directory is
            ``runs_dir/name`` on storage all workers share, only the chief writes it, and a
            restarted job resumes its last checkpoint.

    Returns:
        The `RunDir` holding model.keras, metadata.json (the run's `ModelCard`),
        calibration.json, history.csv, checkpoints/ and tensorboard/.

    Raises:
        ConfigError: for an unknown option or an invalid value.
        RunError, DataError: for a run or data that cannot be used. A run that fails after
            its metadata was written is marked "failed" there, with the reason.

    Example:
        >>> run = cifar_cnn.train("baseline", epochs=10, data="path/to/cifar10")
        ... # doctest: +SKIP
        >>> run = cifar_cnn.train(TrainConfig(recipe="fast94", seed=1))  # doctest: +SKIP
    """
    config = TrainConfig.from_options(recipe, **options)
    # 0. Where: one device, or the devices and workers of a tf.distribute strategy.
    cluster = make_cluster(config.strategy, config.devices)
    chief = cluster is None or cluster.chief
    if cluster is not None and cluster.kind == "multi-worker" and config.resume is None:
        config = config.replace(resume=multi_worker_run(
            cluster, config.runs_dir, config.name or config.recipe_name or "run"))
    verbose = (1 if sys.stdout.isatty() else 2) if config.verbose == "auto" else config.verbose

    def say(line: str) -> None:
        if verbose and chief:
            print(line, flush=True)

    # 1. What to train, on what: a new run's plan, or an interrupted run's own settings.
    job = _resumed_job(config, say) if config.resume is not None else _new_job(
        config, cluster, say)
    card = job.card.replace(distribution=cluster.describe()) if cluster else job.card
    if chief:
        card = start_run(job.run, card)

    # 2. Fit, from the last checkpoint on when resuming.
    try:
        net, history, seconds, resumed_from, loaded = _build_and_fit(
            job.recipe, job.run, job.ds, job.splits, seed=job.seed, verbose=int(verbose),
            callbacks=callbacks, cluster=cluster, fine_tune=job.fine_tune,
            class_weight=job.class_weight)
    except KeyboardInterrupt:
        if chief:
            stop_run(job.run, card, INTERRUPTED)
        print(f"\nInterrupted. Continue from the last finished epoch with:\n"
              f"  cifar-cnn train --resume {job.run.path}", file=sys.stderr)
        raise
    except WorkerLostError:
        if chief:  # the job restarts with every worker and resumes its last checkpoint
            stop_run(job.run, card, INTERRUPTED, "a worker was lost")
        raise
    except Exception as e:
        if chief:
            first_line = str(e).splitlines()[0] if str(e) else ""
            stop_run(job.run, card, FAILED, f"{type(e).__name__}: {first_line}")
        raise
    if chief:  # 3. Calibration on the held-out images, the finished card.
        _finish(job, card.replace(init=loaded.to_dict()) if loaded else card, net, history,
                seconds, resumed_from)
    return job.run
