"""The compiled functions: pure tensor math, built once per model, traced once.

They take tensors only (a Python number would retrace), build nothing, print
nothing and write no summaries; the Python loop in trainer.py owns all of that.
"""

from __future__ import annotations

import math
from typing import Any

from mnist_cli.core.config import TrainConfig
from mnist_cli.data.registry import COLS, NUM_CLASSES, ROWS
from mnist_cli.core.tf_setup import import_tensorflow

tf = import_tensorflow()

IMAGES_SPEC = tf.TensorSpec([None, ROWS, COLS], tf.uint8, name="images")
LABELS_SPEC = tf.TensorSpec([None], tf.uint8, name="labels")
BATCHES_SPEC = tf.TensorSpec([None, None], tf.int32, name="batch_indices")


def per_example_loss(loss: str, logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Loss of each example from logits: the walk-through's squared error, or cross-entropy."""
    labels = tf.cast(labels, tf.int32)
    if loss == "mse":
        # The walk-through: sum over the 10 outputs of (output - one_hot)^2.
        return tf.reduce_sum(tf.square(logits - tf.one_hot(labels, NUM_CLASSES, dtype=logits.dtype)), axis=1)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def augment(images: tf.Tensor, seed: tf.Tensor, *, flips: bool) -> tf.Tensor:
    """Random small shifts, rotations and zooms (and mirror flips) of uint8 images, stateless."""
    import keras

    batch = tf.shape(images)[0]
    noise = tf.random.stateless_uniform([batch, 4], seed=seed, minval=-1.0, maxval=1.0)
    angle = noise[:, 0] * (10 * math.pi / 180)
    inverse_zoom = 1.0 / (1.0 + 0.08 * noise[:, 1])
    shift_x, shift_y = 2.0 * noise[:, 2], 2.0 * noise[:, 3]
    # Output pixel (x, y) samples the input at (a0 x + a1 y + a2, b0 x + b1 y + b2):
    # a rotation and zoom about the image centre, then a shift.
    a0 = b1 = inverse_zoom * tf.cos(angle)
    b0 = inverse_zoom * tf.sin(angle)
    a1 = -b0
    centre = (ROWS - 1) / 2
    a2 = centre - a0 * centre - a1 * centre - shift_x
    b2 = centre - b0 * centre - b1 * centre - shift_y
    if flips:
        # Mirroring x first: x -> (W - 1) - x.
        mirror = tf.random.stateless_uniform([batch], seed=seed + 1) < 0.5
        a2 = tf.where(mirror, a2 + a0 * (COLS - 1), a2)
        b2 = tf.where(mirror, b2 + b0 * (COLS - 1), b2)
        a0 = tf.where(mirror, -a0, a0)
        b0 = tf.where(mirror, -b0, b0)
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    moved = keras.ops.image.affine_transform(
        tf.cast(images, tf.float32)[..., None], transforms, interpolation="bilinear", fill_mode="constant"
    )
    return tf.cast(tf.round(tf.clip_by_value(moved[..., 0], 0.0, 255.0)), tf.uint8)


def make_train_chunk(model: Any, optimizer: Any, config: TrainConfig, strategy: Any = None) -> Any:
    """A compiled function that runs one step per row of `batch_indices` in an in-graph loop.

    Each row holds the global batch's indices; under a tf.distribute strategy every
    replica takes its own slice of it, and the loss is divided by the global batch
    size so that the all-reduced (summed) gradients equal the single-device ones.
    """
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    variables = model.trainable_variables
    loss_name, seed = config.loss, config.seed
    use_augment, flips = config.augment, config.dataset == "fashion-mnist"

    def train_step(images: tf.Tensor, labels: tf.Tensor, indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        global_size = tf.shape(indices)[0]
        batch_images = tf.gather(images, indices)
        if use_augment:
            # Augment the whole global batch, then slice: the same images as on one device.
            step_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(optimizer.iterations, tf.int64)])
            batch_images = augment(batch_images, step_seed, flips=flips)
        if replicas > 1:
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            begin, end = replica * global_size // replicas, (replica + 1) * global_size // replicas
            batch_images, indices = batch_images[begin:end], indices[begin:end]
        batch_labels = tf.gather(labels, indices)
        with tf.GradientTape() as tape:
            logits = model(batch_images, training=True)
            losses = per_example_loss(loss_name, logits, batch_labels)
            loss = tf.reduce_sum(losses) / tf.cast(global_size, tf.float32)
            scaled = optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, variables)
        optimizer.apply(gradients, variables)
        predictions = tf.argmax(logits, axis=1, output_type=tf.int32)
        correct = tf.reduce_sum(tf.cast(tf.equal(predictions, tf.cast(batch_labels, tf.int32)), tf.int32))
        return tf.reduce_sum(losses), correct

    def train_chunk(images: tf.Tensor, labels: tf.Tensor, batch_indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        loss_sum = tf.constant(0.0)
        correct = tf.constant(0)
        for row in tf.range(tf.shape(batch_indices)[0]):
            step_loss, step_correct = strategy.run(train_step, args=(images, labels, batch_indices[row]))
            loss_sum += strategy.reduce(tf.distribute.ReduceOp.SUM, step_loss, axis=None)
            correct += strategy.reduce(tf.distribute.ReduceOp.SUM, step_correct, axis=None)
        return loss_sum, correct

    # XLA fuses the MLP's small ops and speeds it up 1.6x on CPU; for the convnet it
    # is 20x slower there (measured), it has no kernel for the augmentation's image
    # transform, and it does not compile cross-replica calls: plain MLP on one device only.
    use_xla = config.model == "mlp" and not config.augment and replicas == 1 and not tf.distribute.has_strategy()
    return tf.function(train_chunk, input_signature=[IMAGES_SPEC, LABELS_SPEC, BATCHES_SPEC], jit_compile=use_xla)


def make_eval_step(model: Any, config: TrainConfig) -> Any:
    """A compiled function returning (per-example losses, logits) for a batch."""
    loss_name = config.loss

    def eval_step(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        logits = model(images, training=False)
        return per_example_loss(loss_name, logits, labels), logits

    return tf.function(eval_step, input_signature=[IMAGES_SPEC, LABELS_SPEC])


def make_predict_step(model: Any) -> Any:
    """A compiled function returning the logits of a batch of uint8 images."""

    def predict_step(images: tf.Tensor) -> tf.Tensor:
        return model(images, training=False)

    return tf.function(predict_step, input_signature=[IMAGES_SPEC])
