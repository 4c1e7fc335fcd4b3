"""The networks. Each takes uint8 images [N, 28, 28], scales them itself, and returns logits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mnist_cli.core.config import TrainConfig
from mnist_cli.data.registry import COLS, NUM_CLASSES, ROWS
from mnist_cli.core.tf_setup import import_tensorflow

_POLICIES = {"float32": "float32", "mixed-bf16": "mixed_bfloat16", "mixed-fp16": "mixed_float16"}


@dataclass(frozen=True)
class Layer:
    """One layer as `model.summary()` lists it."""

    name: str
    kind: str  # the Keras class, such as Dense
    output_shape: tuple[int | None, ...]
    params: int


@dataclass(frozen=True)
class NetworkBuilt:
    """The network is built: its layers, their output shapes and parameters, as the walk-through's `summary()`."""

    name: str
    layers: tuple[Layer, ...]
    params: int
    trainable_params: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "name": self.name,
            "layers": [
                {"name": layer.name, "kind": layer.kind, "output_shape": list(layer.output_shape), "params": layer.params}
                for layer in self.layers
            ],
            "params": self.params,
            "trainable_params": self.trainable_params,
        }


def build_model(config: TrainConfig) -> Any:
    """Build the network named by `config.model`, returning logits in float32."""
    import_tensorflow()
    import keras

    policy = keras.DTypePolicy(_POLICIES[config.precision])
    layers = keras.layers
    # Scaling lives in the model so that the data stays uint8 in memory and an
    # exported model.keras takes raw pixels.
    head = [keras.Input((ROWS, COLS), dtype="uint8", name="images"), layers.Rescaling(1 / 255, dtype=policy, name="scale")]
    if config.model == "mlp":
        body = [layers.Flatten(dtype=policy, name="flatten")]
        body += [
            layers.Dense(units, activation="relu", dtype=policy, name=f"dense_{index}")
            for index, units in enumerate(config.hidden, start=1)
        ]
    else:
        body = _convnet(layers, policy)
    # The logits stay float32 even under mixed precision, so losses and softmax are stable.
    tail = [layers.Dense(NUM_CLASSES, dtype="float32", name="logits")]
    return keras.Sequential(head + body + tail, name=config.model)


def _convnet(layers: Any, policy: Any) -> list[Any]:
    # Chosen by measurement on a 2-core CPU (benchmarks/RESULTS.md): a third 3x3 conv
    # at 7x7 costs ~25% more time per epoch than two conv blocks but gave the best
    # validation accuracy on MNIST-10k with --augment; both dropouts mattered there,
    # while BatchNorm ran 2.5x slower under mixed-bf16 on CPU and widening did not pay.
    return [
        layers.Reshape((ROWS, COLS, 1), dtype=policy, name="channels"),
        layers.Conv2D(32, 3, padding="same", activation="relu", dtype=policy, name="conv_1"),
        layers.MaxPooling2D(dtype=policy, name="pool_1"),
        layers.Conv2D(64, 3, padding="same", activation="relu", dtype=policy, name="conv_2"),
        layers.MaxPooling2D(dtype=policy, name="pool_2"),
        layers.Conv2D(64, 3, padding="same", activation="relu", dtype=policy, name="conv_3"),
        layers.Flatten(dtype=policy, name="flatten"),
        layers.Dropout(0.25, dtype=policy, name="dropout_1"),
        layers.Dense(128, activation="relu", dtype=policy, name="dense_1"),
        layers.Dropout(0.25, dtype=policy, name="dropout_2"),
    ]


def build_optimizer(config: TrainConfig, *, steps_per_epoch: int) -> Any:
    """Build the optimizer with its learning-rate schedule, and for fp16 its loss scaling."""
    import keras

    run_steps = max(1, steps_per_epoch * config.epochs)
    schedules = keras.optimizers.schedules
    if config.schedule == "cosine":
        lr: Any = schedules.CosineDecay(config.lr, decay_steps=run_steps)
    elif config.schedule == "onecycle":
        # Warm up over the first 30% of steps from lr/25 to lr, then anneal to ~0: the 1cycle policy.
        warmup = max(1, int(0.3 * run_steps))
        lr = schedules.CosineDecay(
            config.lr / 25, decay_steps=max(1, run_steps - warmup), alpha=1e-3, warmup_target=config.lr, warmup_steps=warmup
        )
    else:
        lr = config.lr
    optimizers = keras.optimizers
    if config.optimizer == "sgd":
        optimizer = optimizers.SGD(learning_rate=lr)
    elif config.optimizer == "momentum":
        optimizer = optimizers.SGD(learning_rate=lr, momentum=config.momentum, nesterov=True)
    elif config.optimizer == "adam":
        optimizer = optimizers.Adam(learning_rate=lr)
    else:
        optimizer = optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay)
    if config.precision == "mixed-fp16":
        optimizer = optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def current_learning_rate(optimizer: Any) -> float:
    """The learning rate the next step will use."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    rate = inner.learning_rate
    return float(rate.numpy() if hasattr(rate, "numpy") else rate)


def describe(model: Any) -> NetworkBuilt:
    """The layers of a built Keras model with their output shapes and parameter counts."""
    layers = tuple(
        Layer(
            name=layer.name,
            kind=type(layer).__name__,
            output_shape=tuple(None if size is None else int(size) for size in layer.output.shape),
            params=int(layer.count_params()),
        )
        for layer in model.layers
    )
    trainable = sum(int(math.prod(weight.shape)) for weight in model.trainable_weights)
    return NetworkBuilt(name=model.name, layers=layers, params=int(model.count_params()), trainable_params=trainable)
