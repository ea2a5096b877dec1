"""`parse_query_string` against Starlette's own query parsing, on arbitrary query strings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from docbits.service.query_string import QueryStringNotUTF8, parse_query_string

# Separators, escapes (valid, truncated, lower/upper hex, encoded UTF-8 and broken UTF-8),
# plus signs and plain characters, so keys, values and their decoding all vary.
PIECES = st.sampled_from(
    [
        "&",
        "=",
        "+",
        "%",
        "%2",
        "%20",
        "%2B",
        "%26",
        "%3D",
        "%41",
        "%e2%80%99",
        "%C3%A9",
        "%C3",
        "%ff",
        "%zz",
        "%%41",
        "q",
        "limit",
        "10",
        "a",
        "Z",
        "~",
        ";",
        "-",
        "_",
        ".",
        "%0A",
    ]
)
QUERY_STRINGS = st.lists(PIECES, max_size=30).map("".join)


def request_for(query_string: bytes) -> Request:
    return Request({"type": "http", "query_string": query_string, "headers": []})


def assert_parsed_as_starlette_does(request: Request) -> None:
    """Same dict as Starlette, except where Starlette turned bytes that are not UTF-8 into
    U+FFFD (the pieces never encode U+FFFD itself), in any pair, even one a later repeat of
    its key replaces: those raise."""
    starlette = dict(request.query_params)
    if any("\ufffd" in text for pair in request.query_params.multi_items() for text in pair):
        with pytest.raises(QueryStringNotUTF8):
            parse_query_string(request)
    else:
        assert parse_query_string(request) == starlette


@settings(max_examples=500, deadline=None)
@given(QUERY_STRINGS)
def test_ascii_query_strings_parse_as_starlette_does(query: str) -> None:
    assert_parsed_as_starlette_does(request_for(query.encode("ascii")))


@settings(max_examples=100, deadline=None)
@given(QUERY_STRINGS, st.sampled_from(["\u00e9", "\u2019", "\U0001f600"]))
def test_raw_non_ascii_bytes_parse_as_starlette_does(query: str, character: str) -> None:
    assert_parsed_as_starlette_does(request_for((query + character).encode("utf-8")))


def test_an_escape_that_is_not_utf8_names_its_parameter() -> None:
    with pytest.raises(QueryStringNotUTF8) as raised:
        parse_query_string(request_for(b"limit=3&q=caf%E9+au+lait"))
    assert raised.value.part == "q=caf%E9+au+lait"


def test_a_long_query_decodes_every_escape() -> None:
    request = request_for(b"q=caf%C3%A9+au+lait%0Aline+2%2C+%26more&limit=5&limit=7")
    assert parse_query_string(request) == {"q": "café au lait\nline 2, &more", "limit": "7"}
