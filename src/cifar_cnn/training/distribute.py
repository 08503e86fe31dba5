"""Training on several devices or machines with tf.distribute (mirrored and multi-worker).

``MirroredStrategy`` trains on several devices of one machine (its GPUs, or named
devices); ``MultiWorkerMirroredStrategy`` on several machines, each configured by the
standard ``TF_CONFIG`` environment variable. Both are data parallel and synchronous: every
device holds the whole network, takes its part of each global batch, and the gradients are
summed over all devices before every update, so the optimiser (MuonSGD's
orthogonalisation included) sees the gradient of the whole batch.

With the pinned Keras 3, ``model.fit`` fails under ``MultiWorkerMirroredStrategy``
(keras-team/keras issue 20585: its data adapter hands ``PerReplica`` values to ops), so
`fit_distributed` runs the same training through ``strategy.run``, driving the same
callbacks with the same logs as ``fit``: the run directory, history.csv, checkpoints and
TensorBoard logs look the same as a single-device run's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from cifar_cnn.card import read_run_card
from cifar_cnn.errors import ConfigError, RunError, WorkerLostError
from cifar_cnn.models import leaf_layers
from cifar_cnn.runs import COMPLETE, RunDir
from cifar_cnn.training.config import STRATEGIES


@dataclass(frozen=True)
class Cluster:
    """The strategy this process trains under and its place in the job."""

    strategy: tf.distribute.Strategy
    kind: str  # "mirrored" or "multi-worker"
    worker: int  # this worker's index among the workers (0 on one machine)
    num_workers: int
    chief: bool  # only the chief writes the run directory

    @property
    def num_replicas(self) -> int:
        """Devices over all workers (each takes ``batch / num_replicas`` images a step)."""
        return int(self.strategy.num_replicas_in_sync)

    @property
    def local_replicas(self) -> int:
        """This worker's devices."""
        return self.num_replicas // self.num_workers

    def describe(self) -> dict[str, Any]:
        """What metadata.json records about the distribution."""
        return {"strategy": self.kind, "num_workers": self.num_workers,
                "num_replicas": self.num_replicas,
                "devices_per_worker": self.local_replicas}


def _split_cpu(count: int) -> None:
    """Make the CPU appear as `count` logical devices (for trying strategies on one CPU)."""
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as e:
        raise ConfigError(f"Cannot split the CPU into {count} devices: TensorFlow has already "
                          "started in this process. Choose the devices before anything else "
                          f"runs (a fresh process). ({e})") from e


def _local_devices(devices: Sequence[str]) -> list[str]:
    """Device names for MirroredStrategy; extra CPU devices are made by splitting the CPU."""
    names = [d if d.startswith("/") else f"/{d}" for d in devices]
    cpus = [d for d in names if "CPU" in d.upper()]
    # Asking for the logical devices starts TensorFlow, after which none can be made.
    if len(cpus) > len(tf.config.list_physical_devices("CPU")):
        _split_cpu(len(cpus))
    known = {d.name.upper().replace("/DEVICE:", "/") for d in tf.config.list_logical_devices()}
    missing = [d for d in names if d.upper().replace("/DEVICE:", "/") not in known]
    if missing:
        raise ConfigError(f"No such device(s): {', '.join(missing)}. This machine has "
                          f"{', '.join(sorted(known))}.")
    return names


