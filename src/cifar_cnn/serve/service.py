"""`ModelService`: one loaded run behind the HTTP routes, with its limits, decoder pool and
`DynamicBatcher`."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from cifar_cnn.errors import RunError
from cifar_cnn.files import sha256_file
from cifar_cnn.predict import Classifier, Prediction
from cifar_cnn.serve.batcher import DynamicBatcher
from cifar_cnn.serve.errors import NotReadyError, RequestError
from cifar_cnn.serve.limits import Limits

T = TypeVar("T")


@dataclass(frozen=True)
class Ask:
    """A prediction request's resolved options: the TTA mode, whether to calibrate, and how
    many classes to list."""

    tta: str | None
    calibrated: bool
    top_k: int = 1


def file_version(path: Path) -> str:
    """The first 12 hex digits of the SHA-256 of a file: changes whenever the model does."""
    return sha256_file(path)[:12]


class ModelService:
    """A model loaded for serving: a thin adapter over the inference core (`Classifier`)
    that keeps the event loop free, with a decoding thread pool and a `DynamicBatcher`
    that lets concurrent requests share model calls.

    Args:
        run: a run directory, a ``.keras`` file or an export (see `Classifier.load`).
        limits: the request limits.
        tta: the test-time augmentation of requests that do not choose one (``tta=default``):
            None or "default" for the run's own, else a mode name, "none" or False.

    Raises:
        RunError: if the model cannot be loaded (see `Classifier.load`).
        ConfigError: for an unknown `tta`.
    """

    def __init__(self, run: str | os.PathLike[str] | None, limits: Limits | None = None, *,
                 tta: bool | str | None = None) -> None:
        self.classifier = Classifier.load(run)
        self.default_tta, _ = self.classifier.options(tta, False)
        self.limits = limits or Limits()
        self.name = self.classifier.name
        self.version = file_version(Path(self.classifier.source))
        self.ready = False
        self._pool: ThreadPoolExecutor | None = None
        self._batcher: DynamicBatcher | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classifier.class_names)

    async def start(self) -> None:
        """Start the decoder threads and the batcher, then warm the model up on a dummy batch
        (the first call traces TensorFlow's graph); `ready` is True after."""
        self._pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="decode")
        self._batcher = DynamicBatcher(self._predict, max_batch_size=self.limits.max_batch_size,
                                       max_wait_ms=self.limits.max_wait_ms)
        loop = asyncio.get_running_loop()
        for size in self._buckets:  # each batch shape's first call sets up its kernels
            x = np.zeros((size, *self.classifier.spec.shape), np.uint8)
            await loop.run_in_executor(None, self._predict, x, self.default_tta)
        # Everything loaded so far (TensorFlow, Keras, the model) stays alive for good: keep
        # it out of the garbage collector's full passes, whose pauses over those millions of
        # objects were the slowest requests' latency (p99 276 -> 129-175 ms, 64 clients).
        gc.collect()
        gc.freeze()
        self.ready = True

    @property
    def _buckets(self) -> list[int]:
        """The batch sizes the model sees: powers of two up to `max_batch_size`, and it."""
        top = self.limits.max_batch_size
        return sorted({min(2**k, top) for k in range(top.bit_length() + 1)})

    def _predict(self, x: np.ndarray, tta: str | None) -> np.ndarray:
        """The model's probabilities, the batch padded up to the next bucket size.

        A new batch shape costs its first call extra (TensorFlow and oneDNN set kernels up
        per shape); padding keeps the shapes to a few, all seen while warming up.
        """
        n = len(x)
        size = next(b for b in self._buckets if b >= n)
        if size > n:
            x = np.concatenate([x, np.zeros((size - n, *x.shape[1:]), x.dtype)])
        return self.classifier.raw_probs(x, tta)[:n]

    async def stop(self) -> None:
        """Finish what was submitted and stop the threads."""
        self.ready = False
        if self._batcher is not None:
            self._batcher.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._batcher = self._pool = None

    def ask(self, tta: str, calibrated: bool | None, top_k: int = 1) -> Ask:
        """A request's options checked and resolved (see `Classifier.options`; ``tta``
        "default" is the server's mode), before its images are read.

        Raises:
            RequestError: for an option the model cannot honour (calibrated=true without
                calibration, TTA on an export).
        """
        try:
            mode, use_calibration = self.classifier.options(
                self.default_tta if tta == "default" else tta, calibrated)
        except RunError as e:
            raise RequestError(str(e)) from None
        return Ask(mode, use_calibration, top_k)

    async def predict(self, items: Sequence[tuple[str, bytes | Any]],
                      ask: Ask) -> list[Prediction]:
        """A `Prediction` per ``(name, image)`` pair: decoded in the thread pool by the model's
        `InputSpec`, through the model in the shared `DynamicBatcher`, then made into records
        by one `Classifier.records` call.

        An image is the bytes of an image file, or an HxWx3 nested list of 0..255 values.

        Raises:
            ImageError: naming the first image (in order) that cannot be used.
            NotReadyError: before `start` has finished.
        """
        if self._batcher is None:
            raise NotReadyError("The model is not loaded yet; wait for GET /readyz to answer "
                                "200.")
        spec, max_pixels = self.classifier.spec, self.limits.max_pixels

        def decode(item: tuple[str, bytes | Any]) -> np.ndarray:
            name, image = item
            if isinstance(image, bytes):
                return spec.decode(image, name, max_pixels=max_pixels)
            return spec.from_array(image, name, max_pixels=max_pixels)

        x = np.stack(await self._in_pool(decode, items))
        raw = await self._batcher.submit(x, ask.tta)
        return self.classifier.records([name for name, _ in items], raw, tta=ask.tta,
                                       calibrated=ask.calibrated, top_k=ask.top_k)

    async def _in_pool(self, fn: Callable[..., T], items: Sequence[Any]) -> list[T]:
        """`fn` on every item in the decoder threads; the first failure in order is raised."""
        if self._pool is None:
            raise NotReadyError("The model is not loaded yet; wait for GET /readyz to answer "
                                "200.")
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(loop.run_in_executor(self._pool, fn, item)
                                         for item in items), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results

    def info(self) -> dict[str, Any]:
        """GET /v1/model: what the model is, how it was trained and measured, and the limits."""
        clf = self.classifier
        return {"name": self.name, "version": self.version, **clf.card.public(),
                "default_tta": self.default_tta, "calibrated": clf.is_calibrated,
                "limits": self.limits.to_dict()}
