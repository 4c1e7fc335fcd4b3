"""The OpenAPI document of one server: FastAPI's, with this server's model name, versions and limits filled in.

A generated client or a fuzzer then knows the only model name and versions that exist (as
enums), and how many instances a request may hold. The document is rebuilt when the set of
versions changes (a server following a training run adds versions as it goes).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from mnist_cli.serving.schemas import MAX_INSTANCES
from mnist_cli.serving.state import ServingState

MODEL_NAME = "model_name"  # the path parameter naming the model, in every protocol's routes
VERSION = "version"  # the path parameter naming a model version


def install(app: FastAPI, state: ServingState) -> None:
    """Make `app.openapi()` describe this server: enums for the model name and versions, the instance cap."""
    built: dict[tuple[int, ...], dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        versions = state.models.versions()
        if versions not in built:
            document = get_openapi(
                title=app.title, version=app.version, openapi_version=app.openapi_version, description=app.description, routes=app.routes
            )
            built.clear()
            # A copy: FastAPI's document shares the routes' own `openapi_extra` dicts.
            built[versions] = _fill(copy.deepcopy(document), state, versions)
        app.openapi_schema = built[versions]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _fill(document: dict[str, Any], state: ServingState, versions: tuple[int, ...]) -> dict[str, Any]:
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") != "path":
                    continue
                if parameter["name"] == MODEL_NAME:
                    parameter["schema"] = {"type": "string", "enum": [state.models.name], "title": "Model Name"}
                elif parameter["name"] == VERSION:
                    parameter["schema"] = {"type": "integer", "enum": list(versions), "title": "Version"}
    _cap_instances(document, state.config.max_instances)
    return document


def _cap_instances(node: Any, max_instances: int) -> None:
    if isinstance(node, dict):
        if node.pop(MAX_INSTANCES, False):
            node["maxItems"] = max_instances
        for value in node.values():
            _cap_instances(value, max_instances)
    elif isinstance(node, list):
        for value in node:
            _cap_instances(value, max_instances)
