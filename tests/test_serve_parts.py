"""`mnist serve`'s parts without a server: the dynamic batcher, and where pictures are read (threads or worker processes)."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import numpy as np
import pytest

from mnist_cli.serving.batching import Batcher
from helpers import bar_digit
from serving import png

# --------------------------------------------------------------------------- the batcher


def _run_batcher(batcher: Batcher, requests: list[np.ndarray]) -> list[np.ndarray]:
    async def main() -> list[np.ndarray]:
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.logits(images) for images in requests))
        finally:
            await batcher.stop()

    return asyncio.run(main())


def _fake_model(calls: list[int]) -> Any:
    def run(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        time.sleep(0.01)  # a model call takes time; requests arriving meanwhile form the next batch
        return np.repeat(images.reshape(len(images), -1)[:, :1].astype(np.float32), 10, axis=1)

    return run


def test_concurrent_requests_share_model_calls_and_each_gets_its_own_rows() -> None:
    calls: list[int] = []
    requests = [np.full((1 + i % 3, 28, 28), i, np.uint8) for i in range(40)]
    results = _run_batcher(Batcher(_fake_model(calls), max_batch_size=16, max_wait_s=0.05), requests)
    for images, logits in zip(requests, results):
        assert logits.shape == (len(images), 10) and (logits == images[0, 0, 0]).all()
    assert sum(calls) == sum(len(r) for r in requests)
    assert len(calls) < len(requests) / 3 and max(calls) <= 16


def test_without_batching_each_request_is_its_own_model_call() -> None:
    calls: list[int] = []
    requests = [np.full((2, 28, 28), i, np.uint8) for i in range(10)]
    results = _run_batcher(Batcher(_fake_model(calls), enabled=False), requests)
    assert sorted(calls) == [2] * 10
    assert all((logits == i).all() for i, logits in enumerate(results))


def test_a_request_larger_than_the_batch_runs_alone_and_a_model_error_reaches_only_its_batch() -> None:
    calls: list[int] = []
    model = _fake_model(calls)

    def failing_on_sevens(images: np.ndarray) -> np.ndarray:
        if (images == 7).any():
            raise RuntimeError("model failed")
        return model(images)

    async def main() -> tuple[Any, Any, Any]:
        batcher = Batcher(failing_on_sevens, max_batch_size=4, max_wait_s=0.0)
        await batcher.start()
        try:
            big = await batcher.logits(np.zeros((9, 28, 28), np.uint8))
            with pytest.raises(RuntimeError, match="model failed"):
                await batcher.logits(np.full((1, 28, 28), 7, np.uint8))
            after = await batcher.logits(np.ones((1, 28, 28), np.uint8))
            return big, after, calls
        finally:
            await batcher.stop()

    big, after, calls = asyncio.run(main())
    assert big.shape == (9, 10) and calls[0] == 9
    assert after.shape == (1, 10)


def test_a_lone_request_does_not_wait_for_company_when_no_other_request_is_coming() -> None:
    calls: list[int] = []
    in_flight = [1]

    async def main() -> np.ndarray:
        # An hour's wait: the request must still be answered at once, as nothing else is in flight.
        batcher = Batcher(_fake_model(calls), max_batch_size=64, max_wait_s=3600, in_flight=lambda: in_flight[0])
        await batcher.start()
        try:
            return await asyncio.wait_for(batcher.logits(np.zeros((1, 28, 28), np.uint8)), timeout=120)
        finally:
            await batcher.stop()

    assert asyncio.run(main()).shape == (1, 10) and calls == [1]


# --------------------------------------------------------------------------- where pictures are read


def test_worker_processes_read_pictures_as_threads_do_and_a_killed_worker_costs_one_answer() -> None:
    import os

    from mnist_cli.inference import predict
    from mnist_cli.serving.readers import PictureReaders

    pictures = [predict.Picture(f"{label}.png", png(bar_digit(label))) for label in (2, 7)]

    async def main() -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        threads, processes = PictureReaders("threads"), PictureReaders("processes", workers=2)
        processes.start()
        try:
            in_threads = await threads.read(pictures)
            in_processes = await processes.read(pictures)
            for worker in processes._pool:
                os.kill(worker.process.pid, signal.SIGKILL)  # as a decoder crash would end it
                worker.process.join()
            during = await processes.read(pictures)
            after = await processes.read(pictures)
            return in_threads, in_processes, during, after
        finally:
            processes.stop()

    in_threads, in_processes, during, after = asyncio.run(main())
    assert all(np.array_equal(a, b) for a, b in zip(in_threads, in_processes))
    assert all(isinstance(item, predict.Failure) or isinstance(item, np.ndarray) for item in during)
    assert all(np.array_equal(a, b) for a, b in zip(in_threads, after))  # a new pool took over
