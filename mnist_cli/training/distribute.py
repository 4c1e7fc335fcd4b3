"""Choosing a tf.distribute strategy: one device, all local devices, or several workers.

Multi-worker runs read their cluster from TF_CONFIG, as every TensorFlow tool does.
Only the chief writes the run directory; the other workers write their (required)
share of each checkpoint into a temporary directory that is deleted afterwards.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from mnist_cli.core.config import STRATEGIES
from mnist_cli.core.errors import UsageError
from mnist_cli.core.tf_setup import import_tensorflow



@dataclass(frozen=True)
class Placement:
    """The strategy to train under, and whether this process writes the run."""

    strategy: Any
    name: str
    replicas: int
    is_chief: bool
    task: str


def _cluster() -> tuple[dict[str, Any], str, int] | None:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        spec = json.loads(raw)
        cluster, task = spec["cluster"], spec.get("task", {})
        return cluster, str(task.get("type", "worker")), int(task.get("index", 0))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UsageError("TF_CONFIG is not valid JSON with a 'cluster' and a 'task'", "see the multi-worker section of the README") from None


def make_placement(name: str, *, devices: list[str] | None = None) -> Placement:
    """Build the strategy named by `--strategy` (auto picks from TF_CONFIG and the GPUs)."""
    if name not in STRATEGIES:
        raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    cluster = _cluster()
    if name == "multi-worker" and cluster is None:
        raise UsageError("--strategy multi-worker needs TF_CONFIG", "set TF_CONFIG to the cluster and this worker's task")
    tf = import_tensorflow()
    if name == "auto":
        workers = len(cluster[0].get("worker", [])) + len(cluster[0].get("chief", [])) if cluster else 0
        if workers > 1:
            name = "multi-worker"
        elif devices or len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "one"
    if name == "one":
        return Placement(tf.distribute.get_strategy(), "one", 1, True, "local")
    if name == "mirrored":
        try:
            strategy = tf.distribute.MirroredStrategy(devices=devices or None)
        except (ValueError, RuntimeError) as exc:
            raise UsageError(f"cannot place a mirrored strategy on {devices or 'the local devices'}: {exc}") from None
        return Placement(strategy, "mirrored", strategy.num_replicas_in_sync, True, "local")
    assert cluster is not None
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    _, task_type, index = cluster
    has_chief = "chief" in cluster[0]
    is_chief = task_type == "chief" or (task_type == "worker" and index == 0 and not has_chief)
    return Placement(strategy, "multi-worker", strategy.num_replicas_in_sync, is_chief, f"{task_type} {index}")
