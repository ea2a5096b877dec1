"""API-key checks: the write key guards writes and admin routes, the optional read key reads."""

from __future__ import annotations

import hmac

from fastapi import Request

from docbits.service.errors import ApiError
from docbits.service.settings import Settings


def presented_key(request: Request) -> str | None:
    """The key sent as `Authorization: Bearer …` or `X-API-Key`, if any."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get("x-api-key")


def _matches(given: str, expected: str) -> bool:
    """Compare in constant time so response timing does not leak the key."""
    return hmac.compare_digest(given.encode(), expected.encode())


def check_key(settings: Settings, request: Request, *, write: bool) -> None:
    """Raise 401 unless the request carries a key allowed for this kind of route."""
    accepted = [settings.api_key] if write else [settings.read_api_key, settings.api_key]
    if not write and settings.read_api_key is None:
        return
    keys = [key.get_secret_value() for key in accepted if key is not None]
    if not keys:
        return
    given = presented_key(request)
    if given is None:
        raise ApiError(401, "unauthorized", "missing API key: send Authorization: Bearer <key>")
    if not any([_matches(given, key) for key in keys]):
        raise ApiError(401, "unauthorized", "invalid API key")


async def require_read(request: Request) -> None:
    """Dependency for read routes (open unless a read key is configured)."""
    check_key(request.app.state.settings, request, write=False)


async def require_write(request: Request) -> None:
    """Dependency for write and admin routes (open only when no API key is configured)."""
    check_key(request.app.state.settings, request, write=True)
