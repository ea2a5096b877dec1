"""Auth, the one error shape, health, info, metrics, OpenAPI, and start-up model handling."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient

from docbits.service.app import build_state, create_app
from docbits.service.client import AsyncDocbitsClient, DocbitsError
from docbits.service.errors import StartupError
from docbits.service.settings import Settings
from docbits.service.state import ServiceState
from tests.service.conftest import open_client, settings_for, wait_ready

DOC = {"documents": [{"id": "a", "text": "orbit shuttle"}]}


@pytest.fixture
def keyed(tmp_path: Path) -> Any:
    client = open_client(tmp_path, api_key="write-secret", read_api_key="read-secret")
    yield client
    client.__exit__(None, None, None)


def test_write_key_guards_writes_in_either_header(keyed: TestClient) -> None:
    assert keyed.post("/v1/documents", json=DOC).status_code == 401
    wrong = keyed.post("/v1/documents", json=DOC, headers={"X-API-Key": "read-secret"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "invalid API key"
    assert wrong.headers["www-authenticate"] == "Bearer"
    bearer = {"Authorization": "Bearer write-secret"}
    assert keyed.post("/v1/documents", json=DOC, headers=bearer).status_code == 200
    header = {"X-API-Key": "write-secret"}
    assert (
        keyed.post("/v1/documents/delete", json={"ids": ["a"]}, headers=header).status_code == 200
    )
    assert keyed.post("/v1/model/train", headers={"X-API-Key": "read-secret"}).status_code == 401


def test_read_key_guards_reads_and_write_key_also_reads(keyed: TestClient) -> None:
    assert keyed.get("/v1/info").status_code == 401
    assert keyed.get("/v1/info", headers={"X-API-Key": "read-secret"}).status_code == 200
    assert (
        keyed.get("/v1/info", headers={"Authorization": "Bearer write-secret"}).status_code == 200
    )
    assert keyed.get("/v1/documents/a", headers={"X-API-Key": "nope"}).status_code == 401
    # GET /v1/search is served by its own Starlette route (HOT_ROUTES): it checks keys too.
    for key in (None, "nope"):
        headers = {} if key is None else {"X-API-Key": key}
        refused = keyed.get("/v1/search", params={"q": "shuttle"}, headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        posted = keyed.post("/v1/search", json={"q": "shuttle"}, headers=headers)
        assert posted.status_code == 401
    allowed = keyed.get("/v1/search", params={"q": "shuttle"}, headers={"X-API-Key": "read-secret"})
    assert allowed.status_code != 401
    for open_path in ("/livez", "/readyz", "/metrics"):
        assert keyed.get(open_path).status_code == 200


def test_routing_and_validation_errors_use_the_error_shape(bare_client: TestClient) -> None:
    missing = bare_client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"code", "message", "details"}
    wrong_method = bare_client.put("/v1/documents")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert wrong_method.headers["allow"] == "POST"
    # GET has its own fast route, POST FastAPI's: a 405 names both.
    assert bare_client.put("/v1/search").headers["allow"] == "GET, HEAD, POST"
    invalid = bare_client.post("/v1/documents", json={"documents": [{"text": ""}]})
    assert invalid.status_code == 422
    error = invalid.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["errors"][0]["location"] == ["body", "documents", 0, "text"]
    not_json = bare_client.post(
        "/v1/documents", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "invalid_json"


def test_unhandled_errors_are_500_with_a_generic_message(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path))

    def explode() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/boom", explode)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret" not in response.text


def test_readyz_is_503_until_loaded_and_async_client_works(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    state = build_state(settings)
    state.open()
    app = create_app(settings, state)

    async def probe() -> tuple[Any, ...]:
        transport = httpx.ASGITransport(app=app)
        async with AsyncDocbitsClient("http://docbits.test", transport=transport) as api:
            with pytest.raises(DocbitsError) as before:
                await api.readyz()
            with pytest.raises(DocbitsError) as write:
                await api.ingest(DOC["documents"])
            state.load()
            after = await api.readyz()
            ingested = await api.ingest(DOC["documents"])
            return before.value, write.value, after, ingested, await api.livez()

    before, write, after, ingested, live = anyio.run(probe)
    assert (before.status, before.code) == (503, "unavailable")
    assert write.status == 503
    assert after.status == "ready" and live.status == "ok"
    assert [d.id for d in ingested.documents] == ["a"]


def test_info_and_metrics_describe_the_index(
    client: TestClient, corpus: list[dict[str, Any]]
) -> None:
    client.post("/v1/documents", json={"documents": corpus[:50]})
    client.get("/v1/search", params={"q": corpus[0]["text"]})
    info = client.get("/v1/info").json()
    assert info["bits"] == 16 and info["variant"] == "undercomplete"
    assert info["documents"] == 50
    histogram = {int(size): count for size, count in info["bucket_size_histogram"].items()}
    assert sum(size * count for size, count in histogram.items()) == 50
    assert sum(histogram.values()) == info["buckets"]
    assert info["build"]["docbits_version"]
    model = client.get("/v1/model").json()
    assert model["model_fingerprint"] == info["model_fingerprint"]
    metrics = client.get("/metrics").text
    assert 'docbits_requests_total{method="GET",route="/v1/search",status="200"} 1.0' in metrics
    assert "docbits_documents 50.0" in metrics
    assert f"docbits_buckets {float(info['buckets'])}" in metrics
    assert "docbits_search_candidates_count 1.0" in metrics
    client.get("/v1/documents/some-unknown-id")
    metrics = client.get("/metrics").text
    assert 'method="GET",route="/v1/documents/{doc_id}",status="404"' in metrics
    assert "some-unknown-id" not in metrics


def test_openapi_documents_every_route_with_examples(bare_client: TestClient) -> None:
    spec = bare_client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/v1/documents",
        "/v1/documents/{doc_id}",
        "/v1/documents/delete",
        "/v1/documents/{doc_id}/similar",
        "/v1/search",
        "/v1/buckets/{code}",
        "/v1/info",
        "/v1/model",
        "/v1/model/train",
        "/v1/model/jobs/{job_id}",
    ):
        assert path in paths, path
    schemas = spec["components"]["schemas"]
    for name in ("IngestRequest", "IngestResponse", "SearchResponse", "SearchRequest", "JobOut"):
        assert schemas[name].get("examples"), name
    assert bare_client.get("/docs").status_code == 200


def test_a_new_model_at_start_up_re_encodes_everything(
    tmp_path: Path, model_dir: Path, other_model_dir: Path, corpus: list[dict[str, Any]]
) -> None:
    first = open_client(tmp_path, model_path=model_dir)
    first.post("/v1/documents", json={"documents": corpus[:40]})
    old = first.get("/v1/info").json()["model_fingerprint"]
    first.__exit__(None, None, None)

    second = open_client(tmp_path, model_path=other_model_dir)
    try:
        new = second.get("/v1/info").json()["model_fingerprint"]
        assert new != old
        assert (tmp_path / "models" / new / "model.safetensors").exists()
        stored = {d["id"]: second.get(f"/v1/documents/{d['id']}").json() for d in corpus[:40]}
        assert {doc["model_fingerprint"] for doc in stored.values()} == {new}
        doc = corpus[0]
        hits = second.get("/v1/search", params={"q": doc["text"], "limit": 100}).json()["hits"]
        assert doc["id"] in {hit["id"] for hit in hits}
    finally:
        second.__exit__(None, None, None)

    third = open_client(tmp_path)
    try:
        assert third.get("/v1/info").json()["model_fingerprint"] == new
    finally:
        third.__exit__(None, None, None)


def test_a_missing_model_folder_comes_back_from_the_store_else_start_is_refused(
    tmp_path: Path, model_dir: Path
) -> None:
    """The models folder is a cache of the store's models: a missing active model is copied back
    from the store; missing from both, start-up refuses, naming it, and the store is untouched."""
    open_client(tmp_path, model_path=model_dir).__exit__(None, None, None)
    fingerprint = next(p.name for p in (tmp_path / "models").iterdir())
    (tmp_path / "models" / fingerprint).rename(tmp_path / "elsewhere")
    state = ServiceState(settings_for(tmp_path))
    state.open()
    restored = tmp_path / "models" / fingerprint
    for name in ("config.json", "vocab.json", "model.safetensors"):
        assert (restored / name).read_bytes() == (model_dir / name).read_bytes()
    state.close()
    with sqlite3.connect(tmp_path / "docbits.sqlite3") as connection:
        connection.execute("DELETE FROM models")
    shutil.rmtree(restored)
    state = ServiceState(settings_for(tmp_path))
    with pytest.raises(StartupError, match=f"model {fingerprint[:12]} is neither in"):
        state.open()
    state.close()
    assert sqlite3.connect(tmp_path / "docbits.sqlite3").execute("select 1").fetchone() == (1,)


def test_no_key_beyond_loopback_refuses_unless_allowed(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, host="0.0.0.0")
    with pytest.raises(StartupError, match="DOCBITS_API_KEY"), TestClient(create_app(settings)):
        pass
    allowed = Settings(data_dir=tmp_path, host="0.0.0.0", allow_open=True, autotrain_min_docs=0)
    with TestClient(create_app(allowed)) as client:
        wait_ready(client)
        assert client.get("/livez").status_code == 200


def test_an_empty_key_in_the_environment_means_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCBITS_API_KEY", "")
    monkeypatch.setenv("DOCBITS_READ_API_KEY", "")
    settings = Settings()
    assert settings.api_key is None
    assert settings.read_api_key is None


def test_the_loaded_heap_is_exempt_from_full_collections(client: TestClient) -> None:
    """Once ready, what start-up loaded sits outside the collector (no long full-GC pauses)."""
    import gc

    assert client.get("/readyz").status_code == 200
    frozen = gc.get_freeze_count()
    assert frozen > 10_000
    assert len(gc.get_objects(generation=2)) < frozen