def read_tf_config() -> dict[str, Any]:
    """The ``TF_CONFIG`` environment variable, checked for what multi-worker training needs.

    Raises:
        ConfigError: if it is missing, not JSON, or names no workers or no task.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ConfigError("--strategy multi-worker needs the TF_CONFIG environment variable: "
                          '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                          '"task": {"type": "worker", "index": 0}} on the first machine, '
                          "index 1 on the second (README: Training on several machines).")
    try:
        config = json.loads(raw)
        if not config["cluster"]["worker"]:
            raise ValueError("the cluster lists no workers")
        task = config["task"]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"TF_CONFIG is not valid: {e!r}. It must be JSON with "
                          '"cluster": {"worker": [...]} and "task": {"type", "index"}.') from e
    if task.get("type") not in ("worker", "chief") or not 0 <= index < len(
            config["cluster"].get(task.get("type"), [])):
        raise ConfigError(f"TF_CONFIG's task {task} is not one of its cluster's tasks.")
    return config


def make_cluster(kind: str, devices: Sequence[str] = ()) -> Cluster | None:
    """The strategy for ``--strategy`` (None for "default": one device, Keras ``fit``).

    Args:
        kind: "default", "mirrored" or "multi-worker".
        devices: for "mirrored", the devices to use (e.g. ``["GPU:0", "GPU:1"]``; more
            ``CPU:n`` than the machine has split the CPU, to try it out); default all GPUs,
            else the CPU.
    """
    if kind not in STRATEGIES:
        raise ConfigError(f"Unknown strategy {kind!r}; choose from {', '.join(STRATEGIES)}.")
    if kind == "default":
        if devices:
            raise ConfigError("--devices needs --strategy mirrored.")
        return None
    if kind == "mirrored":
        strategy = tf.distribute.MirroredStrategy(_local_devices(devices) if devices else None)
        return Cluster(strategy, kind, worker=0, num_workers=1, chief=True)
    if devices:
        raise ConfigError("--devices is for --strategy mirrored; each worker of a "
                          "multi-worker job uses its own devices.")
    config = read_tf_config()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, int(resolver.task_id)
    workers = len(config["cluster"].get("chief", [])) + len(config["cluster"]["worker"])
    has_chief = "chief" in config["cluster"]
    index = task_id + (1 if has_chief and task_type == "worker" else 0)
    chief = task_type == "chief" or (not has_chief and task_id == 0)
    return Cluster(strategy, kind, worker=index, num_workers=workers, chief=chief)


def sync_batch_norm(net: keras.Model, on: bool) -> None:
    """Make the batch norms of `net` compute batch statistics over all devices (or not).

    With per-device statistics, splitting a batch over devices would change what the
    network computes (each device normalising by its own part); synchronised, a step on
    N devices is the step one device takes on the whole batch.
    """
    for layer in leaf_layers(net):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = on


def multi_worker_run(cluster: Cluster, runs_dir: str | os.PathLike[str],
                     name: str) -> Path | None:
    """The run directory of a multi-worker job if it is to be resumed, else None.

    Every worker runs the same command, so the directory is ``runs_dir/name`` exactly (no
    numbering): an unfinished run there is resumed from its last checkpoint, which is how a
    restarted job carries on. All workers must see the same state (a shared volume).

    Raises:
        RunError: if the run there has already finished.
    """
    run = RunDir(Path(runs_dir) / name)
    state = 0
    if run.metadata.is_file():
        state = 2 if read_run_card(run).status == COMPLETE else 1
    state = agree(cluster, state, f"states of the run directory {run.path}")
    if state == 2:
        raise RunError(f"{run.path} has already finished training; give the job "
                       "another --name.")
    return run.path if state == 1 else None


def agree(cluster: Cluster, value: int, what: str) -> int:
    """`value` if every worker has the same, else `RunError`; also a barrier for all workers."""
    if cluster.num_workers == 1:
        return value
    strategy = cluster.strategy

    @tf.function
    def sums() -> Any:  # of the value and its square over all replicas
        local = tf.constant([value, value * value], tf.float64)
        return strategy.reduce("SUM", strategy.run(lambda: local), axis=None)

    # Every worker gets the same sums, so all reach the same verdict: the values are all
    # equal exactly when n * sum(v^2) == sum(v)^2.
    total, squares = (float(v) for v in sums().numpy())
    n = cluster.num_replicas
    if abs(n * squares - total * total) > 1e-6:
        raise RunError(f"The workers see different {what} (mean {total / n:g}, this worker "
                       f"{value}). The run directory must be on storage that every worker "
                       "reads (a shared volume); see README: Training on several machines.")
    return value


def _evaluate(net: keras.Model, x: np.ndarray, y: np.ndarray, loss_fn: Any,
              batch_size: int) -> dict[str, float]:
    """Loss and accuracy on this worker alone (no collective ops), in inference mode."""

    @tf.function(reduce_retracing=True)
    def step(xb: Any, yb: Any) -> tuple[Any, Any]:
        probs = net(xb, training=False)
        labels = tf.argmax(yb, -1) if len(yb.shape) > 1 else tf.cast(yb, tf.int64)
        loss = loss_fn(yb, probs) * tf.cast(tf.shape(xb)[0], tf.float32)
        return loss, tf.reduce_sum(tf.cast(tf.argmax(probs, -1) == labels, tf.float32))

    total_loss = correct = 0.0
    for i in range(0, len(x), batch_size):
        loss, right = step(x[i:i + batch_size], y[i:i + batch_size])
        total_loss, correct = total_loss + float(loss), correct + float(right)
    return {"val_loss": total_loss / len(x), "val_accuracy": correct / len(x)}


def fit_distributed(net: keras.Model, cluster: Cluster,
                    dataset_fn: Callable[[tf.distribute.InputContext], tf.data.Dataset], *,
                    epochs: int, initial_epoch: int, steps: int,
                    shapes: Sequence[tuple[int, int]],
                    callbacks: Sequence[keras.callbacks.Callback],
                    validation: tuple[np.ndarray, np.ndarray] | None = None,
                    validation_batch_size: int = 1000) -> keras.callbacks.History:
    """``net.fit`` under `cluster`'s strategy, as a loop over ``strategy.run``.

    `net` must have been built and compiled in ``cluster.strategy.scope()``. `dataset_fn`
    gives each worker its per-device batches (see `make_train_dataset`'s ``shard``). Logs
    ``loss`` and ``accuracy`` (means over the epoch's images, as ``fit`` does) and, given
    `validation`, ``val_loss`` and ``val_accuracy`` (computed by the chief alone).
    `shapes` is the ``(height, width)`` of the images of every epoch: the step is traced
    once per shape, with static shapes (see `StaticImageSize`).
    """
    strategy = cluster.strategy
    optimizer, loss_fn = net.optimizer, net.loss
    with strategy.scope():
        optimizer.build(net.trainable_variables)  # its variables, before any replica step
    data = strategy.distribute_datasets_from_function(dataset_fn)

    def replica_step(x: Any, y: Any, shape: tuple[int, int]) -> tuple[Any, Any, Any]:
        x = tf.ensure_shape(x, (None, *shape, x.shape[-1]))
        with tf.GradientTape() as tape:
            probs = net(x, training=True)
            # Keras scales a mean loss by 1 / replicas inside a replica, so the summed
            # gradients are those of the mean loss over the global batch.
            loss = loss_fn(y, probs)
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, net.trainable_variables)
        optimizer.apply(grads, net.trainable_variables)  # all-reduces, then one update
        labels = tf.argmax(y, -1) if len(y.shape) > 1 else tf.cast(y, tf.int64)
        n = tf.cast(tf.shape(x)[0], tf.float32)
        right = tf.reduce_sum(tf.cast(tf.argmax(probs, -1) == labels, tf.float32))
        return loss * cluster.num_replicas * n, right, n

    def train_step(shape: tuple[int, int]) -> Callable[[Any], list[Any]]:
        @tf.function
        def step(batch: Any) -> list[Any]:
            sums = strategy.run(replica_step, args=(*batch, shape))
            return [strategy.reduce("SUM", v, axis=None) for v in sums]

        return step

    history = keras.callbacks.History()
    calls = keras.callbacks.CallbackList([*callbacks, history], model=net, epochs=epochs,
                                         steps=steps, verbose=0)
    net.stop_training = False
    calls.on_train_begin()
    try:
        by_shape = {shape: train_step(shape) for shape in set(map(tuple, shapes))}
        _epochs(net, data, [by_shape[tuple(shapes[e])] for e in range(epochs)], calls,
                range(initial_epoch, epochs), validation if cluster.chief else None,
                validation_batch_size)
    except (tf.errors.UnavailableError, tf.errors.AbortedError,
            tf.errors.DeadlineExceededError) as e:
        raise WorkerLostError(f"A worker of the job stopped or cannot be reached "
                       f"({type(e).__name__}). Restart every worker "
                       "with the same command: training resumes from the last checkpoint "
                       "of the run directory.") from e
    calls.on_train_end()
    return history


def _epochs(net: keras.Model, data: Any, train_steps: Sequence[Callable[[Any], list[Any]]],
            calls: keras.callbacks.CallbackList, epochs: range,
            validation: tuple[np.ndarray, np.ndarray] | None,
            validation_batch_size: int) -> None:
    for epoch in epochs:
        calls.on_epoch_begin(epoch)
        totals = np.zeros(3)
        for step, batch in enumerate(data):
            calls.on_train_batch_begin(step)
            totals += [float(v) for v in train_steps[epoch](batch)]
            calls.on_train_batch_end(step, {"loss": totals[0] / totals[2],
                                            "accuracy": totals[1] / totals[2]})
        logs = {"accuracy": totals[1] / totals[2], "loss": totals[0] / totals[2]}
        if validation is not None:
            calls.on_test_begin()
            logs.update(_evaluate(net, *validation, net.loss, validation_batch_size))
        calls.on_epoch_end(epoch, logs)
        if net.stop_training:
            break

