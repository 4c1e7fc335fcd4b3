"""Running a trained model over arrays of images: logits, losses, accuracy.

No TensorFlow here: the compiled steps come in as arguments, so evaluation can
import this before it has decided whether a target is worth loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mnist_cli.core.config import EVAL_BATCH
from mnist_cli.data.registry import NUM_CLASSES


@dataclass(frozen=True, eq=False)
class Scores:
    """Every example of a split scored: mean loss, accuracy, and the logits."""

    loss: float
    accuracy: float
    logits: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        """The predicted class of each example."""
        return self.logits.argmax(axis=1)


def score(eval_step: Any, images: np.ndarray, labels: np.ndarray, *, batch_size: int = EVAL_BATCH) -> Scores:
    """Score every example (no dropped remainder) with a compiled eval step."""
    losses, logits = [], []
    for start in range(0, len(images), batch_size):
        batch_losses, batch_logits = eval_step(images[start : start + batch_size], labels[start : start + batch_size])
        losses.append(batch_losses.numpy())
        logits.append(batch_logits.numpy())
    if not losses:
        return Scores(loss=float("nan"), accuracy=float("nan"), logits=np.zeros((0, NUM_CLASSES), np.float32))
    all_logits = np.concatenate(logits)
    return Scores(
        loss=float(np.concatenate(losses).astype(np.float64).mean()),
        accuracy=float((all_logits.argmax(axis=1) == labels).mean()),
        logits=all_logits,
    )


def predict_logits(predict_step: Any, images: np.ndarray, *, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Logits for uint8 images [N, 28, 28], batch by batch."""
    parts = [predict_step(images[start : start + batch_size]).numpy() for start in range(0, len(images), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, NUM_CLASSES), np.float32)

