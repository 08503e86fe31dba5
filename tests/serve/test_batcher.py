"""`DynamicBatcher` with a fake model that records every call."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from cifar_cnn.serve import DynamicBatcher


class FakeModel:
    """Probabilities that encode each image (its first pixel), so results can be traced back;
    records the size and TTA mode of every call, the thread it ran on and overlaps."""

    def __init__(self, delay: float = 0.0, fail_on: int | None = None) -> None:
        self.calls: list[tuple[int, str | None]] = []
        self.threads: set[str] = set()
        self.delay, self.fail_on = delay, fail_on
        self.running = self.most_running = 0
        self.lock = threading.Lock()

    def __call__(self, x: np.ndarray, tta: str | None) -> np.ndarray:
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            self.calls.append((len(x), tta))
            self.threads.add(threading.current_thread().name)
            time.sleep(self.delay)
            if self.fail_on is not None and (x[:, 0, 0, 0] == self.fail_on).any():
                raise RuntimeError("model failed")
            return np.stack([x[:, 0, 0, 0], 255 - x[:, 0, 0, 0]], axis=1).astype(float)
        finally:
            with self.lock:
                self.running -= 1


def images(*values: int) -> np.ndarray:
    x = np.zeros((len(values), 4, 4, 3), np.uint8)
    x[:, 0, 0, 0] = values
    return x


def run(coro_fn, *args, **kwargs):
    """Run ``coro_fn(batcher)`` on a fresh event loop, closing the batcher after."""
    batcher = DynamicBatcher(*args, **kwargs)

    async def main():
        try:
            return await coro_fn(batcher)
        finally:
            batcher.close()

    return asyncio.run(main())


def test_concurrent_submits_share_one_call() -> None:
    model = FakeModel()

    async def go(b: DynamicBatcher):
        return await asyncio.gather(*(b.submit(images(v)) for v in (1, 2, 3, 4, 5)))

    results = run(go, model, max_batch_size=64, max_wait_ms=50)
    assert model.calls == [(5, None)]
    assert [r[0, 0] for r in results] == [1, 2, 3, 4, 5]  # each got its own row back
    assert all(r.shape == (1, 2) for r in results)
    assert model.threads and threading.main_thread().name not in model.threads


def test_batches_never_exceed_max_size_and_large_requests_are_split() -> None:
    model = FakeModel()

    async def go(b: DynamicBatcher):
        return await asyncio.gather(b.submit(images(1, 2, 3)), b.submit(images(4, 5, 6)),
                                    b.submit(images(*range(10, 19))))

    small1, small2, big = run(go, model, max_batch_size=4, max_wait_ms=50)
    sizes = [n for n, _ in model.calls]
    assert max(sizes) <= 4 and sum(sizes) == 15
    assert sizes[:3] == [4, 4, 4]  # full batches are cut at once
    assert small1[:, 0].tolist() == [1, 2, 3] and small2[:, 0].tolist() == [4, 5, 6]
    assert big[:, 0].tolist() == list(range(10, 19))  # split over batches, in order


def test_a_lone_image_waits_max_wait_ms_at_most() -> None:
    model = FakeModel()
    start = time.perf_counter()
    out = run(lambda b: b.submit(images(7)), model, max_batch_size=64, max_wait_ms=20)
    assert out[:, 0].tolist() == [7] and model.calls == [(1, None)]
    assert time.perf_counter() - start < 2.0


def test_tta_modes_are_batched_apart() -> None:
    model = FakeModel()

    async def go(b: DynamicBatcher):
        return await asyncio.gather(b.submit(images(1)), b.submit(images(2), "flip"),
                                    b.submit(images(3)), b.submit(images(4), "flip"))

    results = run(go, model, max_batch_size=64, max_wait_ms=50)
    assert sorted(model.calls, key=str) == [(2, "flip"), (2, None)]
    assert [r[0, 0] for r in results] == [1, 2, 3, 4]


def test_one_model_call_at_a_time_off_the_event_loop() -> None:
    model = FakeModel(delay=0.02)

    async def go(b: DynamicBatcher):
        loop_thread = threading.current_thread().name
        out = await asyncio.gather(*(b.submit(images(v), tta) for v in range(12)
                                     for tta in (None, "flip")))
        return loop_thread, out

    loop_thread, _ = run(go, model, max_batch_size=3, max_wait_ms=1)
    assert len(model.calls) >= 8 and model.most_running == 1
    assert loop_thread not in model.threads and len(model.threads) == 1


def test_batches_cut_while_the_model_is_busy_are_merged() -> None:
    model = FakeModel(delay=0.2)

    async def go(b: DynamicBatcher):
        first = asyncio.ensure_future(b.submit(images(0)))
        await asyncio.sleep(0.05)  # the model is busy with image 0 from here on
        later = []
        for v in range(1, 7):  # each cut into a batch of its own after 1 ms
            later.append(asyncio.ensure_future(b.submit(images(v), None if v < 6 else "flip")))
            await asyncio.sleep(0.01)
        return await asyncio.gather(first, *later)

    results = run(go, model, max_batch_size=4, max_wait_ms=1)
    assert model.calls[:3] == [(1, None), (4, None), (1, None)]  # merged up to the max
    assert model.calls[3:] == [(1, "flip")]  # another mode is never merged in
    assert [r[0, 0] for r in results] == [0, 1, 2, 3, 4, 5, 6]


def test_a_queued_batch_is_split_request_by_request_to_fill_a_call() -> None:
    model = FakeModel(delay=0.2)

    async def go(b: DynamicBatcher):
        first = asyncio.ensure_future(b.submit(images(0)))
        await asyncio.sleep(0.05)  # the model is busy with image 0 from here on
        one = asyncio.ensure_future(b.submit(images(1)))
        await asyncio.sleep(0.01)  # cut alone after 1 ms
        three = [asyncio.ensure_future(b.submit(images(v))) for v in (2, 3, 4)]  # one batch
        return await asyncio.gather(first, one, *three)

    results = run(go, model, max_batch_size=3, max_wait_ms=1)
    assert model.calls == [(1, None), (3, None), (1, None)]  # 1 + 2 of the 3, then the last
    assert [r[0, 0] for r in results] == [0, 1, 2, 3, 4]


def test_a_failing_batch_fails_only_its_requests() -> None:
    model = FakeModel(fail_on=99)

    async def go(b: DynamicBatcher):
        bad = await asyncio.gather(b.submit(images(99)), b.submit(images(1)),
                                   b.submit(images(2), "flip"), return_exceptions=True)
        after = await b.submit(images(3))  # the batcher still works
        return bad, after

    (bad, same_batch, other_batch), after = run(go, model, max_batch_size=64, max_wait_ms=30)
    assert isinstance(bad, RuntimeError) and isinstance(same_batch, RuntimeError)
    assert other_batch[:, 0].tolist() == [2]
    assert after[:, 0].tolist() == [3]


def test_wrong_rows_from_the_model_fail_the_batch() -> None:
    async def go(b: DynamicBatcher):
        with pytest.raises(RuntimeError, match="returned 1 rows for 2 images"):
            await b.submit(images(1, 2))
        return True

    assert run(go, lambda x, tta: np.ones((1, 2)), max_batch_size=8, max_wait_ms=0)


def test_bad_arguments_and_closed_batcher() -> None:
    with pytest.raises(ValueError, match="max_batch_size must be >= 1"):
        DynamicBatcher(FakeModel(), max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms >= 0"):
        DynamicBatcher(FakeModel(), max_wait_ms=-1)

    async def go(b: DynamicBatcher):
        with pytest.raises(ValueError, match=r"Received: shape=\(0, 4, 4, 3\)"):
            await b.submit(images())
        with pytest.raises(ValueError, match="non-empty batch"):
            await b.submit(np.zeros((4, 4, 3), np.uint8))
        b.close()
        with pytest.raises(RuntimeError, match="closed"):
            await b.submit(images(1))
        return True

    assert run(go, FakeModel())
