"""Where `/predict` turns pictures into digits: worker processes, one per core, or threads of the server.

Preprocessing a picture is CPU work, part of it under Python's global lock (NumPy's small
steps). In threads of the server it competes for that lock with the event loop, which parses
requests and writes answers; in worker processes each picture has a core and a lock of its
own, and the server's process only decodes HTTP and runs the model: at 32 clients on 2 cores
that served 2.1x the requests/s of threads (benchmarks/RESULTS.md, section 6). A worker that dies (a decoder crash) takes only its picture with
it: the pool is replaced and that picture is answered as unreadable.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

import anyio

from mnist_cli.core.memory import keep_freed_memory
from mnist_cli.inference import predict
from mnist_cli.serving.config import PREPROCESSING

PROCESSES, THREADS = PREPROCESSING
_INLINE_BYTES = 64 * 1024  # pictures up to this size are written to a worker's pipe on the event loop
KINDS = PREPROCESSING


def _work(connection: Any) -> None:
    """A worker process: read each batch of pictures it is sent, answer with the digits, until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the server decides when workers stop
    keep_freed_memory()  # each picture's arrays reuse the last one's pages instead of faulting in fresh ones
    while True:
        try:
            number, pictures = connection.recv()
        except (EOFError, OSError):
            return
        connection.send((number, predict.read_pictures(pictures)))


class _Worker:
    """One worker process and its pipe; answers arrive through the event loop's reader callback."""

    def __init__(self, context: Any) -> None:
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_work, args=(child,), daemon=True, name="mnist-picture-reader")
        self.process.start()
        child.close()
        self.waiting: dict[int, tuple[asyncio.Future, Sequence[predict.Picture]]] = {}
        self.sending = threading.Lock()  # one message at a time on the pipe


class PictureReaders:
    """Reads pictures into 28x28 digits on `workers` cores, in processes or threads."""

    def __init__(self, kind: str = PROCESSES, workers: int = 0) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.workers = workers or max(1, os.cpu_count() or 1)
        # Threads: more than cores only add contention (and malloc arenas).
        self._limiter = anyio.CapacityLimiter(max(2, self.workers))
        self._context = multiprocessing.get_context("forkserver")
        self._pool: list[_Worker] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._numbers = itertools.count()

    def start(self) -> None:
        """Start the worker processes (each imports the preprocessing once, in the fork server)."""
        if self.kind == PROCESSES and not self._pool:
            # forkserver: the workers are not forks of a process running TensorFlow's threads.
            self._context.set_forkserver_preload(["mnist_cli.inference.predict"])
            self._pool = [_Worker(self._context) for _ in range(self.workers)]

    def stop(self) -> None:
        """Stop the worker processes; pictures still being read are answered as unreadable."""
        for worker in self._pool:
            self._retire(worker)
            worker.process.join(timeout=10)
        self._pool = []

    async def read(self, pictures: Sequence[predict.Picture]) -> list:
        """`predict.read_pictures(pictures)`, off the event loop."""
        if not self._pool:
            return await anyio.to_thread.run_sync(predict.read_pictures, pictures, limiter=self._limiter)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # the readers' callbacks run on the loop that serves
            self._loop = loop
            for worker in self._pool:
                loop.add_reader(worker.connection.fileno(), self._answered, worker)
        worker = min(self._pool, key=lambda candidate: len(candidate.waiting))
        number = next(self._numbers)
        future = loop.create_future()
        worker.waiting[number] = (future, pictures)
        try:
            await self._send(worker, (number, list(pictures)), sum(len(p.source) for p in pictures if isinstance(p.source, bytes)))
        except OSError:
            self._replace(worker)
        return await future

    async def _send(self, worker: _Worker, message: Any, size: int) -> None:
        # A drawing (kilobytes) fits the pipe's buffer and goes at once; a photo (megabytes)
        # would hold the event loop until the busy worker drains it, so a thread sends it.
        if size <= _INLINE_BYTES and worker.sending.acquire(blocking=False):
            try:
                worker.connection.send(message)
            finally:
                worker.sending.release()
            return

        def send() -> None:
            with worker.sending:
                worker.connection.send(message)

        await anyio.to_thread.run_sync(send)

    def _answered(self, worker: _Worker) -> None:
        try:
            number, read = worker.connection.recv()
        except (EOFError, OSError):  # the worker died (a decoder crash): its pictures fail, a new one takes over
            self._replace(worker)
            return
        future, _ = worker.waiting.pop(number)
        if not future.done():
            future.set_result(read)

    def _replace(self, worker: _Worker) -> None:
        if worker not in self._pool:
            return
        self._retire(worker)
        fresh = _Worker(self._context)
        self._pool[self._pool.index(worker)] = fresh
        if self._loop is not None:
            self._loop.add_reader(fresh.connection.fileno(), self._answered, fresh)

    def _retire(self, worker: _Worker) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(worker.connection.fileno())
        worker.connection.close()  # the worker's recv ends: it exits
        reason = "the picture reader stopped while reading it"
        for future, pictures in worker.waiting.values():
            if not future.done():
                future.set_result([predict.Failure(p.path, f"{p.path} could not be read ({reason})", "convert it to PNG or JPEG") for p in pictures])
        worker.waiting.clear()
