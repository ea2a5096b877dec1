"""What every request must be before a route sees it: a path without NUL, a query string with
only the parameters its route documents, in UTF-8; a body that is UTF-8 JSON, sent as such,
within the size limit.

The rules give each mistake its own error code and a message that says what was expected, rather
than the generic validation error (or silence) the mistake would otherwise get.
"""

from __future__ import annotations

import email.message
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docbits.service.auth import require_read, require_write
from docbits.service.errors import ApiError, error_response
from docbits.service.query_string import strict_query_pairs

QueryTable = dict[tuple[str, str], frozenset[str]]


def query_parameter_table(app: FastAPI) -> QueryTable:
    """(method, path template) -> the query parameter names its OpenAPI entry documents.

    The schema is the one list of what each route accepts, for the routes FastAPI validates and
    for `GET /v1/search`, which parses its own query string. Built once, at start-up.
    """
    table: QueryTable | None = getattr(app.state, "query_parameter_table", None)
    if table is None:
        table = {}
        for path, operations in app.openapi()["paths"].items():
            for method, operation in operations.items():
                names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
                table[(method.upper(), path)] = frozenset(names)
        app.state.query_parameter_table = table
    return table


def refuse_unknown_query_parameters(
    app: FastAPI, method: str, path: str, names: Iterable[str]
) -> None:
    """422 `unknown_parameter` naming the unknown names and the ones the route takes.

    Routes missing from the schema (the page, the docs) are not API routes and take anything.
    """
    allowed = query_parameter_table(app).get(("GET" if method == "HEAD" else method, path))
    if allowed is None:
        return
    unknown = sorted(set(names) - allowed)
    if not unknown:
        return
    takes = ", ".join(sorted(allowed)) if allowed else "no query parameters"
    listed = ", ".join(repr(name) for name in unknown)
    plural = "s" if len(unknown) > 1 else ""
    raise ApiError(
        422,
        "unknown_parameter",
        f"unknown query parameter{plural} {listed}; {method} {path} takes {takes}",
        {"unknown": unknown, "allowed": sorted(allowed)},
    )


async def check_request_target(request: Request) -> None:
    """App-wide dependency of FastAPI's routes: no NUL in the path (no stored id, job or code
    holds one, and PostgreSQL could not even compare it), a UTF-8 query string with the
    documented names only.

    App-wide dependencies run before the routes' own, so a route's key check is run here first:
    a request without the right key gets 401, as it would for any other invalid request.
    """
    route = request.scope.get("route")
    names = [name for name, _ in strict_query_pairs(request.scope["query_string"])]
    if route is None:
        return
    try:
        if "\x00" in request.scope["path"]:
            raise ApiError(404, "not_found", "nothing here has a name with a NUL character")
        if names:
            refuse_unknown_query_parameters(request.app, request.method, route.path_format, names)
    except ApiError:
        for dependency in route.dependant.dependencies:
            if dependency.call in (require_read, require_write):
                await dependency.call(request)
        raise


def _content_type_problem(headers: dict[bytes, bytes]) -> str | None:
    """Why the declared content type is not UTF-8 JSON, or None when it is."""
    raw = headers.get(b"content-type", b"")
    if raw == b"application/json":  # what clients send nearly always: no parsing
        return None
    declared = raw.decode("latin-1").strip()
    if not declared:
        return "the request has a body but no Content-Type header"
    parsed = email.message.Message()
    parsed["content-type"] = declared
    subtype = parsed.get_content_subtype()
    is_json = parsed.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )
    if not is_json:
        return f"the body is sent as {declared!r}"
    charset = parsed.get_param("charset")
    if isinstance(charset, str) and charset.lower().replace("-", "") != "utf8":
        return f"the body is sent in charset {charset!r}"
    return None


def _first_bad_utf8_byte(body: bytes) -> int | None:
    """Offset of the first byte that breaks UTF-8, or None when the body is UTF-8."""
    if body.isascii():
        return None
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start
    return None


class RequestBodyMiddleware:
    """Reads a request's body before the app parses it and answers, in the error shape:

    413 `payload_too_large` past `limit` bytes, 415 `unsupported_media_type` for a body not sent
    as `application/json`, 400 `invalid_utf8` for one that is not UTF-8 (JSON's only encoding
    on the wire). Bodyless requests and GET/HEAD/OPTIONS pass untouched.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body:
            problem = self._body_problem(headers, body)
            if problem is not None:
                await problem(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    def _body_problem(headers: dict[bytes, bytes], body: bytes) -> Any:
        """The error response for a body that is not UTF-8 JSON by its headers and bytes."""
        wrong_type = _content_type_problem(headers)
        if wrong_type is not None:
            return error_response(
                415,
                "unsupported_media_type",
                f"request bodies are JSON: send 'Content-Type: application/json' ({wrong_type})",
                {"expected": "application/json"},
            )
        bad_byte = _first_bad_utf8_byte(body)
        if bad_byte is not None:
            return error_response(
                400,
                "invalid_utf8",
                f"the request body is not UTF-8: byte {bad_byte} (0x{body[bad_byte]:02x}) "
                "starts no valid character; send JSON encoded as UTF-8",
                {"where": "body", "offset": bad_byte},
            )
        return None

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            "payload_too_large",
            f"request body exceeds the limit of {self.limit} bytes",
            {"max_request_bytes": self.limit},
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
