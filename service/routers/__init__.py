"""One router per resource; `service_state` is how a route reaches the application state."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request, Response

from service.state import ServiceState


def service_state(request: Request) -> ServiceState:
    """The `ServiceState` the app was built with."""
    return request.app.state.service


def snippet(text: str, chars: int) -> str:
    """The start of a text, cut at `chars` with an ellipsis when longer."""
    return text if len(text) <= chars else text[:chars].rstrip() + "…"


def json_bytes(content: Any) -> bytes:
    """Compact UTF-8 JSON, as FastAPI's own JSON responses write it."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class JSONBytesResponse(Response):
    """A body already serialised (in a worker thread) to JSON that follows the route's schema."""

    media_type = "application/json"
