"""Strict, clear errors for malformed requests: unknown query parameters, bodies that are not
UTF-8 JSON or not sent as JSON, query strings that are not UTF-8, and requests uvicorn's parser
refuses (a URL too long, bytes that are not HTTP), each in the one JSON error shape."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from docbits.service.http_protocol import MAX_URL_BYTES
from tests.reliability.conftest import Server, serving

JSON = {"Content-Type": "application/json"}


def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    """The error object of `response`, after checking its status, code and shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] == code, error
    return error


@pytest.mark.parametrize(
    ("path", "unknown", "allowed"),
    [
        ("/v1/search?q=space+shuttle&radios=2", ["radios"], "include_text, limit, min_seq"),
        ("/v1/documents/a/similar?nearest=true&limmit=3", ["limmit"], "limit, min_seq, nearest"),
        ("/v1/buckets/abcd?size=3&page=2", ["page", "size"], "limit, min_seq, offset"),
        ("/v1/info?verbose=1", ["verbose"], "no query parameters"),
        ("/v1/documents/a?fields=text", ["fields"], "takes min_seq"),
    ],
)
def test_unknown_query_parameters_are_named_with_the_allowed_ones(
    bare_client: TestClient, path: str, unknown: list[str], allowed: str
) -> None:
    error = error_of(bare_client.get(path), 422, "unknown_parameter")
    assert all(repr(name) in error["message"] for name in unknown)
    assert allowed in error["message"]
    assert error["details"]["unknown"] == unknown


def test_the_hot_search_route_and_the_fastapi_routes_share_one_list(
    bare_client: TestClient,
) -> None:
    """GET /v1/search (its own Starlette route) allows exactly what its OpenAPI entry lists."""
    spec = bare_client.get("/openapi.json").json()["paths"]["/v1/search"]["get"]
    documented = sorted(parameter["name"] for parameter in spec["parameters"])
    error = error_of(bare_client.get("/v1/search?q=a&radios=1"), 422, "unknown_parameter")
    assert error["details"]["allowed"] == documented
    for name in documented:  # every documented name passes the check (then: no model yet)
        response = bare_client.get(f"/v1/search?q=a&{name}=1")
        assert response.json()["error"]["code"] != "unknown_parameter", name


def test_unknown_parameters_on_writes_and_the_page(bare_client: TestClient) -> None:
    body = {"documents": [{"id": "a", "text": "orbit"}]}
    error = error_of(
        bare_client.post("/v1/documents?mod=insert_only", json=body), 422, "unknown_parameter"
    )
    assert error["details"]["allowed"] == ["mode"]
    assert bare_client.get("/v1/documents/a").status_code == 404  # nothing was stored
    assert bare_client.get("/?q=shuttle&doc=a").status_code == 200  # the page's own state


def test_malformed_json_says_where(bare_client: TestClient) -> None:
    body = b'{"documents": [\n  {"id": "a", "text": "orbit",}\n]}'
    error = error_of(
        bare_client.post("/v1/documents", content=body, headers=JSON), 400, "invalid_json"
    )
    assert error["message"].startswith("invalid JSON at line 2 column 31: ")
    assert (error["details"]["line"], error["details"]["column"]) == (2, 31)
    deep = b'{"q": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    error = error_of(
        bare_client.post("/v1/search", content=deep, headers=JSON), 400, "invalid_json"
    )
    assert "nested too deeply" in error["message"]


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ({}, "no Content-Type header"),
        ({"Content-Type": "text/plain"}, "'text/plain'"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, "form-urlencoded"),
        ({"Content-Type": "application/json; charset=latin-1"}, "charset 'latin-1'"),
    ],
)
def test_a_body_not_sent_as_json_is_415_saying_what_to_send(
    bare_client: TestClient, headers: dict[str, str], says: str
) -> None:
    body = json.dumps({"documents": [{"text": "orbit"}]}).encode()
    response = bare_client.post("/v1/documents", content=body, headers=headers)
    error = error_of(response, 415, "unsupported_media_type")
    assert "Content-Type: application/json" in error["message"] and says in error["message"]
    assert bare_client.get("/v1/info").json()["documents"] == 0


