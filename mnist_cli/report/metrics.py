"""Metrics of a model's predictions: accuracy, per-class precision/recall/F1, the confusion matrix.

numpy only: no TensorFlow, no Rich, no printing, so it is cheap to import from any command.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np




@dataclass(frozen=True)
class ClassReport:
    """Precision, recall and F1 of one class, and how many test items it has."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


# eq=False: the dataclass __eq__ would compare numpy arrays, which raises.
@dataclass(frozen=True, eq=False)
class Metrics:
    """How well predictions match labels: accuracy, confusion matrix and per-class scores."""

    accuracy: float
    loss: float | None
    count: int
    confusion_matrix: np.ndarray  # int64 [C, C]: rows = true label, columns = predicted
    per_class: tuple[ClassReport, ...]
    top_confusions: tuple[tuple[int, int, int], ...]  # (true, predicted, count), most frequent first
    macro_f1: float

    @property
    def class_names(self) -> tuple[str, ...]:
        """The class names, in label order."""
        return tuple(report.name for report in self.per_class)

    @property
    def errors(self) -> int:
        """How many items were predicted wrongly."""
        return int(self.count - np.trace(self.confusion_matrix))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; a non-finite loss becomes null so the JSON stays valid."""
        names = self.class_names
        loss = self.loss if self.loss is not None and math.isfinite(self.loss) else None
        return {
            "accuracy": self.accuracy,
            "loss": loss,
            "count": self.count,
            "errors": self.errors,
            "macro_f1": self.macro_f1,
            "per_class": [
                {
                    "class": index,
                    "name": report.name,
                    "precision": report.precision,
                    "recall": report.recall,
                    "f1": report.f1,
                    "support": report.support,
                }
                for index, report in enumerate(self.per_class)
            ],
            "confusion_matrix": self.confusion_matrix.tolist(),
            "top_confusions": [
                {
                    "true": true,
                    "predicted": predicted,
                    "count": count,
                    "true_name": names[true],
                    "predicted_name": names[predicted],
                }
                for true, predicted, count in self.top_confusions
            ],
        }


def _as_label_array(values: np.ndarray, what: str, num_classes: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must be integer class indices, got {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(f"{what} must lie in [0, {num_classes}), got [{array.min()}, {array.max()}]")
    return array


def safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, with 0 where the denominator is 0 (and no warning)."""
    numerator = numerator.astype(np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)


def compute_metrics(
    labels: np.ndarray, predictions: np.ndarray, *, class_names: Sequence[str], loss: float | None = None
) -> Metrics:
    """Accuracy, confusion matrix and per-class precision/recall/F1 (0 where undefined)."""
    num_classes = len(class_names)
    if num_classes < 1:
        raise ValueError("class_names must not be empty")
    labels = _as_label_array(labels, "labels", num_classes)
    predictions = _as_label_array(predictions, "predictions", num_classes)
    if labels.shape != predictions.shape:
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")

    matrix = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    matrix = matrix.reshape(num_classes, num_classes).astype(np.int64)
    matrix.setflags(write=False)
    correct = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = safe_divide(correct, predicted)
    recall = safe_divide(correct, support)
    f1 = safe_divide(2 * precision * recall, precision + recall)
    # Like scikit-learn's default: average over the classes that occur in the
    # labels or the predictions, so a tiny sample is not punished for absent classes.
    present = (support > 0) | (predicted > 0)
    macro_f1 = float(f1[present].mean()) if present.any() else 0.0

    off_diagonal = matrix.copy()
    np.fill_diagonal(off_diagonal, 0)
    true_idx, pred_idx = np.nonzero(off_diagonal)
    counts = off_diagonal[true_idx, pred_idx]
    order = np.lexsort((pred_idx, true_idx, -counts))  # count desc, then (true, predicted) asc
    top = tuple((int(true_idx[i]), int(pred_idx[i]), int(counts[i])) for i in order)

    count = int(labels.size)
    return Metrics(
        accuracy=float(correct.sum() / count) if count else 0.0,
        loss=None if loss is None else float(loss),
        count=count,
        confusion_matrix=matrix,
        per_class=tuple(
            ClassReport(str(name), float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
            for i, name in enumerate(class_names)
        ),
        top_confusions=top,
        macro_f1=macro_f1,
    )


def misclassified(
    labels: np.ndarray, predictions: np.ndarray, *, limit: int, probabilities: np.ndarray | None = None
) -> np.ndarray:
    """Indices of wrong predictions: data-set order, or most confidently wrong first given probabilities."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    labels = np.asarray(labels).astype(np.int64, copy=False)
    predictions = np.asarray(predictions).astype(np.int64, copy=False)
    wrong = np.flatnonzero(labels != predictions)
    if probabilities is not None:
        probabilities = np.asarray(probabilities)
        confidence = probabilities[wrong, predictions[wrong]]
        # Stable sort keeps data-set order among equal confidences.
        wrong = wrong[np.argsort(-confidence, kind="stable")]
    return wrong[:limit].astype(np.int64, copy=False)
