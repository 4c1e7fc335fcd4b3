"""A mixed-precision network's float32 twin: the same layers and weights, computing in float32."""

from __future__ import annotations

from typing import Any

from mnist_cli.core.errors import ModelError, first_line


def is_mixed(model: Any) -> bool:
    """Whether some layer of `model` computes in less than float32 (a mixed-precision network)."""
    return any(getattr(getattr(layer, "dtype_policy", None), "compute_dtype", "float32") != "float32" for layer in model.layers)


def float32_copy(model: Any) -> Any:
    """The same network with the same weights, computing in float32 throughout.

    Mixed precision only speeds training up, and the TFLite converter has no bfloat16
    kernels ('tf.Mul' op is neither a custom op nor a flex op). Each layer is rebuilt from
    its own config with a float32 policy (the uint8 input stays as it is), so this works
    for a model.keras without a run beside it too.
    """
    import keras

    def rebuilt(layer: Any) -> Any:
        return type(layer).from_config({**layer.get_config(), "dtype": "float32"})

    try:
        copy = keras.models.clone_model(model, clone_function=rebuilt)
        copy.set_weights(model.get_weights())
    except Exception as exc:  # noqa: BLE001 - a subclassed or foreign model Keras cannot clone
        raise ModelError(
            f"the mixed-precision model {model.name!r} cannot be rebuilt in float32: {first_line(exc)}",
            "use the run's checkpoints, which are rebuilt from its config.json",
        ) from None
    return copy