def test_json_content_types_with_utf8_are_accepted(bare_client: TestClient) -> None:
    body = json.dumps({"documents": [{"id": "é", "text": "café orbit"}]}).encode()
    for content_type in ("application/json; charset=UTF-8", "application/problem+json"):
        response = bare_client.post(
            "/v1/documents", content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == 200, response.text
    assert bare_client.get("/v1/documents/é").json()["text"] == "café orbit"


@pytest.mark.parametrize(
    "body",
    [
        '{"documents": [{"text": "café"}]}'.encode("latin-1"),
        '{"documents": [{"text": "café"}]}'.encode("utf-16"),
    ],
    ids=["latin-1", "utf-16"],
)
def test_a_body_that_is_not_utf8_is_400_invalid_utf8(bare_client: TestClient, body: bytes) -> None:
    error = error_of(
        bare_client.post("/v1/documents", content=body, headers=JSON), 400, "invalid_utf8"
    )
    assert error["details"]["where"] == "body" and "UTF-8" in error["message"]
    assert bare_client.get("/v1/info").json()["documents"] == 0


@pytest.mark.parametrize("path", ["/v1/search?q=caf%E9", "/v1/buckets/abcd?limit=1&x=%FF"])
def test_a_query_string_that_is_not_utf8_is_400_invalid_utf8(
    bare_client: TestClient, path: str
) -> None:
    error = error_of(bare_client.get(path), 400, "invalid_utf8")
    assert error["details"]["where"] == "query" and "%C3%A9" in error["message"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real `docbits serve` (uvicorn with the service's HTTP protocol), no model."""
    with serving(tmp_path_factory.mktemp("rules") / "data") as running:
        yield running


def raw_exchange(server: Server, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on a fresh connection; the status, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


def test_a_url_over_the_parsers_limit_is_414_in_the_error_shape(server: Server) -> None:
    for length, status in ((MAX_URL_BYTES - 100, 409), (MAX_URL_BYTES + 1, 414), (200_000, 414)):
        path = "/v1/search?q=" + "a" * (length - len("/v1/search?q="))
        got, headers, body = raw_exchange(
            server, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        assert got == status, (length, body[:200])
        assert headers["content-type"] == "application/json"
        error = json.loads(body)["error"]
        assert error["code"] == ("no_model" if status == 409 else "uri_too_long")
        if status == 414:
            assert f"limit is {MAX_URL_BYTES}" in error["message"] and "POST" in error["message"]


def test_bytes_that_are_not_http_get_the_error_shape(server: Server) -> None:
    status, headers, body = raw_exchange(server, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "bad_request"
    assert server.alive()


def test_the_served_process_refuses_the_same_mistakes(server: Server, tmp_path: Path) -> None:
    """Through uvicorn and real HTTP: the rules hold outside the in-process test client."""
    with server.client() as client:
        error_of(client.get("/v1/search", params={"q": "x", "radios": 2}), 422, "unknown_parameter")
        error_of(client.get("/v1/search?q=caf%E9"), 400, "invalid_utf8")
        error_of(client.post("/v1/search", content=b'{"q": "x"'), 415, "unsupported_media_type")
        error_of(client.post("/v1/search", content=b'{"q": "x"', headers=JSON), 400, "invalid_json")
        error_of(client.get("/no/such/route"), 404, "not_found")


def test_a_missing_key_is_401_before_any_unknown_parameter(tmp_path: Path) -> None:
    from tests.service.conftest import open_client

    client = open_client(tmp_path, api_key="write-secret", read_api_key="read-secret")
    try:
        for method, path in [
            ("GET", "/v1/info?verbose=1"),
            ("GET", "/v1/search?q=x&radios=2"),
            ("DELETE", "/v1/documents/a?force=1"),
        ]:
            error_of(client.request(method, path), 401, "unauthorized")
            keyed = client.request(method, path, headers={"X-API-Key": "write-secret"})
            error_of(keyed, 422, "unknown_parameter")
    finally:
        client.__exit__(None, None, None)
