"""Keras callbacks that cifar-cnn adds to ``model.fit``."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import keras


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress(keras.callbacks.Callback):
    """Progress bar with loss, accuracy, images/s and the time left for the whole run.

    Adds ``images_per_sec`` (training images per second of the epoch's training phase) to
    the epoch logs, so CSVLogger records it in history.csv. Place it before CSVLogger.

    Its batch hook only draws the bar, so it is marked ``async_safe``: Keras may then run
    batch hooks off the training thread instead of waiting for each step's logs.

    Args:
        epochs: total epochs of the run (for the time-left estimate).
        steps: training steps per epoch.
        batch_size: images per step.
        num_images: training images per epoch.
        verbose: 1 draws a live bar (for terminals), 2 prints one line per epoch, 0 nothing.
    """

    async_safe = True

    def __init__(self, epochs: int, steps: int, num_images: int, verbose: int = 1) -> None:
        super().__init__()
        self.epochs = epochs
        self.steps = steps
        self.num_images = num_images
        self.verbose = verbose
        self._bar: keras.utils.Progbar | None = None
        self._epoch_seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch
        self._t0 = time.perf_counter()
        self._train_end: float | None = None
        if self.verbose:
            print(f"Epoch {epoch + 1}/{self.epochs}", file=sys.stdout, flush=True)
            self._bar = keras.utils.Progbar(
                self.steps, verbose=self.verbose, stateful_metrics=["img/s"], unit_name="step"
            )

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._train_end = time.perf_counter()  # validation starts: the training phase is over

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._bar is not None and self.verbose == 1:
            now = time.perf_counter()
            done = (batch + 1) * self.num_images / self.steps
            values = [(k, float(v)) for k, v in (logs or {}).items()]
            values.append(("img/s", done / max(now - self._t0, 1e-9)))
            self._bar.update(batch + 1, values=values)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = time.perf_counter()
        train_seconds = (self._train_end or now) - self._t0
        ips = self.num_images / max(train_seconds, 1e-9)
        if logs is not None:
            logs["images_per_sec"] = ips
        self._epoch_seconds.append(now - self._t0)
        if self._bar is not None:
            values = [(k, float(v)) for k, v in (logs or {}).items() if k != "images_per_sec"]
            values.append(("img/s", ips))
            self._bar.update(self.steps, values=values, finalize=True)
            left = self.epochs - (epoch + 1)
            if left:
                recent = self._epoch_seconds[-3:]
                eta = left * sum(recent) / len(recent)
                print(f"  time left: about {_duration(eta)}", file=sys.stdout, flush=True)


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, logging once per epoch and doing nothing per batch.

    Keras' version calls ``summary.scalar`` for every metric after every batch even when
    ``update_freq="epoch"`` (the calls write nothing then, but cost Python time each step).
    """

    async_safe = True

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        pass


class StaticImageSize(keras.callbacks.Callback):
    """Gives the training step static image shapes when they change between epochs.

    Progressive resizing feeds ``fit`` one dataset whose images change size between
    epochs, so their height and width are unknown to the traced step; a graph traced for
    unknown sizes runs convolutions much slower on CPUs. At each epoch whose size differs
    from the last, this makes a new training function that fixes the batch's shape,
    traced once per size.

    Args:
        shapes: ``(height, width)`` of the images of every epoch of the run.
    """

    def __init__(self, shapes: Sequence[tuple[int, int]]) -> None:
        super().__init__()
        self.shapes = [tuple(s) for s in shapes]
        self._shape: tuple[int, ...] | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        import tensorflow as tf

        shape = self.shapes[epoch]
        if shape == self._shape:
            return
        self._shape = shape
        model = self.model
        keras_step = type(model).train_step

        def train_step(data: Any) -> Any:
            x, *rest = data
            x = tf.ensure_shape(x, (None, *shape, x.shape[-1]))
            return keras_step(model, (x, *rest))

        model.train_step = train_step  # the model's own step, on a batch of known shape
        model.make_train_function(force=True)

    def on_train_end(self, logs: dict | None = None) -> None:
        vars(self.model).pop("train_step", None)
        self.model.train_function = None


class StopBetweenSteps(keras.callbacks.Callback):
    """Ctrl-C during training stops it between two steps, never inside one.

    Python raises KeyboardInterrupt wherever the main thread happens to be, which can be
    deep inside TensorFlow's step or input pipeline. Used as a context manager around
    ``fit``, this takes SIGINT over: the first Ctrl-C only asks to stop, and the next
    batch (training or validation) raises KeyboardInterrupt before it starts; a second
    Ctrl-C raises at once. Outside the ``with`` block, or off the main thread (where
    Python allows no signal handlers), Ctrl-C behaves as usual.
    """

    async_safe = True  # its hooks are the batch-begin ones, which Keras calls in order

    def __init__(self) -> None:
        super().__init__()
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> StopBetweenSteps:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._request)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _request(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def _stop_if_requested(self, *args: Any, **kwargs: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt

    on_epoch_begin = on_train_batch_begin = on_test_batch_begin = _stop_if_requested
