"""Looking inside a network: activations equal Keras' own forward pass, and the saliency map looks at the stroke."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from mnist_cli.core.config import TrainConfig
from mnist_cli.data import load_split
from mnist_cli.inference.explain import CONV, DENSE, Explainer
from mnist_cli.model.network import build_model


def _centred_one() -> np.ndarray:
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, 4:24, 13:16] = 255
    return image


def _border() -> np.ndarray:
    border = np.ones((28, 28), bool)
    border[3:-3, 3:-3] = False
    return border


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_activations_equal_a_keras_forward_pass_of_the_same_layers(model: str) -> None:
    import keras

    network = build_model(TrainConfig(model=model, hidden=(48, 24)))
    explainer = Explainer(network)
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    expected = keras.Model(network.inputs, [network.get_layer(name).output for name in explainer.names])({"images": images})
    explained = explainer.explain(images)
    for index, reference in enumerate(expected):
        got = np.stack([item.layers[index].values for item in explained])
        np.testing.assert_allclose(got, np.asarray(reference), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.stack([item.logits for item in explained]), np.asarray(network(images)), rtol=1e-5, atol=1e-5)
    kinds = [layer.kind for layer in explained[0].layers]
    assert kinds == ([DENSE, DENSE] if model == "mlp" else [CONV, CONV, CONV, DENSE])


def test_the_saliency_map_is_the_gradient_of_the_predicted_logit() -> None:
    import tensorflow as tf

    network = build_model(TrainConfig(hidden=(32,)))
    image = _centred_one()
    explained = Explainer(network).explain(image)[0]
    pixels = tf.constant(image, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(pixels)
        hidden = pixels
        for layer in network.layers:
            hidden = layer(hidden)
        chosen = hidden[0, int(np.argmax(hidden[0]))]
    np.testing.assert_allclose(explained.saliency, tape.gradient(chosen, pixels)[0].numpy(), rtol=1e-5, atol=1e-8)


def test_the_first_layer_weights_are_tiles_of_each_unit_and_filter() -> None:
    mlp = build_model(TrainConfig(hidden=(20,)))
    weights = Explainer(mlp).first_layer_weights()
    kernel = mlp.get_layer("dense_1").kernel.numpy()
    assert weights.tiles.shape == (20, 28, 28)
    np.testing.assert_array_equal(weights.tiles[7], kernel[:, 7].reshape(28, 28))
    pixels, scales = weights.pixels()
    levels = np.frombuffer(base64.b64decode(pixels), np.uint8).reshape(20, 28, 28)
    np.testing.assert_allclose((levels[7].astype(float) - 128) / 127 * scales[7], kernel[:, 7].reshape(28, 28), atol=scales[7] / 127)
    cnn = build_model(TrainConfig(model="cnn"))
    filters = Explainer(cnn).first_layer_weights()
    assert filters.tiles.shape == (32, 3, 3) and filters.layer == "conv_1"
    np.testing.assert_array_equal(filters.tiles[5], cnn.get_layer("conv_1").kernel.numpy()[:, :, 0, 5])


def test_the_most_active_unit_and_grey_levels_follow_the_values() -> None:
    explained = Explainer(build_model(TrainConfig(hidden=(64,)))).explain(_centred_one())[0]
    layer = explained.layers[0]
    assert explained.most_active == int(np.argmax(layer.values)) == layer.top()[0]
    levels = np.frombuffer(base64.b64decode(layer.pixels()), np.uint8)
    assert levels.shape == (64,) and levels.max() == 255 and int(np.argmax(levels)) == explained.most_active


@pytest.fixture(scope="module")
def trained(real_mnist_dir: Path) -> dict[str, object]:
    """An MLP and a convnet each trained on 10,000 real MNIST digits for a short while."""
    import keras

    images, labels = load_split(real_mnist_dir, "train")
    models = {}
    for name, epochs in (("mlp", 2), ("cnn", 1)):
        keras.utils.set_random_seed(0)
        network = build_model(TrainConfig(model=name))
        network.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        network.fit(images, labels, epochs=epochs, batch_size=64, verbose=0)
        models[name] = network
    return models


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_the_saliency_map_of_a_centred_one_is_larger_on_the_stroke_than_on_the_empty_border(trained: dict, model: str) -> None:
    explained = Explainer(trained[model]).explain(_centred_one())[0]
    assert int(np.argmax(explained.logits)) == 1
    saliency = np.abs(explained.saliency)
    on_stroke = saliency[4:24, 13:16].mean()
    assert on_stroke > 1.5 * saliency[_border()].mean()


def test_post_explain_answers_the_prediction_layers_and_saliency_and_is_documented(tiny_run: Path) -> None:
    import io

    from PIL import Image

    from mnist_cli.inference import loading
    from serving import ServerProcess

    image = _centred_one()[0]
    buffer = io.BytesIO()
    Image.fromarray(255 - image).save(buffer, "PNG")
    server = ServerProcess(str(tiny_run), "--port", "0", "--quiet").start()
    try:
        with server.client() as client:
            floats = client.post("/explain", content=buffer.getvalue(), headers={"Content-Type": "image/png"})
            grey = client.post("/explain?pixels=true", content=buffer.getvalue(), headers={"Content-Type": "image/png"})
            predicted = client.post("/predict", content=buffer.getvalue(), headers={"Content-Type": "image/png"}).json()[0]
            weights = client.get("/explain/weights").json()
            missing = client.get("/explain/weights?version=99")
            broken = client.post("/explain", content=b"not a picture", headers={"Content-Type": "image/png"})
            document = client.get("/openapi.json").json()
    finally:
        assert server.stop() == 0
    assert floats.status_code == 200 and floats.headers["x-model-version"] == "1"
    item = floats.json()[0]
    assert item["prediction"] == predicted["prediction"] and abs(item["probability"] - predicted["probability"]) < 1e-5
    assert item["version"] == 1 and item["saliency_method"] == "gradient"
    assert len(item["saliency"]) == 28 and all(len(row) == 28 for row in item["saliency"])
    # The same numbers as the library's own forward pass on the digit the server saw.
    loaded = loading.load(tiny_run)
    expected = Explainer(loaded.model).explain(np.array([item["image"]], np.uint8))[0]
    assert [layer["name"] for layer in item["layers"]] == [layer.name for layer in expected.layers]
    for got, want in zip(item["layers"], expected.layers):
        assert got["shape"] == list(want.values.shape) and got["top"] == want.top()
        np.testing.assert_allclose(got["values"], want.values.ravel(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(item["saliency"], expected.saliency, rtol=1e-4, atol=1e-8)
    assert item["most_active"] == expected.most_active
    layer = grey.json()[0]["layers"][0]
    assert layer["values"] is None and len(base64.b64decode(layer["pixels"])) == layer["shape"][0]
    units = loaded.config.hidden[0]
    assert weights["shape"] == [units, 28, 28] and len(base64.b64decode(weights["pixels"])) == units * 784
    assert missing.status_code == 404 and "hint" in missing.json()
    assert broken.status_code == 422 and broken.json()["results"][0]["error"]
    explain = document["paths"]["/explain"]["post"]
    schema = explain["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["type"] == "array" and schema["items"]["$ref"].endswith("/Explained")
    assert {"layers", "saliency", "version"} <= set(document["components"]["schemas"]["Explained"]["properties"])
    assert "image/png" in explain["requestBody"]["content"] and "/explain/weights" in document["paths"] and "/events" in document["paths"]
