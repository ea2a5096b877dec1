"""`/v1/search`, `/similar` and `/v1/buckets`: buckets, balls, nearest, paging, filters, batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def indexed(client: TestClient, corpus: list[dict[str, Any]]) -> TestClient:
    response = client.post("/v1/documents", json={"documents": corpus})
    assert response.status_code == 200, response.text
    return client


def codes_of(client: TestClient, ids: list[str]) -> dict[str, str]:
    return {doc_id: client.get(f"/v1/documents/{doc_id}").json()["code"] for doc_id in ids}


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def test_radius_zero_returns_exactly_the_query_bucket(
    indexed: TestClient, corpus: list[dict[str, Any]]
) -> None:
    doc = corpus[5]
    body = indexed.get("/v1/search", params={"q": doc["text"], "limit": 1000}).json()
    assert body["query_code"] == codes_of(indexed, [doc["id"]])[doc["id"]]
    assert body["model_fingerprint"] == indexed.get("/v1/info").json()["model_fingerprint"]
    bucket = indexed.get(f"/v1/buckets/{body['query_code']}", params={"limit": 1000}).json()
    assert [hit["id"] for hit in body["hits"]] == [m["id"] for m in bucket["documents"]]
    assert body["candidates"] == bucket["size"] == len(body["hits"])
    assert doc["id"] in {hit["id"] for hit in body["hits"]}
    assert all(hit["distance"] == 0 and hit["score"] == 1.0 for hit in body["hits"])


def test_ball_is_ranked_by_distance_and_matches_brute_force(
    indexed: TestClient, corpus: list[dict[str, Any]]
) -> None:
    query = corpus[0]["text"]
    body = indexed.get("/v1/search", params={"q": query, "radius": 2, "limit": 1000}).json()
    codes = codes_of(indexed, [d["id"] for d in corpus])
    expected = {i for i, code in codes.items() if hamming(code, body["query_code"]) <= 2}
    assert {hit["id"] for hit in body["hits"]} == expected
    distances = [hit["distance"] for hit in body["hits"]]
    assert distances == sorted(distances)
    for hit in body["hits"]:
        assert hit["distance"] == hamming(codes[hit["id"]], body["query_code"])
        assert hit["score"] == pytest.approx(1 - hit["distance"] / 16)


def test_nearest_returns_limit_hits_and_pages_with_offset(
    indexed: TestClient, corpus: list[dict[str, Any]]
) -> None:
    """Hamming order pages with any limit; rescored pages of one limit never overlap and keep
    their scores in order across the rescoring window (4 x limit)."""
    rescored = {"q": corpus[1]["text"], "nearest": True, "limit": 10}
    pages = [
        indexed.get("/v1/search", params={**rescored, "offset": offset}).json()["hits"]
        for offset in (0, 10, 20, 30, 40)
    ]
    ids = [hit["id"] for page in pages for hit in page]
    assert len(ids) == len(set(ids)) == 50
    scores = [hit["form_score"] for page in pages[:4] for hit in page]
    assert scores == sorted(scores, reverse=True)
    assert all(hit["form_score"] is None for hit in pages[4])
    params = {"q": corpus[1]["text"], "nearest": True, "limit": 30, "rescore": False}
    first = indexed.get("/v1/search", params=params).json()["hits"]
    assert len(first) == 30
    page = indexed.get("/v1/search", params={**params, "limit": 10, "offset": 10}).json()["hits"]
    assert [h["id"] for h in page] == [h["id"] for h in first[10:20]]
    codes = codes_of(indexed, [d["id"] for d in corpus])
    query_code = indexed.get("/v1/search", params=params).json()["query_code"]
    cutoff = first[-1]["distance"]
    closer = [i for i, c in codes.items() if hamming(c, query_code) < cutoff]
    assert set(closer) <= {h["id"] for h in first}


def test_nearest_is_rescored_by_the_stored_forms_unless_asked_not_to(
    indexed: TestClient, corpus: list[dict[str, Any]]
) -> None:
    """A nearest search takes 4 x the page's candidates from the codes and ranks them by the
    cosine of their packed forms with the query's; the same forms recomputed from the texts
    agree."""
    from docbits.index.forms import pack_forms, unpack_forms
    from docbits.model.rescore import form_scores

    hasher = indexed.app.state.service.active.hasher
    texts = {doc["id"]: doc["text"] for doc in corpus}
    query = corpus[7]["text"] + " " + corpus[130]["text"]
    body = indexed.get("/v1/search", params={"q": query, "nearest": True, "limit": 5}).json()
    assert body["candidates"] == 20  # the rescoring window, 4 x limit
    scores = [hit["form_score"] for hit in body["hits"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    ids = [hit["id"] for hit in body["hits"]]
    _, forms = hasher.encode_with_forms([query] + [texts[doc_id] for doc_id in ids])
    values = unpack_forms(pack_forms(forms))
    assert np.allclose(form_scores(values[0], values[1:]), scores)
    plain = {"q": query, "nearest": True, "limit": 5, "rescore": False}
    hits = indexed.get("/v1/search", params=plain).json()["hits"]
    assert all(hit["form_score"] is None for hit in hits)
    assert [hit["distance"] for hit in hits] == sorted(hit["distance"] for hit in hits)
    ball = indexed.get("/v1/search", params={"q": query, "radius": 2}).json()["hits"]
    assert all(hit["form_score"] is None for hit in ball)
    similar = indexed.get(f"/v1/documents/{ids[0]}/similar", params={"nearest": True}).json()
    similar_scores = [hit["form_score"] for hit in similar["hits"]]
    assert similar_scores == sorted(similar_scores, reverse=True)


def test_snippet_by_default_and_full_text_on_request(
    indexed: TestClient, corpus: list[dict[str, Any]]
) -> None:
    doc = corpus[2]
    plain = indexed.get("/v1/search", params={"q": doc["text"], "limit": 1000}).json()
    hit = next(h for h in plain["hits"] if h["id"] == doc["id"])
    assert hit["text"] is None and doc["text"].startswith(hit["snippet"].rstrip("…"))
    full = indexed.get(
        "/v1/search", params={"q": doc["text"], "limit": 1000, "include_text": True}
    ).json()
    hit = next(h for h in full["hits"] if h["id"] == doc["id"])
    assert hit["text"] == doc["text"] and hit["snippet"] is None
    assert hit["metadata"] == doc["metadata"]


def test_filter_is_applied_while_collecting_not_after(
    indexed: TestClient, corpus: list[dict[str, Any]]
) -> None:
    space_query = next(d for d in corpus if d["metadata"]["topic"] == "space")["text"]
    body = {"q": space_query, "nearest": True, "limit": 5, "filter": {"topic": "hockey"}}
    hits = indexed.post("/v1/search", json=body).json()["hits"]
    assert len(hits) == 5
    assert all(hit["metadata"]["topic"] == "hockey" for hit in hits)
    either = {**body, "filter": {"topic": ["hockey", "medicine"]}, "limit": 200}
    topics = {
        h["metadata"]["topic"] for h in indexed.post("/v1/search", json=either).json()["hits"]
    }
    assert topics == {"hockey", "medicine"}


def test_batch_search_answers_each_query_in_order(
    indexed: TestClient, corpus: list[dict[str, Any]]
) -> None:
    queries = [d["text"] for d in corpus[:4]]
    batch = indexed.post("/v1/search", json={"queries": queries, "radius": 1, "limit": 50}).json()
    assert len(batch["results"]) == 4
    for query, result in zip(queries, batch["results"], strict=True):
        single = indexed.get("/v1/search", params={"q": query, "radius": 1, "limit": 50}).json()
        assert result == single


def test_post_search_needs_exactly_one_of_q_and_queries(indexed: TestClient) -> None:
    for body in ({}, {"q": "orbit", "queries": ["puck"]}):
        response = indexed.post("/v1/search", json=body)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "validation_error"


def test_radius_and_limit_caps(indexed: TestClient) -> None:
    response = indexed.get("/v1/search", params={"q": "orbit", "radius": 4})
    assert response.status_code == 422
    assert "cap of 3" in response.json()["error"]["message"]
    response = indexed.get("/v1/search", params={"q": "orbit", "limit": 5000})
    assert response.status_code == 422
    assert response.json()["error"]["details"] == {"max_limit": 1000}


def test_similar_leaves_the_document_out(indexed: TestClient, corpus: list[dict[str, Any]]) -> None:
    doc_id = corpus[3]["id"]
    hits = indexed.get(f"/v1/documents/{doc_id}/similar", params={"nearest": True, "limit": 20})
    assert hits.status_code == 200
    ids = [h["id"] for h in hits.json()["hits"]]
    assert len(ids) == 20 and doc_id not in ids
    assert indexed.get("/v1/documents/nope/similar").status_code == 404


def test_bucket_rejects_bad_codes(indexed: TestClient) -> None:
    for bad in ("xyz", "abc", "0123456789"):
        response = indexed.get(f"/v1/buckets/{bad}")
        assert response.status_code == 422, bad
        assert response.json()["error"]["code"] == "invalid_code"


def test_search_without_a_model_is_409_saying_how_to_train(
    bare_client: TestClient, corpus: list[dict[str, Any]]
) -> None:
    ingested = bare_client.post("/v1/documents", json={"documents": corpus[:7]}).json()
    assert ingested["model_fingerprint"] is None
    assert all(d["code"] is None for d in ingested["documents"])
    response = bare_client.get("/v1/search", params={"q": "orbit"})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "no_model"
    assert "7 documents are stored" in error["message"]
    assert "POST /v1/model/train" in error["message"]
    assert bare_client.get("/v1/documents/x/similar").status_code == 409
    assert bare_client.get("/v1/buckets/00ff").status_code == 409


def test_bodies_follow_the_documented_schemas_exactly(
    indexed: TestClient, corpus: list[dict[str, Any]]
) -> None:
    """The handlers serialise plain dicts; each must be what the response model would write."""
    from docbits.service.schemas import BatchSearchResponse, SearchResponse

    query = {"q": corpus[2]["text"], "radius": 2, "limit": 5}
    bodies = [
        indexed.get("/v1/search", params=query).json(),
        indexed.post("/v1/search", json={**query, "include_text": True}).json(),
        indexed.get(f"/v1/documents/{corpus[2]['id']}/similar", params={"radius": 2}).json(),
    ]
    for body in bodies:
        assert body["hits"], "the check needs hits"
        assert SearchResponse.model_validate(body).model_dump(mode="json") == body
    batch = indexed.post("/v1/search", json={"queries": [query["q"]] * 2, "nearest": True}).json()
    assert BatchSearchResponse.model_validate(batch).model_dump(mode="json") == batch
    spec = indexed.get("/openapi.json").json()["paths"]["/v1/search"]["get"]["responses"]["200"]
    assert spec["content"]["application/json"]["schema"]["$ref"].endswith("/SearchResponse")


def test_get_search_parameters_are_validated_and_documented(indexed: TestClient) -> None:
    """GET /v1/search validates its query string itself: same 422 shape, same OpenAPI entries."""
    cases = [({}, "q", "missing"), ({"q": "x", "limit": 0}, "limit", "greater_than_equal")]
    cases += [({"q": "x", "nearest": "maybe"}, "nearest", "bool_parsing")]
    for params, field, kind in cases:
        response = indexed.get("/v1/search", params=params)
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert error["details"]["errors"][0]["location"] == ["query", field]
        assert error["details"]["errors"][0]["type"] == kind
    as_strings = {"q": "orbit", "nearest": "true", "limit": "3"}
    assert len(indexed.get("/v1/search", params=as_strings).json()["hits"]) == 3
    spec = indexed.get("/openapi.json").json()["paths"]["/v1/search"]["get"]["parameters"]
    documented = {parameter["name"]: parameter for parameter in spec}
    assert set(documented) == {
        "q",
        "radius",
        "limit",
        "offset",
        "nearest",
        "rescore",
        "include_text",
        "min_seq",
    }
    assert documented["q"]["required"] and documented["q"]["schema"]["examples"]
    assert documented["radius"]["description"].startswith("Hamming radius")
