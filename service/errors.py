"""The one JSON error shape, `{"error": {"code", "message", "details"}}`, and its handlers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from docbits.index.store import DuplicateIdError, StoreFullError, StoreUnavailableError
from docbits.service.query_string import QueryStringNotUTF8

log = logging.getLogger("docbits.service")
RETRY_AFTER_S = 1  # the hint sent with 503 answers that a retry soon may cure

# Codes of the HTTP errors Starlette and FastAPI raise themselves (routing, static files);
# any other status would answer `http_error`.
HTTP_CODE_NAMES = {404: "not_found", 405: "method_not_allowed"}
HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
# FastAPI's answer to a JSON body its parser gave up on with something else than a syntax
# error (nesting too deep, a number too long to convert).
FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"


class StartupError(RuntimeError):
    """The service cannot start as configured; the message says why and what to do."""


class ApiError(Exception):
    """An error the API answers with: HTTP status, a stable code, a human message, details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Build a response carrying the error shape."""
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    return error_response(exc.status, exc.code, exc.message, exc.details, headers | exc.headers)


def _json_syntax_error(exc: RequestValidationError) -> JSONResponse | None:
    """400 `invalid_json` with the line and column, for a body FastAPI could not decode."""
    errors = exc.errors()
    if len(errors) != 1 or errors[0]["type"] != "json_invalid":
        return None
    document = exc.body if isinstance(exc.body, str) else ""
    position = errors[0]["loc"][-1] if isinstance(errors[0]["loc"][-1], int) else 0
    line = document.count("\n", 0, position) + 1
    column = position - document.rfind("\n", 0, position)
    reason = errors[0].get("ctx", {}).get("error", "JSON decode error")
    return error_response(
        400,
        "invalid_json",
        f"invalid JSON at line {line} column {column}: {reason}",
        {"line": line, "column": column, "position": position},
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    syntax = _json_syntax_error(exc)
    if syntax is not None:
        return syntax
    problems = [
        {"location": list(err.get("loc", ())), "message": err.get("msg", ""), "type": err["type"]}
        for err in exc.errors()
    ]
    first = problems[0] if problems else {"location": [], "message": "invalid request"}
    where = ".".join(str(part) for part in first["location"])
    return error_response(
        422,
        "validation_error",
        f"invalid request: {where}: {first['message']}",
        {"errors": problems},
    )


def allowed_methods(request: Request) -> str:
    """Every method some route answers at the request's path, for a 405's `Allow` header.

    Starlette lists only the first route whose path matched; a path can match several (the
    fast `GET /v1/search` route and FastAPI's `POST`, or an id that reads like a sub-path)."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == FASTAPI_BODY_PARSE_ERROR:
        cause = exc.__cause__
        reason = "nested too deeply" if isinstance(cause, RecursionError) else str(cause)
        reason = reason.split(";")[0]  # Python's advice after ";" is for the server, not the client
        return error_response(400, "invalid_json", f"the JSON body cannot be parsed: {reason}")
    code = HTTP_CODE_NAMES.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    return error_response(exc.status_code, code, str(exc.detail), headers=headers)


async def _query_not_utf8(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QueryStringNotUTF8)
    return error_response(
        400,
        "invalid_utf8",
        f"the query string is not UTF-8 once percent-decoded, in {exc.part!r}: escape text as "
        "UTF-8 bytes (é is %C3%A9, not %E9)",
        {"where": "query", "part": exc.part},
    )


async def _unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error; see the server log")


async def _duplicate_ids(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DuplicateIdError)
    ids = sorted(exc.ids)
    shown = ", ".join(repr(i) for i in ids[:5]) + (" …" if len(ids) > 5 else "")
    return error_response(
        409,
        "duplicate_id",
        f"{len(ids)} ids already exist (mode=insert_only): {shown}",
        {"ids": ids},
    )


async def _store_full(_: Request, exc: Exception) -> JSONResponse:
    log.error("store full: %s", exc)
    return error_response(
        507, "insufficient_storage", f"the document store cannot write: {exc}", {}
    )


async def _store_unavailable(_: Request, exc: Exception) -> JSONResponse:
    """Nothing was acknowledged: the client may retry (the write is idempotent by id)."""
    log.error("store unavailable: %s", exc)
    return error_response(
        503,
        "unavailable",
        f"the document store is unavailable, retry shortly: {exc}",
        {"retry_after_s": RETRY_AFTER_S},
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Route every kind of failure through the one error shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DuplicateIdError, _duplicate_ids)
    app.add_exception_handler(StoreFullError, _store_full)
    app.add_exception_handler(StoreUnavailableError, _store_unavailable)
    app.add_exception_handler(QueryStringNotUTF8, _query_not_utf8)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled_error)
