"""Auth against a real server: write/admin routes need the write key, reads follow the read key,
and keys never show up in logs or answers. Routes come from the live OpenAPI schema, so a new
route is covered (and classified) without editing this file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.conftest import Server, serving, topical_documents

WRITE_KEY = "wk-9f2c41d7e3a84b6c-secret"
READ_KEY = "rk-51aa0b3c9d7e4f12-secret"
WRONG_KEYS = ["wk-9f2c41d7e3a84b6c", "nope", WRITE_KEY + "x", READ_KEY.upper()]
OPEN_PATHS = {"/livez", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"}
READ_POSTS = {"/v1/search"}
PATH_VALUES = {"doc_id": "auth-0", "code": "0000", "job_id": "job-none"}
VALID_BODIES: dict[str, Any] = {
    "/v1/documents": {"documents": [{"id": "sneaky", "text": "orbit shuttle launch"}]},
    "/v1/documents/delete": {"ids": ["auth-0"]},
    "/v1/model/train": {"epochs": 1},
    "/v1/search": {"q": "orbit shuttle"},
}


def operations(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, concrete path) of every operation in the OpenAPI schema."""
    found = []
    for template, methods in schema["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda match: PATH_VALUES[match.group(1)], template)
        found.extend((method.upper(), path) for method in methods)
    return sorted(found)


def is_write(method: str, path: str) -> bool:
    """POST and DELETE change state, except the read-only POST search."""
    return method in ("POST", "DELETE", "PUT", "PATCH") and path not in READ_POSTS


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[Server]:
    """A server with both a write key and a read key, holding a few documents."""
    data_dir = tmp_path_factory.mktemp("auth") / "data"
    env = {"DOCBITS_API_KEY": WRITE_KEY, "DOCBITS_READ_API_KEY": READ_KEY}
    with serving(data_dir, model_dir=tiny_model, env=env) as running:
        with running.client(WRITE_KEY) as client:
            docs = topical_documents(6, prefix="auth")
            assert client.post("/v1/documents", json={"documents": docs}).status_code == 200
        yield running


@pytest.fixture(scope="module")
def schema(keyed_server: Server) -> dict[str, Any]:
    with keyed_server.client() as client:
        return client.get("/openapi.json").json()


def call(
    server: Server, method: str, path: str, headers: dict[str, str], body: Any = None
) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        if method in ("POST", "PUT", "PATCH"):
            payload = VALID_BODIES.get(path, {}) if body is None else body
            return client.request(method, path, headers=headers, json=payload)
        return client.request(method, path, headers=headers, params={"q": "orbit"})


def refusals(server: Server, method: str, path: str, allowed: list[str]) -> list[httpx.Response]:
    """Answers to the request with no key and with every key not in `allowed`."""
    keys = [key for key in [*WRONG_KEYS, READ_KEY, WRITE_KEY] if key not in allowed]
    variants = [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic " + WRITE_KEY[:8]}]
    variants += [{"Authorization": f"Bearer {key}"} for key in keys]
    variants += [{"X-API-Key": key} for key in keys]
    return [call(server, method, path, headers) for headers in variants]


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, (response.request.url, response.text[:300])
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers.get("www-authenticate", "").lower().startswith("bearer")


def test_schema_lists_the_routes_this_test_expects(schema: dict[str, Any]) -> None:
    ops = operations(schema)
    writes = [op for op in ops if is_write(*op)]
    assert ("POST", "/v1/documents") in writes and ("POST", "/v1/model/train") in writes
    assert ("DELETE", "/v1/documents/auth-0") in writes
    assert len(ops) >= 12


def test_every_write_and_admin_route_refuses_missing_or_wrong_keys(
    keyed_server: Server, schema: dict[str, Any]
) -> None:
    writes = [op for op in operations(schema) if is_write(*op)]
    with keyed_server.client(READ_KEY) as reader:
        for method, path in writes:
            for response in refusals(keyed_server, method, path, allowed=[WRITE_KEY]):
                assert_unauthorized(response)
            assert reader.get("/v1/documents/sneaky").status_code == 404
            assert reader.get("/v1/documents/auth-0").status_code == 200
            assert reader.get("/v1/info").json()["training_job"] is None
        for method, path in writes:
            accepted = call(keyed_server, method, path, {"X-API-Key": WRITE_KEY}, body={"bad": 1})
            assert accepted.status_code != 401, (method, path)


def test_every_read_route_follows_the_read_key(
    keyed_server: Server, schema: dict[str, Any]
) -> None:
    reads = [op for op in operations(schema) if not is_write(*op) and op[1] not in OPEN_PATHS]
    assert ("GET", "/v1/search") in reads and ("POST", "/v1/search") in reads
    for method, path in reads:
        for response in refusals(keyed_server, method, path, allowed=[READ_KEY, WRITE_KEY]):
            assert_unauthorized(response)
        for key in (READ_KEY, WRITE_KEY):
            answer = call(keyed_server, method, path, {"Authorization": f"Bearer {key}"})
            assert answer.status_code != 401, (method, path, answer.text[:200])


def test_open_routes_need_no_key(keyed_server: Server) -> None:
    with keyed_server.client() as client:
        for path in ("/livez", "/readyz", "/metrics"):
            assert client.get(path).status_code == 200, path


def test_keys_never_appear_in_answers_or_logs(keyed_server: Server, schema: dict[str, Any]) -> None:
    bodies: list[str] = []
    for method, path in operations(schema):
        for response in refusals(keyed_server, method, path, allowed=[]):
            bodies.append(response.text + str(response.headers))
    with keyed_server.client(WRITE_KEY) as client:
        bodies.append(client.get("/v1/info").text)
        bodies.append(client.get("/metrics").text)
        bodies.append(client.get("/openapi.json").text)
    log = keyed_server.log()
    assert "401" in log, "the access log should record the refusals"
    for secret in (WRITE_KEY, READ_KEY, WRITE_KEY[3:19], READ_KEY[3:19]):
        assert secret not in log
        assert not [body for body in bodies if secret in body]


def test_without_a_read_key_reads_are_open_and_writes_still_guarded(
    tmp_path: Path, tiny_model: Path
) -> None:
    env = {"DOCBITS_API_KEY": WRITE_KEY}
    with serving(tmp_path / "data", model_dir=tiny_model, env=env) as server:
        with server.client() as client:
            assert client.get("/v1/search", params={"q": "orbit"}).status_code == 200
            assert client.get("/v1/info").status_code == 200
            body = {"documents": [{"id": "open", "text": "orbit"}]}
            assert_unauthorized(client.post("/v1/documents", json=body))
            assert_unauthorized(client.delete("/v1/documents/open"))
            assert_unauthorized(client.post("/v1/model/train", json={}))
            assert client.get("/v1/documents/open").status_code == 404
        assert WRITE_KEY not in server.log()
