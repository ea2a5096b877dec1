"""`/v1/documents`: ingest, upsert between buckets, insert_only, limits, read and delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.service.conftest import open_client


def ingest(client: TestClient, docs: list[dict[str, Any]], **params: Any) -> Any:
    response = client.post("/v1/documents", json={"documents": docs}, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_ingest_returns_each_id_with_its_code_and_the_fingerprint(
    client: TestClient, corpus: list[dict[str, Any]]
) -> None:
    body = ingest(client, corpus[:20])
    fingerprint = client.get("/v1/info").json()["model_fingerprint"]
    assert body["model_fingerprint"] == fingerprint
    assert [d["id"] for d in body["documents"]] == [d["id"] for d in corpus[:20]]
    assert all(len(d["code"]) == 4 for d in body["documents"])
    stored = client.get(f"/v1/documents/{corpus[0]['id']}").json()
    assert stored["text"] == corpus[0]["text"]
    assert stored["metadata"] == corpus[0]["metadata"]
    assert stored["code"] == body["documents"][0]["code"]
    assert stored["model_fingerprint"] == fingerprint


def test_missing_ids_are_generated_and_returned(client: TestClient) -> None:
    body = ingest(client, [{"text": "orbit shuttle launch"}, {"text": "puck goalie rink"}])
    ids = [d["id"] for d in body["documents"]]
    assert len(set(ids)) == 2
    for doc_id in ids:
        assert client.get(f"/v1/documents/{doc_id}").status_code == 200


def test_upsert_moves_a_document_to_its_new_bucket(
    client: TestClient, corpus: list[dict[str, Any]]
) -> None:
    space = next(d for d in corpus if d["metadata"]["topic"] == "space")
    hockey = next(d for d in corpus if d["metadata"]["topic"] == "hockey")
    old_code = ingest(client, [{"id": "moving", "text": space["text"]}])["documents"][0]["code"]
    new_code = ingest(client, [{"id": "moving", "text": hockey["text"]}])["documents"][0]["code"]
    assert old_code != new_code
    assert "moving" in [m["id"] for m in client.get(f"/v1/buckets/{new_code}").json()["documents"]]
    old_members = client.get(f"/v1/buckets/{old_code}").json()["documents"]
    assert "moving" not in [m["id"] for m in old_members]
    assert client.get("/v1/documents/moving").json()["text"] == hockey["text"]


def test_insert_only_answers_409_for_existing_ids(client: TestClient) -> None:
    ingest(client, [{"id": "x1", "text": "orbit moon"}])
    response = client.post(
        "/v1/documents",
        params={"mode": "insert_only"},
        json={"documents": [{"id": "x1", "text": "puck rink"}, {"id": "x2", "text": "pixel"}]},
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "duplicate_id"
    assert error["details"]["ids"] == ["x1"]
    assert client.get("/v1/documents/x1").json()["text"] == "orbit moon"
    assert client.get("/v1/documents/x2").status_code == 404


def test_more_documents_than_the_limit_is_413_naming_the_limit(tmp_path: Path) -> None:
    client = open_client(tmp_path, max_batch_docs=5)
    try:
        docs = [{"text": f"doc {i}"} for i in range(6)]
        response = client.post("/v1/documents", json={"documents": docs})
        assert response.status_code == 413
        assert "limit is 5" in response.json()["error"]["message"]
        assert client.get("/v1/info").json()["documents"] == 0
    finally:
        client.__exit__(None, None, None)


def test_body_over_the_byte_limit_is_413_even_without_content_length(tmp_path: Path) -> None:
    client = open_client(tmp_path, max_request_bytes=4096)
    try:
        big = '{"documents": [{"text": "' + "a" * 5000 + '"}]}'
        response = client.post("/v1/documents", content=big.encode())
        assert response.status_code == 413
        assert "4096 bytes" in response.json()["error"]["message"]

        def chunks() -> Any:
            for start in range(0, len(big), 1000):
                yield big[start : start + 1000].encode()

        streamed = client.post("/v1/documents", content=chunks())
        assert "content-length" not in streamed.request.headers
        assert streamed.status_code == 413
        assert streamed.json()["error"]["code"] == "payload_too_large"
    finally:
        client.__exit__(None, None, None)


def test_repeated_id_in_one_batch_is_rejected(client: TestClient) -> None:
    docs = [{"id": "d", "text": "orbit"}, {"id": "d", "text": "puck"}]
    response = client.post("/v1/documents", json={"documents": docs})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "duplicate_id"


def test_delete_one_and_many(client: TestClient, corpus: list[dict[str, Any]]) -> None:
    ingest(client, corpus[:6])
    ids = [d["id"] for d in corpus[:6]]
    assert client.delete(f"/v1/documents/{ids[0]}").json()["deleted"] == [ids[0]]
    assert client.delete(f"/v1/documents/{ids[0]}").status_code == 404
    before = client.get("/v1/info").json()["feed"]["applied_seq"]
    response = client.post("/v1/documents/delete", json={"ids": [*ids[1:3], "nope"]}).json()
    assert response == {"deleted": ids[1:3], "not_found": ["nope"], "seq": before + 2}
    assert client.get("/v1/info").json()["documents"] == 3
    hits = client.post(
        "/v1/search", json={"queries": [d["text"] for d in corpus[:3]], "limit": 100}
    ).json()
    found = {hit["id"] for result in hits["results"] for hit in result["hits"]}
    assert not found & set(ids[:3])


def test_unknown_document_is_404_in_the_error_shape(client: TestClient) -> None:
    response = client.get("/v1/documents/nope")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": "not_found",
            "message": "no document with id 'nope'",
            "details": {"id": "nope"},
        }
    }


def test_ids_with_slashes_reach_every_per_document_route(client: TestClient) -> None:
    doc_id = "train/sci.space/61228"
    ingest(client, [{"id": doc_id, "text": "orbit shuttle launch rocket nasa moon"}])
    quoted = "train%2Fsci.space%2F61228"
    for path in (f"/v1/documents/{doc_id}", f"/v1/documents/{quoted}"):
        assert client.get(path).json()["id"] == doc_id
    similar = client.get(f"/v1/documents/{quoted}/similar", params={"nearest": True})
    assert similar.status_code == 200, similar.text
    assert client.delete(f"/v1/documents/{quoted}").json()["deleted"] == [doc_id]
    assert client.get(f"/v1/documents/{doc_id}").status_code == 404
