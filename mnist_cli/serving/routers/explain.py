"""`POST /explain` and `GET /explain/weights`: what each layer does with a picture, where the network looks, what its first layer learned.

Each model version gets one `Explainer` (its compiled function traced once, when the version
is prepared) and its first layer's weights as pictures, encoded once: they change only with
a new version. Both are kept beside the servable and go with it when the version is retired.
"""

from __future__ import annotations

import json
import threading
import weakref
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from mnist_cli.inference import predict
from mnist_cli.inference.explain import SALIENCY_METHOD, Explainer, Explanation
from mnist_cli.serving.models import Servable
from mnist_cli.serving import schemas

# The same picture reading as /predict (its raw-body or form parsing).
from mnist_cli.serving.routers.predict import pictures_of
from mnist_cli.serving.state import Refused, State

router = APIRouter()


class LayerView(BaseModel):
    """One hidden layer's output for the picture."""

    name: str = Field(description="The layer's name, as `mnist show` lists it (dense_1, conv_1, ...).")
    kind: Literal["dense", "conv"]
    shape: list[int] = Field(description="[units] for a dense layer, [rows, cols, maps] for a convolution's feature maps.")
    values: list[float] | None = Field(description="The activations, flattened in `shape`'s order (absent with ?pixels=true).")
    pixels: str | None = Field(description="With ?pixels=true: base64 of one uint8 grey level per value, 255 = this layer's largest.")
    max: float = Field(description="The layer's largest activation.")
    top: list[int] = Field(description="The most active units (or feature maps, by their mean), most active first.")


class Explained(BaseModel):
    """A picture's prediction, with the inside of the network."""

    path: str
    prediction: int
    name: str
    probability: float
    probabilities: list[float]
    top_k: list[schemas.TopClass]
    version: int = Field(description="The model version that answered (a checkpoint's step when following a run).")
    image: list[list[int]] = Field(description="The 28x28 digit the network saw (rows of 0-255).")
    saliency: list[list[float]] = Field(description="28x28: the gradient of the predicted class's logit with respect to each input pixel.")
    saliency_method: Literal["gradient"]
    layers: list[LayerView]
    most_active: int = Field(description="The first layer's unit (MLP) or filter (convnet) that fires most for this picture.")


class FirstLayerPictures(BaseModel):
    """The first layer's weights as tiles: 28x28 per unit of an MLP, 3x3 per filter of a convnet."""

    version: int
    layer: str
    kind: Literal["dense", "conv"]
    shape: list[int] = Field(description="[tiles, rows, cols]")
    pixels: str = Field(description="base64 of uint8 [tiles, rows, cols]: 128 is 0, 255 is +scale, 1 is -scale of that tile.")
    scales: list[float] = Field(description="Each tile's largest absolute weight.")


class _Prepared:
    def __init__(self, servable: Servable) -> None:
        self.explainer = Explainer(servable.loaded.model)
        self.version = servable.version
        self.weights_json = _weights_json(self.explainer, servable.version)


_prepared: weakref.WeakKeyDictionary[Servable, _Prepared] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def prepare(servable: Servable) -> None:
    """Trace `servable`'s look-inside function and encode its first layer's weights, before it takes requests."""
    made = _Prepared(servable)
    with _lock:
        _prepared[servable] = made


def _prepared_for(servable: Servable) -> _Prepared:
    with _lock:
        made = _prepared.get(servable)
    if made is None:  # a version added by other code: prepared on its first use instead
        prepare(servable)
        with _lock:
            made = _prepared[servable]
    return made


def _weights_json(explainer: Explainer, version: int) -> bytes:
    weights = explainer.first_layer_weights()
    pixels, scales = weights.pixels()
    answer = {"version": version, "layer": weights.layer, "kind": weights.kind, "shape": list(weights.tiles.shape), "pixels": pixels, "scales": scales}
    return json.dumps(answer).encode()


