"""Every setting of `mnist serve`, with its default, in one frozen dataclass."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mnist_cli.core.errors import UsageError

MIB = 1024 * 1024
# Hosts that every other machine can reach; `mnist serve` warns when it binds one of them.
ALL_INTERFACES = ("0.0.0.0", "::", "")
PREPROCESSING = ("processes", "threads")  # where /predict reads pictures (serving/readers.py)


@dataclass(frozen=True)
class ServeConfig:
    """How `mnist serve` listens, batches and limits requests."""

    host: str = "127.0.0.1"
    port: int = 8000
    # TF Serving's gRPC API (PredictionService, ModelService) on this port; None: off. TF Serving uses 8500.
    grpc_port: int | None = None
    # Dynamic batching, as TF Serving does it: requests that arrive within `batch_wait_ms`
    # of the oldest waiting one share one model call of at most `max_batch_size` images.
    batching: bool = True
    max_batch_size: int = 64
    batch_wait_ms: float = 2.0
    # Caps that keep one request from taking the server's memory or time.
    max_instances: int = 256  # pictures or TF Serving instances in one request
    max_body_bytes: int = 16 * MIB  # a 12-megapixel phone JPEG is 3-8 MB
    body_timeout_s: float = 10.0  # the whole body must arrive within this; trickling clients are cut off
    max_connections: int = 512  # beyond this uvicorn answers 503 at once
    shutdown_timeout_s: float = 10.0  # in-flight requests get this long to finish on Ctrl-C or SIGTERM
    model_name: str = "mnist"  # the name in TF Serving's URLs: /v1/models/<name>:predict
    # Where /predict reads pictures: "processes", one per core, each with its own Python lock
    # (2.1x the requests/s of threads at 32 clients on 2 cores, benchmarks/RESULTS.md section 6),
    # or "threads" of the server; `preprocess_workers` 0 means one per core.
    preprocessing: str = "processes"
    preprocess_workers: int = 0
    # Threads of each model call (TF Serving's --tensorflow_intra_op_parallelism); 0: one per
    # core, TensorFlow's default. One call runs at a time and the picture readers take the
    # cores: a second thread cost 1.7x the CPU of a one-picture call for a few percent of its
    # time, and did not raise the TF Serving API's requests/s (benchmarks/RESULTS.md, section 6b).
    model_threads: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise UsageError(f"--port must be between 0 and 65535, got {self.port}", "0 picks a free port")
        if self.max_batch_size < 1:
            raise UsageError(f"--max-batch-size must be >= 1, got {self.max_batch_size}")
        if not (math.isfinite(self.batch_wait_ms) and 0 <= self.batch_wait_ms <= 1000):
            raise UsageError(f"--batch-wait-ms must be between 0 and 1000, got {self.batch_wait_ms}")
        if self.max_instances < 1:
            raise UsageError(f"--max-instances must be >= 1, got {self.max_instances}")
        if self.max_body_bytes < 1024:
            raise UsageError(f"--max-body-mb must be at least 0.001 (1 kB), got {self.max_body_bytes / MIB:g}")
        if not (math.isfinite(self.body_timeout_s) and self.body_timeout_s > 0):
            raise UsageError(f"--body-timeout must be > 0 seconds, got {self.body_timeout_s}")
        if self.preprocessing not in PREPROCESSING:
            raise UsageError(f"preprocessing must be one of {', '.join(PREPROCESSING)}, got {self.preprocessing!r}")
        if self.preprocess_workers < 0:
            raise UsageError(f"preprocess workers must be >= 0 (0: one per core), got {self.preprocess_workers}")
        if self.model_threads < 0:
            raise UsageError(f"--model-threads must be >= 0 (0: one per core), got {self.model_threads}")
        if not self.model_name or "/" in self.model_name or ":" in self.model_name:
            raise UsageError(f"--model-name must be a name without '/' or ':', got {self.model_name!r}")

    @property
    def reachable_by_others(self) -> bool:
        """Whether the server listens on every interface, not only this machine's loopback."""
        return self.host in ALL_INTERFACES
