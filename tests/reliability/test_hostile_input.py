"""Hostile and malformed requests: each gets a clear 4xx in the one error shape; nothing stored."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.conftest import Server, serving, store_environment, topical_documents

LIMITS = {
    "DOCBITS_MAX_TEXT_BYTES": "20000",
    "DOCBITS_MAX_BATCH_DOCS": "20",
    "DOCBITS_MAX_REQUEST_BYTES": "300000",
    "DOCBITS_MAX_BATCH_QUERIES": "10",
}
SEEDED = topical_documents(8, prefix="seed")


def nested(depth: int) -> dict[str, Any]:
    """A metadata object nested `depth` levels deep."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"k": value}
    return value


def deeply_nested_body(depth: int) -> bytes:
    """An ingest body whose metadata nests `depth` objects (too deep for `json.dumps`)."""
    metadata = '{"k":' * depth + "1" + "}" * depth
    return b'{"documents":[{"id":"bad-doc","text":"orbit","metadata":' + metadata.encode() + b"}]}"


def document_body(**fields: Any) -> dict[str, Any]:
    """An ingest body with one document `bad-doc` carrying `fields`."""
    return {"documents": [{"id": "bad-doc", "text": "orbit shuttle launch", **fields}]}


# (name, method, path, json body or raw bytes, query params)
BAD_WRITES: list[tuple[str, Any, dict[str, Any]]] = [
    ("empty text", document_body(text=""), {}),
    ("whitespace-only text", document_body(text=" \t\n  \r\n"), {}),
    ("text over the size limit", document_body(text="orbit " * 4000), {}),
    ("NUL byte in text", document_body(text="orbit\x00shuttle"), {}),
    ("NUL byte in id", {"documents": [{"id": "bad\x00doc", "text": "orbit"}]}, {}),
    ("lone surrogate in text", b'{"documents":[{"id":"bad-doc","text":"orbit \\ud800"}]}', {}),
    ("lone surrogate in id", b'{"documents":[{"id":"bad-\\udfff","text":"orbit"}]}', {}),
    ("invalid UTF-8 body", b'{"documents":[{"id":"bad-doc","text":"orbit \xff\xfe"}]}', {}),
    ("deeply nested metadata", deeply_nested_body(20_000), {}),
    ("moderately nested metadata", document_body(metadata=nested(200)), {}),
    ("huge metadata", document_body(metadata={f"k{i}": "v" * 100 for i in range(2000)}), {}),
    ("metadata not an object", document_body(metadata=[1, 2]), {}),
    (
        "NaN in metadata",
        b'{"documents":[{"id":"bad-doc","text":"orbit","metadata":{"x":NaN}}]}',
        {},
    ),
    (
        "overflowing number in metadata",
        b'{"documents":[{"id":"bad-doc","text":"a","metadata":{"x":1e999}}]}',
        {},
    ),
    ("non-object JSON (list)", [{"id": "bad-doc", "text": "orbit"}], {}),
    ("non-object JSON (string)", "orbit", {}),
    ("non-object JSON (null)", None, {}),
    ("not JSON at all", b"orbit shuttle launch", {}),
    ("empty body", b"", {}),
    ("text of wrong type", document_body(text=12), {}),
    ("id of wrong type", document_body(id=["bad-doc"]), {}),
    ("documents of wrong type", {"documents": {"id": "bad-doc", "text": "orbit"}}, {}),
    ("empty batch", {"documents": []}, {}),
    (
        "duplicate ids in one batch",
        {"documents": [{"id": "bad-doc", "text": "orbit"}, {"id": "bad-doc", "text": "moon"}]},
        {},
    ),
    ("unknown top-level field", {**document_body(), "documets": []}, {}),
    ("unknown document field", document_body(txet="orbit"), {}),
    ("empty id", document_body(id=""), {}),
    ("id over 256 characters", document_body(id="x" * 257), {}),
    (
        "oversize batch",
        {"documents": [{"id": f"bad-doc-{i}", "text": "orbit"} for i in range(21)]},
        {},
    ),
    ("body over the byte limit", document_body(text="orbit " * 1000, pad="x" * 400_000), {}),
    ("unknown ingest mode", document_body(), {"mode": "overwrite"}),
]