def _layer(layer: Any, *, as_pixels: bool) -> dict[str, Any]:
    return {
        "name": layer.name,
        "kind": layer.kind,
        "shape": list(layer.values.shape),
        "values": None if as_pixels else layer.values.ravel().tolist(),
        "pixels": layer.pixels() if as_pixels else None,
        "max": float(layer.values.max()),
        "top": layer.top(),
    }


def _item(prediction: predict.Prediction, explained: Explanation, *, version: int, top_k: int, as_pixels: bool) -> dict[str, Any]:
    item = prediction.to_dict(top_k=top_k)
    item.update(
        version=version,
        image=prediction.image.tolist(),
        saliency=explained.saliency.round(8).tolist(),
        saliency_method=SALIENCY_METHOD,
        layers=[_layer(layer, as_pixels=as_pixels) for layer in explained.layers],
        most_active=explained.most_active,
    )
    return item


@router.post(
    "/explain",
    summary="Read the digit in a picture and show the inside of the network: layer activations, saliency map",
    description=(
        "Takes pictures exactly as `/predict` does. Each answer adds the version that answered, the 28x28 digit "
        "the network saw, each hidden layer's activations, the saliency map (the gradient of the predicted class's "
        "logit with respect to each input pixel) and the first layer's most active unit."
    ),
    response_model=None,
    responses={200: {"model": list[Explained]}, **schemas.errors(*schemas.BODY_ERRORS, e422=schemas.PicturesError)},
    openapi_extra=schemas.pictures_request_body(),
)
async def explain(
    request: Request,
    state: State,
    top_k: int = Query(3, ge=1, le=10, description="How many of the most probable classes to list."),
    pixels: bool = Query(False, description="Each layer's activations as grey levels (base64) instead of floats: what the page draws, much faster to encode."),
) -> Response:
    """Each picture's digit with the network's activations and saliency map; 422 when one cannot be read."""
    body = await state.read_body(request)
    pictures = await pictures_of(request, body, state)
    servable = state.models.current()  # the whole request uses one version, even if another is swapped in meanwhile
    prepared = _prepared_for(servable)

    read = await state.readers.read(pictures)  # the same readers (threads or worker processes) as /predict

    def work() -> tuple[bytes | None, list[dict[str, Any]], list[predict.Failure]]:
        images = predict.readable_images(read)
        explained = prepared.explainer.explain(images) if len(images) else []
        logits = [item.logits for item in explained]
        results = predict.classified(servable.loaded, pictures, read, np.stack(logits) if logits else images)
        found = iter(explained)
        items = [
            result.to_dict()
            if isinstance(result, predict.Failure)
            else _item(result, next(found), version=servable.version, top_k=top_k, as_pixels=pixels)
            for result in results
        ]
        failures = [result for result in results if isinstance(result, predict.Failure)]
        return (None if failures else json.dumps(items).encode()), items, failures

    encoded, items, failures = await state.on_cpu(work)
    if failures:
        first = failures[0]
        message = first.message if len(items) == 1 else f"{len(failures)} of {len(items)} pictures could not be read; the first: {first.message}"
        raise Refused(422, message, first.hint, results=items)
    return Response(encoded, media_type="application/json", headers={"X-Model-Version": str(servable.version)})


@router.get(
    "/explain/weights",
    summary="The first layer's weights as pictures, for the current or a given version",
    response_model=None,
    responses={200: {"model": FirstLayerPictures}, **schemas.errors(404, 422)},
)
async def first_layer_weights(
    state: State, version: int | None = Query(None, ge=1, description="A model version the server holds (default: the current one).")
) -> Response:
    """Tiles of the first layer's weights, encoded once per version."""
    servable = state.models.current() if version is None else state.models.get(version)
    if servable is None:
        held = ", ".join(map(str, state.models.versions()))
        raise Refused(404, f"no version {version} is loaded", f"this server holds version(s) {held}")
    prepared = await state.on_cpu(lambda: _prepared_for(servable))
    return Response(prepared.weights_json, media_type="application/json", headers={"Cache-Control": "max-age=3600"})
