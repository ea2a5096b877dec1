"""Property-based fuzz of the whole API from its live OpenAPI schema: no 5xx, documented shapes."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.conftest import Server, serving, topical_documents
from tests.reliability.openapi_fuzz import Operation, problems, requests, response_schema

FAST_CASES = 150
SLOW_CASES = 2000
# Training spawns a worker process per accepted call; it is covered by the hostile-input tests.
SKIPPED = {("POST", "/v1/model/train")}
SEEDED = topical_documents(30, prefix="fuzz")
CASES_RUN: Counter[str] = Counter()


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    with serving(data_dir, model_dir=tiny_model) as running:
        with running.client() as client:
            assert client.post("/v1/documents", json={"documents": SEEDED}).status_code == 200
        yield running


@pytest.fixture(scope="module")
def api(fuzz_server: Server) -> tuple[list[Operation], dict[str, Any]]:
    with fuzz_server.client() as client:
        schema = client.get("/openapi.json").json()
    operations = [
        Operation(method.upper(), template, spec)
        for template, methods in schema["paths"].items()
        for method, spec in methods.items()
        if (method.upper(), template) not in SKIPPED
    ]
    return operations, schema["components"]["schemas"]


def check_one(server: Server, operation: Operation, components: dict[str, Any], data: Any) -> None:
    """Send one drawn request; the answer is not a 5xx and matches its documented schema."""
    request = data.draw(requests(operation, components, [doc["id"] for doc in SEEDED]))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        kwargs: dict[str, Any] = {}
        if request.has_body:
            kwargs["content"] = json.dumps(request.body, ensure_ascii=False).encode(
                errors="surrogatepass"
            )
            kwargs["headers"] = {"Content-Type": "application/json"}
        response = client.request(request.method, request.path, **kwargs)
    CASES_RUN[f"{operation.method} {operation.template}"] += 1
    described = f"{request} -> {response.status_code} {response.text[:300]}"
    assert response.status_code < 500, described
    schema = response_schema(operation, response.status_code)
    if operation.template == "/metrics":
        assert response.status_code == 200
        return
    assert schema is not None, f"status not documented: {described}"
    assert problems(response.json(), schema, components) == [], described


def run_fuzz(server: Server, api: tuple[list[Operation], dict[str, Any]], cases: int) -> None:
    operations, components = api

    @settings(
        max_examples=cases,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(operation=st.sampled_from(operations), data=st.data())
    def fuzz(operation: Operation, data: Any) -> None:
        check_one(server, operation, components, data)

    CASES_RUN.clear()
    fuzz()
    print(f"\nfuzz cases by route ({sum(CASES_RUN.values())} in all): {dict(CASES_RUN)}")
    with server.client() as client:
        assert client.get("/readyz").status_code == 200


def test_fuzz_every_route_bounded(fuzz_server: Server, api: Any) -> None:
    run_fuzz(fuzz_server, api, FAST_CASES)
    assert sum(CASES_RUN.values()) >= FAST_CASES // 2


@pytest.mark.slow
def test_fuzz_every_route_long(fuzz_server: Server, api: Any) -> None:
    run_fuzz(fuzz_server, api, SLOW_CASES)
    assert sum(CASES_RUN.values()) >= SLOW_CASES // 2
