"""Scoring every example of a split with a loaded model (`mnist evaluate`), and its report files."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli import data
from mnist_cli.core.config import EVAL_BATCH
from mnist_cli.core.errors import UsageError
from mnist_cli.inference.loading import Loaded, Source
from mnist_cli.inference.predict import probabilities
from mnist_cli.model import scoring
from mnist_cli.report import metrics as report_metrics
from mnist_cli.report import pictures


@dataclass(frozen=True)
class Scoring:
    """The split is loaded and about to be scored."""

    dataset: str
    split: str
    count: int
    source: Source


@dataclass(frozen=True, eq=False)
class Evaluation:
    """A split scored by a model: the metrics, and the arrays a report draws from."""

    metrics: report_metrics.Metrics
    source: Source
    dataset: str
    split: str
    loss_function: str
    seconds: float
    images: np.ndarray
    labels: np.ndarray
    logits: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        """The predicted class of each example."""
        return self.logits.argmax(axis=1)

    @property
    def probabilities(self) -> np.ndarray:
        """The class probabilities, [N, classes] (see `probabilities`)."""
        return probabilities(self.logits, loss=self.loss_function)

    @property
    def images_per_second(self) -> float:
        """Scoring throughput."""
        return self.metrics.count / max(self.seconds, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        """What `mnist evaluate --json` prints."""
        return {
            **self.metrics.to_dict(),
            "loss_function": self.loss_function,
            "target": self.source.target,
            "model": self.source.to_dict(),
            "dataset": self.dataset,
            "split": self.split,
            "seconds": self.seconds,
            "images_per_second": self.images_per_second,
        }


def split_arrays(directory: Path, *, loaded: Loaded, dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The (images, labels) of `split`; train and val are held out exactly as the run's training did."""
    if split not in data.EVAL_SPLITS:
        raise UsageError(f"--split must be one of {', '.join(data.EVAL_SPLITS)}, got {split!r}")
    if split == "test":
        images, labels = data.load_split(directory, "test")
    else:
        if split == "val" and not loaded.config_known:
            raise UsageError(
                f"--split val needs the run's config.json to know which images were held out, and {loaded.source.path} has none",
                "evaluate the run directory instead, or use --split test",
            )
        if split == "val" and loaded.config.val_split == 0:
            raise UsageError("this run held out no validation split (--val-split 0)", "use --split test or --split train")
        splits = data.load_splits(directory, dataset=dataset, val_split=loaded.config.val_split, seed=loaded.config.seed)
        images, labels = splits.split(split)
    if len(labels) == 0:
        raise UsageError(f"the {split} split of {dataset} in {directory} is empty", "choose another --split")
    return images, labels


def evaluate(
    loaded: Loaded,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    dataset: str,
    split: str,
    batch_size: int = EVAL_BATCH,
    on_event: Callable[[Scoring], None] | None = None,
) -> Evaluation:
    """Score every example (no dropped remainder) with the run's loss; accuracy, per-class scores, confusions."""
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if on_event:
        on_event(Scoring(dataset=dataset, split=split, count=len(labels), source=loaded.source))
    began = time.perf_counter()
    scores = scoring.score(loaded.eval_step, images, labels, batch_size=batch_size)
    metrics = report_metrics.compute_metrics(
        labels, scores.predictions, class_names=data.dataset_spec(dataset).class_names, loss=scores.loss
    )
    return Evaluation(
        metrics=metrics,
        source=loaded.source,
        dataset=dataset,
        split=split,
        loss_function=loaded.config.loss,
        seconds=time.perf_counter() - began,
        images=images,
        labels=labels,
        logits=scores.logits,
    )


def write_report(evaluation: Evaluation, directory: Path, *, limit: int = 100) -> list[Path]:
    """Write the confusion matrix and the most confidently misclassified digits as PNG, and metrics.json."""
    return pictures.write_report(
        directory,
        metrics=evaluation.metrics,
        images=evaluation.images,
        labels=evaluation.labels,
        predictions=evaluation.predictions,
        class_names=evaluation.metrics.class_names,
        limit=limit,
        probabilities=evaluation.probabilities,
    )