BAD_READS: list[tuple[str, str, str, dict[str, Any] | None, dict[str, Any]]] = [
    ("negative limit", "GET", "/v1/search", None, {"q": "orbit", "limit": -1}),
    ("zero limit", "GET", "/v1/search", None, {"q": "orbit", "limit": 0}),
    ("huge limit", "GET", "/v1/search", None, {"q": "orbit", "limit": 10**12}),
    ("limit beyond int64", "GET", "/v1/search", None, {"q": "orbit", "limit": 10**30}),
    ("negative offset", "GET", "/v1/search", None, {"q": "orbit", "offset": -5}),
    ("huge offset", "GET", "/v1/search", None, {"q": "orbit", "nearest": True, "offset": 10**18}),
    ("offset beyond int64", "GET", "/v1/search", None, {"q": "orbit", "offset": 10**30}),
    ("negative radius", "GET", "/v1/search", None, {"q": "orbit", "radius": -1}),
    ("radius over the cap", "GET", "/v1/search", None, {"q": "orbit", "radius": 9}),
    ("huge radius", "GET", "/v1/search", None, {"q": "orbit", "radius": 10**12}),
    ("radius not a number", "GET", "/v1/search", None, {"q": "orbit", "radius": "two"}),
    ("empty query", "GET", "/v1/search", None, {"q": ""}),
    ("whitespace query", "GET", "/v1/search", None, {"q": "   "}),
    ("NUL byte in query", "GET", "/v1/search", None, {"q": "orbit\x00"}),
    ("missing query", "GET", "/v1/search", None, {}),
    ("POST search with both q and queries", "POST", "/v1/search", {"q": "a", "queries": ["b"]}, {}),
    ("POST search with neither", "POST", "/v1/search", {"radius": 1}, {}),
    ("POST search, too many queries", "POST", "/v1/search", {"queries": ["orbit"] * 11}, {}),
    ("POST search, empty queries", "POST", "/v1/search", {"queries": []}, {}),
    ("POST search, query not a string", "POST", "/v1/search", {"queries": [1, 2]}, {}),
    ("POST search, huge offset", "POST", "/v1/search", {"q": "orbit", "offset": 10**30}, {}),
    ("POST search, filter a list", "POST", "/v1/search", {"q": "orbit", "filter": [1]}, {}),
    ("POST search, unknown field", "POST", "/v1/search", {"q": "orbit", "radious": 1}, {}),
    ("code too short", "GET", "/v1/buckets/ab", None, {}),
    ("code too long", "GET", "/v1/buckets/abcdef", None, {}),
    ("code not hex", "GET", "/v1/buckets/zzzz", None, {}),
    ("code with a sign", "GET", "/v1/buckets/-abc", None, {}),
    ("code with spaces", "GET", "/v1/buckets/ab%20c", None, {}),
    ("bucket, negative offset", "GET", "/v1/buckets/abcd", None, {"offset": -1}),
    ("bucket, huge offset", "GET", "/v1/buckets/abcd", None, {"offset": 10**30}),
    ("similar, negative limit", "GET", "/v1/documents/seed-0/similar", None, {"limit": -3}),
    ("similar, radius over cap", "GET", "/v1/documents/seed-0/similar", None, {"radius": 50}),
    ("delete, empty id list", "POST", "/v1/documents/delete", {"ids": []}, {}),
    ("delete, ids not a list", "POST", "/v1/documents/delete", {"ids": "seed-0"}, {}),
    ("delete, too many ids", "POST", "/v1/documents/delete", {"ids": ["x"] * 21}, {}),
    ("delete, NUL in an id", "POST", "/v1/documents/delete", {"ids": ["seed-0", "a\x00b"]}, {}),
    ("read, NUL in the id", "GET", "/v1/documents/seed%00-0", None, {}),
    ("delete one, NUL in the id", "DELETE", "/v1/documents/seed%00-0", None, {}),
    ("similar, NUL in the id", "GET", "/v1/documents/seed%00-0/similar", None, {}),
    ("job, NUL in the id", "GET", "/v1/model/jobs/a%00b", None, {}),
    ("train, bits not a multiple of 8", "POST", "/v1/model/train", {"bits": 12}, {}),
    ("train, negative epochs", "POST", "/v1/model/train", {"epochs": -1}, {}),
    ("train, unknown variant", "POST", "/v1/model/train", {"variant": "quantum"}, {}),
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def limited_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> Iterator[Server]:
    """A server over each store with small limits and eight seeded documents, shared by this
    module (the stores refuse different things: PostgreSQL text cannot hold NUL)."""
    data_dir = tmp_path_factory.mktemp("hostile") / "data"
    env = LIMITS | store_environment(request)
    with serving(data_dir, model_dir=tiny_model, env=env) as running:
        with running.client() as client:
            assert client.post("/v1/documents", json={"documents": SEEDED}).status_code == 200
        yield running


def stored_count(client: httpx.Client) -> int:
    """Documents the service holds, from /v1/info."""
    return int(client.get("/v1/info").json()["documents"])


def assert_clear_client_error(response: httpx.Response) -> None:
    """A 4xx with `{"error": {"code", "message", "details"}}` and a non-empty message."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and len(error["message"]) > 5
    assert isinstance(error["details"], dict)


def send(client: httpx.Client, method: str, path: str, body: Any, params: dict[str, Any]) -> Any:
    """Send `body` as raw bytes when it is bytes, else as JSON."""
    if isinstance(body, bytes):
        headers = {"Content-Type": "application/json"}
        return client.request(method, path, content=body, params=params, headers=headers)
    if body is None and method == "GET":
        return client.request(method, path, params=params)
    return client.request(
        method,
        path,
        content=json.dumps(body),
        params=params,
        headers={"Content-Type": "application/json"},
    )


@pytest.mark.parametrize(
    ("body", "params"), [case[1:] for case in BAD_WRITES], ids=[case[0] for case in BAD_WRITES]
)
def test_bad_ingest_is_refused_and_nothing_is_stored(
    limited_server: Server, body: Any, params: dict[str, Any]
) -> None:
    with limited_server.client() as client:
        before = stored_count(client)
        response = None
        try:
            response = send(client, "POST", "/v1/documents", body, params)
            assert_clear_client_error(response)
            assert stored_count(client) == before
            assert client.get("/v1/documents/bad-doc").status_code == 404
        finally:
            stray = [doc["id"] for doc in response_documents(response)] + ["bad-doc"]
            client.post("/v1/documents/delete", json={"ids": stray[:20]})
        assert client.get("/livez").status_code == 200


def response_documents(response: httpx.Response | None) -> list[dict[str, Any]]:
    """The documents an ingest answer says it stored (none for an error answer)."""
    if response is None or response.status_code != 200:
        return []
    return list(response.json()["documents"])


@pytest.mark.parametrize(
    ("method", "path", "body", "params"),
    [case[1:] for case in BAD_READS],
    ids=[case[0] for case in BAD_READS],
)
def test_bad_read_or_admin_request_is_refused(
    limited_server: Server, method: str, path: str, body: Any, params: dict[str, Any]
) -> None:
    with limited_server.client() as client:
        before = stored_count(client)
        assert_clear_client_error(send(client, method, path, body, params))
        assert stored_count(client) == before
        assert client.get("/v1/model/jobs/none").status_code == 404


def raw_socket(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_answer(sock: socket.socket) -> str:
    """The whole HTTP answer: headers and body, read until the server closes or the body is in."""
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length:")
            ),
            None,
        )
        if length is not None and len(body) >= length:
            break
    return data.decode(errors="replace")


def ingest_head(length: int) -> bytes:
    return (
        f"POST /v1/documents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_truncated_body_stores_nothing(limited_server: Server) -> None:
    body = json.dumps(document_body(id="truncated-doc")).encode()
    with raw_socket(limited_server) as sock:
        sock.sendall(ingest_head(len(body)) + body[: len(body) // 2])
    with limited_server.client() as client:
        time.sleep(0.3)
        assert client.get("/v1/documents/truncated-doc").status_code == 404
        assert client.get("/readyz").status_code == 200


def test_slow_body_does_not_block_other_clients(limited_server: Server) -> None:
    body = json.dumps(document_body(id="slow-doc")).encode()
    with raw_socket(limited_server) as sock, limited_server.client() as client:
        sock.sendall(ingest_head(len(body)))
        for start in range(0, len(body) - 10, 10):
            sock.sendall(body[start : start + 10])
            started = time.monotonic()
            assert client.get("/v1/search", params={"q": "orbit shuttle"}).status_code == 200
            assert time.monotonic() - started < 5
            assert client.get("/v1/documents/slow-doc").status_code == 404
            time.sleep(0.02)
    time.sleep(0.3)
    with limited_server.client() as client:
        assert client.get("/v1/documents/slow-doc").status_code == 404


def test_declared_length_over_limit_is_refused_before_the_body(limited_server: Server) -> None:
    with raw_socket(limited_server) as sock:
        sock.sendall(ingest_head(10**9) + b'{"documents": [')
        answer = read_answer(sock)
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "payload_too_large" in answer


def test_seeded_documents_survive_the_abuse(limited_server: Server) -> None:
    with limited_server.client() as client:
        for doc in SEEDED:
            stored = client.get(f"/v1/documents/{doc['id']}").json()
            assert (stored["text"], stored["metadata"]) == (doc["text"], doc["metadata"])
        assert stored_count(client) == len(SEEDED)
