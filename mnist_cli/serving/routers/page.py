"""The drawing page and its assets, read from the package once, served from memory."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from mnist_cli.serving.state import Refused

ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}

_STATIC = resources.files("mnist_cli.serving") / "static"
_PAGE = (_STATIC / "index.html").read_bytes()
_ASSET_BYTES = {name: (_STATIC / name).read_bytes() for name in ASSETS}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> HTMLResponse:
    """The page to draw digits on."""
    return HTMLResponse(_PAGE)


@router.get("/static/{asset}")
async def asset(asset: str) -> Response:
    """One of the page's scripts or style sheets."""
    if asset not in _ASSET_BYTES:
        raise Refused(404, "no such asset")
    return Response(_ASSET_BYTES[asset], media_type=ASSETS[asset])
