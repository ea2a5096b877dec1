"""One router per resource; `service_state` is how a route reaches the application state."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from docbits.service.query_string import parse_query_string
from docbits.service.request_rules import refuse_unknown_query_parameters
from docbits.service.state import ServiceState

Model = TypeVar("Model", bound=BaseModel)


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


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI `parameters` of a route that validates `model` from its query string itself."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    parameters = []
    for name, field in schema["properties"].items():
        parameter = {"name": name, "in": "query", "required": name in required, "schema": field}
        if "description" in field:
            parameter["description"] = field["description"]
        parameters.append(parameter)
    return parameters


def parse_query(request: Request, model: type[Model]) -> Model:
    """`model` from the query string in one pydantic call; errors answer as FastAPI's routes do
    (unknown names and non-UTF-8 escapes included, by the same rules).

    For the hottest route: FastAPI's per-parameter dependency solving costs more loop-thread
    CPU than everything else the route does on the loop.
    """
    params = parse_query_string(request)
    refuse_unknown_query_parameters(
        request.app, request.method, request.scope["route"].path, params.keys()
    )
    try:
        return model.model_validate(params)
    except ValidationError as error:
        problems = [{**problem, "loc": ("query", *problem["loc"])} for problem in error.errors()]
        raise RequestValidationError(problems) from None
