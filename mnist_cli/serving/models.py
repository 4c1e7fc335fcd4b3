"""The model versions one server holds (TF Serving's servables), one of them current.

A plain `mnist serve RUN` holds one version, 1. A server that follows a training run adds
each new checkpoint as a version (named by its step) and makes it current; every protocol
(our `/predict`, TF Serving's REST and gRPC APIs, the Open Inference Protocol) reads the
same registry. Versions are added, swapped and removed atomically: the registry's contents
are one immutable snapshot replaced under a lock, so a request that took a servable keeps
using it to the end while later requests see the new one.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from mnist_cli import __version__
from mnist_cli.data.registry import COLS, ROWS, dataset_spec
from mnist_cli.inference.loading import Loaded
from mnist_cli.runs import listing
from mnist_cli.serving.config import ServeConfig

FIRST_VERSION = 1  # the version of the one model a plain `mnist serve` holds, as TF Serving numbers it


def model_info(loaded: Loaded, config: ServeConfig) -> dict[str, Any]:
    """What the page shows about the model: its run, data set, architecture and test accuracy."""
    run_dir = Path(loaded.source.run_dir) if loaded.source.run_dir else None
    test_accuracy = listing.summarize_run(run_dir).test_accuracy if run_dir else None
    dataset = loaded.dataset
    return {
        "run": run_dir.name if run_dir else None,
        "model": loaded.source.describe(),
        "dataset": dataset,
        "architecture": loaded.config.model if loaded.config_known else None,
        "loss": loaded.config.loss,
        "test_accuracy": test_accuracy,
        "class_names": list(dataset_spec(loaded.config.dataset).class_names),
        "tf_serving_name": config.model_name,
        "max_instances": config.max_instances,
        "max_body_bytes": config.max_body_bytes,
        "batching": {"enabled": config.batching, "max_batch_size": config.max_batch_size, "wait_ms": config.batch_wait_ms},
        "version": __version__,
    }


@dataclass(frozen=True, eq=False)
class Servable:
    """One loaded model version: the model, its number, and what `/info` says about it."""

    version: int
    loaded: Loaded
    info: Mapping[str, Any]
    @functools.cached_property
    def step(self) -> Any:
        """The compiled step's one traced graph, called directly.

        The tf.function around it binds and looks up its arguments on every call, which cost
        0.5-0.8 ms of CPU a call here, as much as the convnet itself on one picture.
        """
        return self.loaded.predict_step.get_concrete_function()

    def run_model(self, images: np.ndarray) -> np.ndarray:
        """The logits [k, classes] for uint8 images [k, 28, 28] (blocking: call it from a worker thread)."""
        return self.step(images).numpy()


def make_servable(loaded: Loaded, version: int, config: ServeConfig) -> Servable:
    """`loaded` as version `version`, its compiled step traced and sized before the first request."""
    if version < 1:
        raise ValueError(f"a model version is a positive integer, got {version}")
    servable = Servable(version, loaded, MappingProxyType(model_info(loaded, config)))
    # Traces the step, and lets TensorFlow size its buffers for the largest batch, before the
    # first request: memory then stays flat under load.
    for size in sorted({1, config.max_batch_size if config.batching else 1}):
        servable.run_model(np.zeros((size, ROWS, COLS), np.uint8))
    return servable


@dataclass(frozen=True)
class _Snapshot:
    servables: Mapping[int, Servable] = field(default_factory=dict)
    current: int | None = None


class ModelRegistry:
    """The versions of the one model a server serves under `name`; safe to change between requests."""

    def __init__(self, name: str, servables: tuple[Servable, ...] = ()) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._snapshot = _Snapshot()
        for servable in servables:
            self.add(servable)

    def current(self) -> Servable:
        """The version requests get when they name none (TF Serving's "latest")."""
        snapshot = self._snapshot
        if snapshot.current is None:
            raise LookupError("no model version is loaded")
        return snapshot.servables[snapshot.current]

    def get(self, version: int) -> Servable | None:
        """Version `version`, if the server holds it."""
        return self._snapshot.servables.get(version)

    def versions(self) -> tuple[int, ...]:
        """The versions held, in increasing order."""
        return tuple(sorted(self._snapshot.servables))

    def add(self, servable: Servable, *, make_current: bool = True) -> None:
        """Hold `servable` (replacing a version of the same number) and, by default, make it current."""
        with self._lock:
            old = self._snapshot
            servables = {**old.servables, servable.version: servable}
            current = servable.version if make_current or old.current is None else old.current
            self._snapshot = _Snapshot(MappingProxyType(servables), current)

    def remove(self, version: int) -> None:
        """Stop holding `version`; the current one cannot be removed (make another current first)."""
        with self._lock:
            old = self._snapshot
            if version == old.current:
                raise ValueError(f"version {version} is current; add another before removing it")
            servables = {number: servable for number, servable in old.servables.items() if number != version}
            self._snapshot = _Snapshot(MappingProxyType(servables), old.current)
