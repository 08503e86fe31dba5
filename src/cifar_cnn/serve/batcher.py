"""`DynamicBatcher`: images of concurrent requests go through the model together.

A model call has a fixed cost (a Python -> TensorFlow round trip, kernel launches) plus a
small cost per image, so under load one call on 64 images is far cheaper than 64 calls on
one. The batcher trades a few milliseconds of latency (`max_wait_ms`) for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

PredictFn = Callable[[np.ndarray, "str | None"], np.ndarray]


@dataclass
class _Batch:
    """Images waiting for one model call, all with the same test-time augmentation."""

    tta: str | None
    parts: list[tuple[np.ndarray, asyncio.Future]] = field(default_factory=list)
    size: int = 0
    timer: asyncio.TimerHandle | None = None


class DynamicBatcher:
    """Merges the images of concurrent `submit` calls into batches for one model.

    A batch is cut when it holds `max_batch_size` images, or `max_wait_ms` after its first
    image arrived, whichever comes first; images with different test-time augmentation
    modes never share a batch. Batches go through `predict_fn` one at a time, in a
    dedicated worker thread, so the event loop never waits on the model. A request larger
    than `max_batch_size` is spread over several batches.

    Args:
        predict_fn: ``predict_fn(images, tta) -> probabilities``: a uint8 batch
            ``(N, H, W, 3)`` and a test-time augmentation mode (None, "flip",
            "flip_translate") in, ``(N, num_classes)`` out.
        max_batch_size: the most images in one call of `predict_fn`.
        max_wait_ms: how long the first image of a batch waits for others.

    Raises:
        ValueError: for `max_batch_size` below 1 or a negative `max_wait_ms`.

    Example:
        >>> batcher = DynamicBatcher(lambda x, tta: model(x), max_batch_size=64)  # doctest: +SKIP
        >>> probs = await batcher.submit(images, tta=None)  # doctest: +SKIP
        >>> batcher.close()  # doctest: +SKIP
    """

    def __init__(self, predict_fn: PredictFn, *, max_batch_size: int = 64,
                 max_wait_ms: float = 5.0) -> None:
        if max_batch_size < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size must be >= 1 and max_wait_ms >= 0. Received: "
                             f"max_batch_size={max_batch_size}, max_wait_ms={max_wait_ms}")
        self.predict_fn = predict_fn
        self.max_batch_size = int(max_batch_size)
        self.max_wait = max_wait_ms / 1000.0
        self._open: dict[str | None, _Batch] = {}  # the batch still filling, per TTA mode
        self._ready: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._closed = False

    async def submit(self, images: np.ndarray, tta: str | None = None) -> np.ndarray:
        """Probabilities ``(N, num_classes)`` for a uint8 batch ``(N, H, W, 3)``.

        Raises:
            ValueError: for an empty or wrongly shaped batch.
            RuntimeError: after `close`.
            Exception: whatever `predict_fn` raised for a batch holding these images.
        """
        if self._closed:
            raise RuntimeError("The batcher is closed; it takes no more images.")
        if not isinstance(images, np.ndarray) or images.ndim != 4 or len(images) == 0:
            raise ValueError("images must be a non-empty batch of shape (N, H, W, C). "
                             f"Received: shape={getattr(images, 'shape', type(images))}")
        loop = asyncio.get_running_loop()
        self._start()
        futures = []
        start = 0
        while start < len(images):
            batch = self._open.get(tta)
            if batch is None:
                batch = self._open[tta] = _Batch(tta)
                batch.timer = loop.call_later(self.max_wait, self._cut, batch)
            take = min(self.max_batch_size - batch.size, len(images) - start)
            future = loop.create_future()
            batch.parts.append((images[start:start + take], future))
            batch.size += take
            futures.append(future)
            start += take
            if batch.size >= self.max_batch_size:
                self._cut(batch)
        results = await asyncio.gather(*futures, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results[0] if len(results) == 1 else np.concatenate(results)

    def _cut(self, batch: _Batch) -> None:
        """Close `batch` to new images and queue it for the worker (on the event loop)."""
        if self._open.get(batch.tta) is batch:
            del self._open[batch.tta]
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        self._ready.put(batch)

    def _start(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="cifar-cnn-batcher",
                                            daemon=True)
            self._worker.start()

    def _work(self) -> None:
        """The worker thread: one model call at a time, results back to each request's loop.

        Batches cut while the model was busy wait in the queue; the worker merges those of
        the same mode (up to `max_batch_size` images) into one call, so a slow model call
        is followed by a full batch rather than many small ones.
        """
        later: deque[_Batch | None] = deque()  # taken off the queue, not (all) used yet
        while (batch := later.popleft() if later else self._ready.get()) is not None:
            parts, size = list(batch.parts), batch.size
            while size < self.max_batch_size:
                if later:
                    more = later.popleft()
                else:
                    try:
                        more = self._ready.get_nowait()
                    except queue.Empty:
                        break
                if more is None or more.tta != batch.tta:
                    later.appendleft(more)
                    break
                rest = _Batch(more.tta)
                for part in more.parts:  # whole requests' parts, up to the limit
                    if size + len(part[0]) <= self.max_batch_size and not rest.parts:
                        parts.append(part)
                        size += len(part[0])
                    else:
                        rest.parts.append(part)
                        rest.size += len(part[0])
                if rest.parts:
                    later.appendleft(rest)
                    break
            self._call(batch.tta, parts)

    def _call(self, tta: str | None, parts: list[tuple[np.ndarray, asyncio.Future]]) -> None:
        try:
            x = np.concatenate([images for images, _ in parts])
            probs = np.asarray(self.predict_fn(x, tta))
            if len(probs) != len(x):
                raise RuntimeError(f"predict_fn returned {len(probs)} rows for {len(x)} images.")
        except Exception as e:
            for _, future in parts:
                _deliver(future, error=e)
            return
        start = 0
        for images, future in parts:
            _deliver(future, result=probs[start:start + len(images)])
            start += len(images)

    def close(self) -> None:
        """Send the batches still filling, let the worker finish them, then stop it."""
        if self._closed:
            return
        self._closed = True
        for batch in list(self._open.values()):
            self._cut(batch)
        self._ready.put(None)
        if self._worker is not None:
            self._worker.join()


def _deliver(future: asyncio.Future, *, result: np.ndarray | None = None,
             error: BaseException | None = None) -> None:
    """Complete `future` from the worker thread (skipped if its request went away)."""

    def complete() -> None:
        if future.done():  # cancelled: the client disconnected
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # that event loop is closed: nobody waits
        future.get_loop().call_soon_threadsafe(complete)
