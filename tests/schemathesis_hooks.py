"""Schemathesis hooks for tests/test_serve_schema.py (loaded through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

from typing import Any

import schemathesis


def _integers(value: Any) -> Any:
    # JSON Schema cannot tell 184 from 184.0 (both are "integer"), but TF Serving's parser, and
    # so `mnist serve`, refuses a uint8 pixel written with a decimal point, as the document
    # says. The generator's whole floats are sent as the integers they stand for.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integers(item) for item in value]
    if isinstance(value, dict):
        return {key: _integers(item) for key, item in value.items()}
    return value


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    """Whole floats in TF Serving request bodies become integers."""
    operation = getattr(context, "operation", None)
    if operation is not None and ":predict" in operation.path and isinstance(body, dict):
        return {key: _integers(value) if key in ("instances", "inputs") else value for key, value in body.items()}
    return body
