"""The trainer's small parts, each against a figure worked out by hand: optimizers and their
schedules, the loss, where compiled chunks end, and the augmentation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mnist_cli.core.config import TrainConfig

tf = pytest.importorskip("tensorflow")

from mnist_cli.model import network, steps  # noqa: E402
from mnist_cli.training.trainer import _chunk_ends  # noqa: E402


def _rate_at(optimizer, step: int) -> float:
    optimizer.iterations.assign(step)
    return network.current_learning_rate(optimizer)


# --------------------------------------------------------------------------- optimizers and schedules


@pytest.mark.parametrize(
    ("name", "kind", "extra"),
    [
        ("sgd", "SGD", {"momentum": 0.0, "nesterov": False}),
        ("momentum", "SGD", {"momentum": 0.9, "nesterov": True}),
        ("adam", "Adam", {}),
        ("adamw", "AdamW", {"weight_decay": 1e-4}),
    ],
)
def test_build_optimizer_makes_the_named_optimizer(name: str, kind: str, extra: dict) -> None:
    config = TrainConfig(optimizer=name)
    optimizer = network.build_optimizer(config, steps_per_epoch=10)
    assert type(optimizer).__name__ == kind
    for attribute, value in extra.items():
        assert getattr(optimizer, attribute) == pytest.approx(value), attribute
    assert network.current_learning_rate(optimizer) == pytest.approx(config.lr)


def test_mixed_fp16_wraps_the_optimizer_in_loss_scaling() -> None:
    optimizer = network.build_optimizer(TrainConfig(precision="mixed-fp16"), steps_per_epoch=10)
    assert type(optimizer).__name__ == "LossScaleOptimizer"
    assert network.current_learning_rate(optimizer) == pytest.approx(0.01)


def test_constant_schedule_keeps_the_rate() -> None:
    optimizer = network.build_optimizer(TrainConfig(lr=0.05, epochs=2), steps_per_epoch=50)
    assert [_rate_at(optimizer, step) for step in (0, 50, 99)] == pytest.approx([0.05, 0.05, 0.05])


def test_cosine_schedule_halves_at_the_middle_and_ends_near_zero() -> None:
    # 2 epochs of 50 steps: lr * (1 + cos(pi * step / 100)) / 2.
    optimizer = network.build_optimizer(TrainConfig(lr=0.1, epochs=2, schedule="cosine"), steps_per_epoch=50)
    expected = [0.1 * (1 + math.cos(math.pi * step / 100)) / 2 for step in (0, 25, 50, 100)]
    assert [_rate_at(optimizer, step) for step in (0, 25, 50, 100)] == pytest.approx(expected, abs=1e-7)
    assert _rate_at(optimizer, 50) == pytest.approx(0.05)


def test_onecycle_warms_up_over_30_percent_then_anneals() -> None:
    # 100 steps: warm-up from lr/25 to lr over 30 steps, then a cosine to lr * 1e-3 over the other 70.
    optimizer = network.build_optimizer(TrainConfig(lr=0.1, epochs=1, schedule="onecycle", optimizer="adam"), steps_per_epoch=100)
    assert _rate_at(optimizer, 0) == pytest.approx(0.1 / 25)
    assert _rate_at(optimizer, 15) == pytest.approx(0.1 / 25 + (0.1 - 0.1 / 25) * 15 / 30, rel=1e-5)
    assert _rate_at(optimizer, 30) == pytest.approx(0.1)
    middle = 30 + 35  # half-way through the anneal: (1 + cos(pi/2)) / 2 = 0.5 of the way down
    assert _rate_at(optimizer, middle) == pytest.approx(0.1 * (0.5 * (1 - 1e-3) + 1e-3), rel=1e-5)
    assert _rate_at(optimizer, 100) == pytest.approx(0.1 * 1e-3, rel=1e-4)


# --------------------------------------------------------------------------- the loss


def test_per_example_loss_matches_a_hand_computation() -> None:
    logits = tf.constant([[1.0, 0.0, 0.0, 0, 0, 0, 0, 0, 0, 0], [0.5, 2.0, -1.0, 0, 0, 0, 0, 0, 0, 0]], tf.float32)
    labels = tf.constant([0, 2], tf.uint8)
    # Squared error against one-hot: row 0 is exact; row 1 is 0.5^2 + 2^2 + (-1 - 1)^2.
    mse = steps.per_example_loss("mse", logits, labels).numpy()
    assert mse == pytest.approx([0.0, 0.25 + 4.0 + 4.0])
    # Cross-entropy: log(sum(exp(logits))) - logits[label].
    rows = logits.numpy().astype(np.float64)
    expected = [math.log(np.exp(rows[0]).sum()) - rows[0, 0], math.log(np.exp(rows[1]).sum()) - rows[1, 2]]
    assert steps.per_example_loss("xent", logits, labels).numpy() == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------- where compiled chunks end


def test_chunks_end_at_log_lines_counted_within_the_epoch() -> None:
    config = TrainConfig(log_every=200)
    assert _chunk_ends(0, 281, global_step=0, config=config) == 200
    assert _chunk_ends(200, 281, global_step=200, config=config) == 281  # the epoch's last full batch
    # A resumed epoch stopped at step 150 goes on to the next log line, not 200 steps further.
    assert _chunk_ends(150, 281, global_step=431, config=config) == 200


def test_chunks_also_end_at_step_checkpoints_counted_over_the_run() -> None:
    config = TrainConfig(log_every=200, checkpoint_every=100)
    # Global step 250 (epoch 2, step 50 of 200-step epochs): the next checkpoint is at global step 300.
    assert _chunk_ends(50, 200, global_step=250, config=config) == 100
    assert _chunk_ends(100, 200, global_step=300, config=config) == 200
    assert _chunk_ends(0, 1000, global_step=0, config=TrainConfig(log_every=50, checkpoint_every=120)) == 50


# --------------------------------------------------------------------------- augmentation


def _digits(count: int = 8) -> np.ndarray:
    images = np.zeros((count, 28, 28), np.uint8)
    images[:, 8:20, 12:16] = 255  # a vertical bar in the middle
    return images


def test_augment_keeps_shape_and_dtype_and_moves_the_ink() -> None:
    images = _digits()
    moved = steps.augment(tf.constant(images), tf.constant([1, 2], tf.int32), flips=False).numpy()
    assert moved.shape == images.shape and moved.dtype == np.uint8
    assert not np.array_equal(moved, images)
    # Small shifts, rotations and zooms keep the digit: roughly the same amount of ink, still in the picture.
    ink_before, ink_after = images.astype(np.int64).sum(axis=(1, 2)), moved.astype(np.int64).sum(axis=(1, 2))
    assert np.all(np.abs(ink_after - ink_before) < 0.35 * ink_before)


def test_augment_is_deterministic_for_a_seed_and_differs_across_seeds() -> None:
    images = tf.constant(_digits())
    first = steps.augment(images, tf.constant([3, 4], tf.int32), flips=True).numpy()
    again = steps.augment(images, tf.constant([3, 4], tf.int32), flips=True).numpy()
    other = steps.augment(images, tf.constant([5, 6], tf.int32), flips=True).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
