"""`GET /events`: the run's history and model versions, pushed to the page as Server-Sent Events.

Each event is `event: run` with the whole view as JSON (`serving.follow.RunView`): the
history (train and validation loss and accuracy, learning rate, per epoch), the versions
loaded and the current one. A new subscriber gets the view at once, then each change.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from mnist_cli.serving.follow import Feed

router = APIRouter()

KEEPALIVE_S = 15.0  # a comment line this often keeps proxies and browsers from closing an idle stream
RETRY_MS = 2000  # how soon a browser reconnects after the stream breaks


def feed_of(request: Request) -> Feed:
    """The app's feed of the run (set by the factory)."""
    return request.app.state.feed


# One event of the stream, as OpenAPI 3.1 describes a text/event-stream item (3.2's itemSchema).
_EVENT = {
    "type": "object",
    "required": ["data", "event"],
    "properties": {
        "event": {"type": "string", "enum": ["run"]},
        "data": {"type": "string", "contentMediaType": "application/json", "description": "the run's history and versions"},
        "id": {"type": "string", "description": "the view's revision"},
        "retry": {"type": "integer", "description": "milliseconds before a client reconnects"},
    },
}


@router.get(
    "/events",
    summary="Server-Sent Events: the run's per-epoch history and its model versions, as they change",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {"schema": _EVENT}}, "description": "`event: run` events whose data is the run's view as JSON"}},
)
async def events(request: Request) -> EventSourceResponse:
    """The run's view now, then at each change."""
    feed = feed_of(request)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        view = feed.view
        yield ServerSentEvent(json.dumps(view.to_dict()), event="run", id=str(view.revision), retry=RETRY_MS)
        seen = view.revision
        while True:
            changed = await feed.next_view(seen, timeout=KEEPALIVE_S)
            if changed is None or changed.revision <= seen:
                continue  # sse-starlette sends its own keep-alive pings
            seen = changed.revision
            yield ServerSentEvent(json.dumps(changed.to_dict()), event="run", id=str(seen))

    return EventSourceResponse(stream(), ping=KEEPALIVE_S)
