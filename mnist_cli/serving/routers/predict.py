"""`POST /predict`: pictures in (the body, or a multipart form), what `mnist predict --json` prints out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.formparsers import MultiPartParser

from mnist_cli.inference import predict
from mnist_cli.serving import schemas
from mnist_cli.serving.state import Refused, ServingState, State

RAW_BODY = "request body"  # the `path` of a picture sent as the whole body

router = APIRouter()
_FEWER = "send the pictures in several requests"


@router.post(
    "/predict",
    summary="Read the digit in one or more pictures; the same JSON as `mnist predict --json`",
    description="One picture as the whole body (PNG, JPEG, BMP, GIF, TIFF or WebP; any other Content-Type but JSON and text is read as a "
    "picture too), or several as the `file` fields of a multipart form. A body may be gzip-encoded (`Content-Encoding: gzip`).",
    openapi_extra=schemas.pictures_request_body(),
    response_model=None,
    responses={200: {"model": list[schemas.PicturePrediction]}, **schemas.errors(*schemas.BODY_ERRORS, e422=schemas.PicturesError)},
)
async def predict_pictures(
    request: Request,
    state: State,
    top_k: int = Query(3, ge=1, le=10, description="How many of the most probable classes to list."),
    image: bool = Query(False, description="Add the 28x28 digit the network saw (rows of 0-255) to each item."),
) -> Any:
    """Each picture's digit; 422 with every item's result when one cannot be read."""
    body = await state.read_body(request)
    pictures = await pictures_of(request, body, state)
    servable = state.models.current()
    read = await state.readers.read(pictures)
    images = predict.readable_images(read)
    logits = await state.batcher.logits(images, servable.run_model) if len(images) else images
    results = predict.classified(servable.loaded, pictures, read, logits)
    items = [_item(result, top_k=top_k, image=image) for result in results]
    failures = [result for result in results if isinstance(result, predict.Failure)]
    if failures:
        first = failures[0]
        message = first.message if len(results) == 1 else f"{len(failures)} of {len(results)} pictures could not be read; the first: {first.message}"
        raise Refused(422, message, first.hint, results=items)
    return JSONResponse(items)


def _item(result: predict.Prediction | predict.Failure, *, top_k: int, image: bool) -> dict[str, Any]:
    if isinstance(result, predict.Failure):
        return result.to_dict()
    item = result.to_dict(top_k=top_k)
    if image:
        item["image"] = result.image.tolist()
    return item


async def pictures_of(request: Request, body: bytes, state: ServingState) -> list[predict.Picture]:
    """The pictures of a /predict or /explain body: the body itself, or a multipart form's files."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        pictures = await _form_pictures(request, body, state)
    elif content_type in ("application/json", "application/x-ndjson") or content_type.startswith("text/"):
        raise Refused(
            415,
            f"{request.url.path} takes pictures, not {content_type}",
            f"send a picture's bytes (Content-Type: image/png, ...) or a multipart form; JSON arrays go to /v1/models/{state.models.name}:predict",
        )
    else:
        pictures = [predict.Picture(RAW_BODY, body)]
    if len(pictures) > state.config.max_instances:
        raise Refused(400, f"too many pictures: {len(pictures)}, at most {state.config.max_instances} per request", _FEWER)
    return pictures


async def _form_pictures(request: Request, body: bytes, state: ServingState) -> list[predict.Picture]:
    async def stream() -> AsyncIterator[bytes]:
        yield body

    limit = state.config.max_instances
    parser = MultiPartParser(request.headers, stream(), max_files=limit, max_fields=limit, max_part_size=state.config.max_body_bytes)
    # The whole body is in memory already (capped); its files must not be spooled to disk.
    parser.spool_max_size = state.config.max_body_bytes + 1
    try:
        form = await parser.parse()
    except Exception as exc:  # noqa: BLE001 - python-multipart raises several types for malformed forms
        if "too many files" in str(exc).lower():
            raise Refused(400, f"too many pictures: at most {limit} per request", _FEWER) from None
        raise Refused(400, f"the multipart form cannot be read: {exc}", "send each picture as a file field") from None
    pictures = []
    try:
        for field_name, value in form.multi_items():
            if isinstance(value, str):
                continue  # text fields carry no picture
            data = await value.read()
            pictures.append(predict.Picture(value.filename or field_name, data))
    finally:
        await form.close()
    if not pictures:
        raise Refused(400, "the multipart form holds no file", "send each picture as a file field, for example curl -F file=@digit.png")
    return pictures
