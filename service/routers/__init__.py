"""One router per resource; `service_state` is how a route reaches the application state."""

from __future__ import annotations

from fastapi import Request

from service.state import ServiceState


def service_state(request: Request) -> ServiceState:
    """The `ServiceState` the app was built with."""
    return request.app.state.service


def snippet(text: str, chars: int) -> str:
    """The start of a text, cut at `chars` with an ellipsis when longer."""
    return text if len(text) <= chars else text[:chars].rstrip() + "…"
