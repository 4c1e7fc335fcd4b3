"""Dynamic batching: concurrent requests share one model call, as TF Serving's batcher does.

Each request hands its images ([k, 28, 28] uint8) to `Batcher.logits` and awaits its rows
of the result. One worker task gathers what is waiting: it runs a batch as soon as it holds
`max_batch_size` images, or `max_wait` after the oldest waiting request arrived. The model
call runs in a worker thread, so the event loop keeps accepting and parsing requests while
the model computes; requests that arrive meanwhile form the next batch.

The wait is skipped when no other request is on its way (`in_flight`, the requests the
server is handling, counts no more than those already queued or in the running batch): a
lone client then pays nothing for batching, and under load the batches fill up.

A server may hold several model versions: each request names the model it wants
(`run_model`), and a batch only ever holds requests for one model, taken in arrival order.

With batching off each request calls the model itself, in the loop's thread pool.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

RunModel = Callable[[np.ndarray], np.ndarray]
OnBatch = Callable[[int, float], None]  # (images in the batch, seconds the model call took)


@dataclass
class _Waiting:
    images: np.ndarray
    future: asyncio.Future
    run_model: RunModel
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """Runs the model on the images of concurrent requests, batched or one request at a time."""

    def __init__(
        self,
        run_model: RunModel | None = None,
        *,
        enabled: bool = True,
        max_batch_size: int = 64,
        max_wait_s: float = 0.002,
        on_batch: OnBatch | None = None,
        in_flight: Callable[[], int] | None = None,
    ) -> None:
        self._run_model = run_model
        self._in_flight = in_flight
        self.enabled = enabled
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._queued = 0  # images waiting
        self._running = 0  # requests in the model call now
        self._arrived: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        # One thread for batched calls: batches run one after another, each using every core.
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Start the worker task (in the running event loop)."""
        if self.enabled and self._worker is None:
            self._arrived, self._full = asyncio.Event(), asyncio.Event()
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mnist-batch")
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="mnist-batcher")

    async def stop(self) -> None:
        """Stop the worker; requests still waiting get an error."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        while self._waiting:
            waiting = self._waiting.popleft()
            if not waiting.future.done():
                waiting.future.set_exception(RuntimeError("the server is shutting down"))
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    async def logits(self, images: np.ndarray, run_model: RunModel | None = None) -> np.ndarray:
        """The logits [k, classes] of `run_model` (default: the batcher's model) for uint8 images [k, 28, 28]."""
        run_model = run_model or self._run_model
        if run_model is None:
            raise ValueError("no model to run: give run_model")
        if not self.enabled or self._worker is None:
            began = time.perf_counter()
            logits = await asyncio.get_running_loop().run_in_executor(None, run_model, images)
            if self._on_batch:
                self._on_batch(len(images), time.perf_counter() - began)
            return logits
        assert self._arrived is not None and self._full is not None
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(images, future, run_model))
        self._queued += len(images)
        self._arrived.set()
        if self._queued >= self.max_batch_size:
            self._full.set()
        return await future

    def _take(self) -> list[_Waiting]:
        # At least one request, then whole requests for the same model while they fit in the batch.
        batch = [self._waiting.popleft()]
        size = len(batch[0].images)
        model = batch[0].run_model
        # `==`, not `is`: each access to a bound method makes a new object, equal to the others.
        if all(item.run_model == model for item in self._waiting):
            while self._waiting and size + len(self._waiting[0].images) <= self.max_batch_size:
                item = self._waiting.popleft()
                batch.append(item)
                size += len(item.images)
        else:  # several versions waiting (rare: only while one replaces another): the others keep their order
            others: collections.deque[_Waiting] = collections.deque()
            full = False
            for item in self._waiting:
                if item.run_model == model and not full and size + len(item.images) <= self.max_batch_size:
                    batch.append(item)
                    size += len(item.images)
                else:
                    full = full or item.run_model == model
                    others.append(item)
            self._waiting = others
        self._queued -= size
        return batch

    def _others_coming(self) -> bool:
        """Whether requests other than those queued or running are being handled (and may join the batch)."""
        if self._in_flight is None:
            return True
        return self._in_flight() > len(self._waiting) + self._running

    async def _work(self) -> None:
        assert self._arrived is not None and self._full is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            # Wait for more only until the oldest request has waited max_wait: requests
            # that queued up while the previous batch ran go at once.
            remaining = self._waiting[0].arrived + self.max_wait_s - time.monotonic()
            if self._queued < self.max_batch_size and remaining > 0 and self._others_coming():
                self._full.clear()
                try:
                    await asyncio.wait_for(self._full.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
            batch = self._take()
            if self._queued < self.max_batch_size:
                self._full.clear()
            # Requests whose client went away are dropped before the model sees them.
            batch = [item for item in batch if not item.future.done()]
            if not batch:
                continue
            images = batch[0].images if len(batch) == 1 else np.concatenate([item.images for item in batch])
            began = time.perf_counter()
            self._running = len(batch)
            try:
                logits = await loop.run_in_executor(self._pool, batch[0].run_model, images)
            except Exception as exc:  # noqa: BLE001 - each waiting request gets the error, the worker goes on
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            finally:
                self._running = 0
            if self._on_batch:
                self._on_batch(len(images), time.perf_counter() - began)
            start = 0
            for item in batch:
                rows = logits[start : start + len(item.images)]
                start += len(item.images)
                if not item.future.done():
                    item.future.set_result(rows)
