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
import concurrent.futures
import multiprocessing
import os
import signal
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool

import anyio

from mnist_cli.inference import predict
from mnist_cli.serving.config import PREPROCESSING

PROCESSES, THREADS = PREPROCESSING
KINDS = PREPROCESSING


def _ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group; the server decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _ready(_: int) -> bool:
    return True


class PictureReaders:
    """Reads pictures into 28x28 digits on `workers` cores, in processes or threads."""

    def __init__(self, kind: str = PROCESSES, workers: int = 0) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.workers = workers or max(1, os.cpu_count() or 1)
        # Threads: more than cores only add contention (and malloc arenas).
        self._limiter = anyio.CapacityLimiter(max(2, self.workers))
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the worker processes (and wait until each has imported the preprocessing)."""
        if self.kind == PROCESSES and self._pool is None:
            self._pool = self._new_pool()
            list(self._pool.map(_ready, range(self.workers)))

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        # forkserver: the workers are not forks of a process running TensorFlow's threads.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["mnist_cli.inference.predict"])
        return concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context, initializer=_ignore_interrupts)

    def stop(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    async def read(self, pictures: Sequence[predict.Picture]) -> list:
        """`predict.read_pictures(pictures)`, off the event loop."""
        if self._pool is None:
            return await anyio.to_thread.run_sync(predict.read_pictures, pictures, limiter=self._limiter)
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, predict.read_pictures, pictures)
        except BrokenProcessPool:
            if self._pool is pool:
                self._pool = self._new_pool()
                pool.shutdown(wait=False)
            reason = "the picture reader stopped while reading it"
            return [predict.Failure(picture.path, f"{picture.path} could not be read ({reason})", "convert it to PNG or JPEG") for picture in pictures]
