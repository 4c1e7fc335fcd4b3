"""Importing TensorFlow quietly: its C++ start-up lines must not reach the user's terminal."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from types import ModuleType

CPU_DEVICES_ENV = "MNIST_CPU_DEVICES"
INTRA_OP_ENV = "TF_NUM_INTRAOP_THREADS"  # TensorFlow's own


def import_tensorflow() -> ModuleType:
    """Import TensorFlow with its native start-up logging silenced."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # Some lines (oneDNN, CUDA probing) are written before TF reads its log level,
    # straight to file descriptor 2, so only silencing the descriptor hides them.
    with native_stderr_silenced():
        import tensorflow

        _split_cpu(tensorflow)
        if "TF_CONFIG" not in os.environ:
            # The first op loads the remaining kernels (and their log lines); a multi-worker
            # run must not run one before its strategy configures the collective ops.
            tensorflow.constant(0) + 0
    # TF's Python warnings (a checkpoint with unrestored values, a parse failure of a state
    # file) would print beside the one `error:` line; the tool reports those itself.
    tensorflow.get_logger().setLevel(logging.ERROR)
    return tensorflow


def limit_op_threads(intra_op: int) -> bool:
    """Run each TensorFlow op on at most `intra_op` threads; False if TensorFlow has started already (too late)."""
    if "tensorflow" in sys.modules:
        return False
    # Read once, when TensorFlow makes its thread pools; before that no call can set it.
    os.environ[INTRA_OP_ENV] = str(intra_op)
    return True


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 to /dev/null for the block."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a detached daemon)
        yield
        return
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _split_cpu(tensorflow: ModuleType) -> None:
    # `MNIST_CPU_DEVICES=2` splits the CPU into logical devices so that `--strategy
    # mirrored` can be tried (and tested) on a machine without GPUs. It must happen
    # before TensorFlow initialises its devices.
    count = os.environ.get(CPU_DEVICES_ENV, "")
    if not count.isdigit() or int(count) < 2:
        return
    cpu = tensorflow.config.list_physical_devices("CPU")[0]
    tensorflow.config.set_logical_device_configuration(
        cpu, [tensorflow.config.LogicalDeviceConfiguration() for _ in range(int(count))]
    )
