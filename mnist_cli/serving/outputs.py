"""The serving signature's outputs computed from the model's logits, for every protocol that answers tensors."""

from __future__ import annotations

import numpy as np

from mnist_cli.inference.predict import softmax
from mnist_cli.model.signature import CLASSES, LOGITS, OUTPUT_DTYPES, PROBABILITIES


def signature_outputs(logits: np.ndarray) -> dict[str, np.ndarray]:
    """`logits`, softmax `probabilities` and argmax `classes`, in the dtypes the exported signature has."""
    logits = np.asarray(logits, dtype=OUTPUT_DTYPES[LOGITS])
    probabilities = softmax(logits).astype(OUTPUT_DTYPES[PROBABILITIES], copy=False)  # as the SavedModel's tf.nn.softmax gives
    classes = logits.argmax(axis=1).astype(OUTPUT_DTYPES[CLASSES])
    return {LOGITS: logits, PROBABILITIES: probabilities, CLASSES: classes}


def little_endian_bytes(array: np.ndarray) -> bytes:
    """The tensor's bytes in row-major, little-endian order: TF's tensor_content and the v2 binary data both are."""
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
