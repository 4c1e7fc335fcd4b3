"""Looking inside a network while it reads a digit: each hidden layer's activations, a saliency map, the first layer's weights.

One compiled function per model computes, in a single call on uint8 images, the logits,
the activations of every hidden Dense and Conv2D layer, and the saliency map: the gradient
of the predicted class's logit with respect to the input pixels (Simonyan et al., 2014,
"Deep Inside Convolutional Networks"). It is traced once, when the `Explainer` is made.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from mnist_cli.core.tf_setup import import_tensorflow
from mnist_cli.data.registry import COLS, ROWS

tf = import_tensorflow()

SALIENCY_METHOD = "gradient"  # of the predicted class's logit with respect to each input pixel (0-255)
DENSE, CONV = "dense", "conv"
TOP_UNITS = 5  # the most active units listed (and marked on the page) for each layer
_KINDS = {"Dense": DENSE, "Conv2D": CONV}
_IMAGES_SPEC = tf.TensorSpec([None, ROWS, COLS], tf.uint8, name="images")


@dataclass(frozen=True)
class LayerActivations:
    """One hidden layer's output for one image: a vector of units, or feature maps [rows, cols, maps]."""

    name: str
    kind: str  # DENSE or CONV
    values: np.ndarray  # float32: [units] or [rows, cols, maps]

    @property
    def strength(self) -> np.ndarray:
        """How strongly each unit (or feature map, by its mean) fires."""
        return self.values if self.kind == DENSE else self.values.mean(axis=(0, 1))

    def top(self, count: int = TOP_UNITS) -> list[int]:
        """The `count` most active units (or maps), most active first."""
        return [int(i) for i in np.argsort(-self.strength, kind="stable")[:count]]

    def pixels(self) -> str:
        """The values as grey levels (base64 of uint8, 255 = this layer's largest value), in `values`' order."""
        return encode_grey(self.values)


@dataclass(frozen=True)
class Explanation:
    """What the network did with one image: its logits, each hidden layer's activations and the saliency map."""

    logits: np.ndarray  # float32 [classes]
    layers: tuple[LayerActivations, ...]
    saliency: np.ndarray  # float32 [28, 28], signed gradient

    @property
    def most_active(self) -> int:
        """The first layer's unit (MLP) or filter (convnet) that fires most."""
        return self.layers[0].top(1)[0]


@dataclass(frozen=True)
class FirstLayerWeights:
    """The first layer's weights as pictures: one tile per unit (28x28, MLP) or filter (3x3, convnet)."""

    layer: str
    kind: str
    tiles: np.ndarray  # float32 [units, rows, cols]

    def pixels(self) -> tuple[str, list[float]]:
        """Each tile as offset grey levels (base64 of uint8, 128 = 0, 255 = +scale, 1 = -scale) and its scale."""
        scales = np.abs(self.tiles).reshape(len(self.tiles), -1).max(axis=1)
        safe = np.where(scales > 0, scales, 1.0)[:, None, None]
        levels = np.clip(np.round(128 + 127 * self.tiles / safe), 1, 255).astype(np.uint8)
        return base64.b64encode(levels.tobytes()).decode("ascii"), [float(s) for s in scales]


def encode_grey(values: np.ndarray) -> str:
    """Non-negative values as base64 uint8 grey levels, 255 for the largest (all 0 when none is positive)."""
    flat = np.asarray(values, np.float32).ravel()
    top = float(flat.max()) if flat.size else 0.0
    levels = np.zeros(flat.shape, np.uint8) if top <= 0 else np.clip(np.round(flat * (255 / top)), 0, 255).astype(np.uint8)
    return base64.b64encode(levels.tobytes()).decode("ascii")


def shown_layers(model: Any) -> list[Any]:
    """The hidden layers whose activations are shown: every Dense and Conv2D layer but the logits."""
    return [layer for layer in model.layers[:-1] if type(layer).__name__ in _KINDS]


class Explainer:
    """The compiled look-inside function of one model, traced at creation; safe to call from any thread."""

    def __init__(self, model: Any) -> None:
        self.layers = shown_layers(model)
        if not self.layers:
            raise ValueError(f"{model.name} has no hidden Dense or Conv2D layer to show")
        self.kinds = tuple(_KINDS[type(layer).__name__] for layer in self.layers)
        self.names = tuple(layer.name for layer in self.layers)
        self._model = model
        self._step = _make_step(model, self.layers)
        self._step(tf.zeros([1, ROWS, COLS], tf.uint8))  # traced now, not on the first request

    def explain(self, images: np.ndarray) -> list[Explanation]:
        """An Explanation for each uint8 image [N, 28, 28]."""
        logits, saliency, *activations = (t.numpy() for t in self._step(tf.constant(images, tf.uint8)))
        return [
            Explanation(
                logits=logits[row],
                layers=tuple(LayerActivations(name, kind, values[row]) for name, kind, values in zip(self.names, self.kinds, activations)),
                saliency=saliency[row],
            )
            for row in range(len(images))
        ]

    def first_layer_weights(self) -> FirstLayerWeights:
        """The first shown layer's kernel, one tile per unit or filter (read from the model's variables now)."""
        layer = self.layers[0]
        kernel = np.asarray(layer.kernel.numpy(), np.float32)
        if self.kinds[0] == DENSE:
            if kernel.shape[0] != ROWS * COLS:
                raise ValueError(f"{layer.name} does not read the 28x28 pixels directly")
            tiles = kernel.T.reshape(-1, ROWS, COLS)
        else:
            tiles = np.moveaxis(kernel.mean(axis=2), -1, 0)  # [h, w, in, out] -> [out, h, w]; one input channel
        return FirstLayerWeights(layer.name, self.kinds[0], np.ascontiguousarray(tiles))


def _make_step(model: Any, shown: list[Any]) -> Any:
    """A compiled function: uint8 images -> (logits, saliency, *activations of `shown`), all float32."""
    layers = list(model.layers)
    wanted = {id(layer) for layer in shown}

    def explain_step(images: tf.Tensor) -> tuple[tf.Tensor, ...]:
        # The layers are called one by one (the model itself would cast a float input back to
        # uint8 and cut the gradient); the first one, Rescaling, divides by 255 itself.
        pixels = tf.cast(images, tf.float32)
        activations = []
        with tf.GradientTape() as tape:
            tape.watch(pixels)
            hidden = pixels
            for layer in layers:
                hidden = layer(hidden, training=False)
                if id(layer) in wanted:
                    activations.append(tf.cast(hidden, tf.float32))
            logits = tf.cast(hidden, tf.float32)
            chosen = tf.gather(logits, tf.argmax(logits, axis=1), batch_dims=1)
        saliency = tape.gradient(chosen, pixels)
        return (logits, saliency, *activations)

    return tf.function(explain_step, input_signature=[_IMAGES_SPEC])
