"""Strict query strings: the (key, value) pairs Starlette would read, but UTF-8 or an error.

Starlette turns percent-escapes that are not UTF-8 (`q=caf%E9`, Latin-1's é) silently into
U+FFFD; the service answers them with a clear error instead.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request


class QueryStringNotUTF8(ValueError):
    """A query string whose percent-decoded bytes are not UTF-8."""

    def __init__(self, part: str) -> None:
        super().__init__(part)
        self.part = part


def strict_query_pairs(raw: bytes) -> list[tuple[str, str]]:
    """Every (key, value) of a raw query string, as Starlette reads it, but UTF-8 or raise."""
    pairs: list[tuple[str, str]] = []
    for part in raw.decode("latin-1").split("&"):
        try:
            pairs += parse_qsl(part, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            raise QueryStringNotUTF8(part) from None
    return pairs


def parse_query_string(request: Request) -> dict[str, str]:
    """The request's query parameters, the last value of each key."""
    return dict(strict_query_pairs(request.scope["query_string"]))
