"""Importing TensorFlow quietly: its C++ start-up lines must not reach the user's terminal."""

from __future__ import annotations

import os
import sys
from types import ModuleType


def import_tensorflow() -> ModuleType:
    """Import TensorFlow with its native start-up logging silenced."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # Some lines (oneDNN, CUDA probing) are written before TF reads its log level,
    # straight to file descriptor 2, so only silencing the descriptor hides them.
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a detached daemon)
        import tensorflow

        return tensorflow
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        import tensorflow

        tensorflow.config.list_physical_devices()
        tensorflow.constant(0) + 0  # the first op loads the remaining kernels (and their log lines)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tensorflow
