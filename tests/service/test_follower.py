"""Several services over one store, in one test process: each follows the store's change feed.

Each test runs on the SQLite file (two services sharing the data folder, as `--workers` does) and
on PostgreSQL (two services with data folders of their own, as on two machines with no shared
volume: models travel through the store).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from docbits.index.store import ACTIVE_MODEL_SETTING, ModelArtifact
from docbits.service.client import DocbitsClient, DocbitsError
from docbits.service.follower import LagClock, apply_changes
from docbits.service.models import ActiveModel
from docbits.service.state import ServiceState
from tests.service.conftest import open_client


@dataclass
class Cluster:
    """Services over one store; `data_dirs[i]` is service i's data folder."""

    clients: list[TestClient]
    data_dirs: list[Path]

    def state(self, number: int) -> ServiceState:
        return self.clients[number].app.state.service

    def add(self, **overrides: Any) -> TestClient:
        """One more service over the same store."""
        first = self.state(0).settings
        data_dir = (
            self.data_dirs[0]
            if first.store_url is None
            else self.data_dirs[0].parent / (f"node{len(self.clients)}")
        )
        url = first.store_url and first.store_url.get_secret_value()
        client = open_client(data_dir, store_url=url, **overrides)
        self.clients.append(client)
        self.data_dirs.append(data_dir)
        return client


@pytest.fixture(params=["sqlite", "postgres"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path, model_dir: Path) -> Iterator[Cluster]:
    """Two services over one fresh store; the first imported the tiny model."""
    url = None
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        url = server.create_database()
    first_dir = tmp_path / "node0"
    made = Cluster([open_client(first_dir, store_url=url, model_path=model_dir)], [first_dir])
    try:
        made.add()
        yield made
    finally:
        for client in made.clients:
            client.__exit__(None, None, None)
        if url is not None:
            server.drop_database(url)


def ingest(client: TestClient, docs: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post("/v1/documents", json={"documents": docs})
    assert response.status_code == 200, response.text
    return response.json()


def search_ids(client: TestClient, text: str, **params: Any) -> list[str]:
    response = client.get(
        "/v1/search", params={"q": text, "nearest": "true", "limit": 50, **params}
    )
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["hits"]]


def assert_index_matches_store(state: ServiceState) -> None:
    """The service's index holds exactly the store's codes of its model, id by id."""
    active = state.active
    assert active is not None
    assert state.store.get_setting(ACTIVE_MODEL_SETTING) == active.fingerprint
    report = state.store.integrity_check(active.index, active.fingerprint)
    assert report.ok, report


def test_each_service_sees_the_others_writes_and_answers_alike(
    cluster: Cluster, corpus: list[dict[str, Any]]
) -> None:
    """A write is searchable on its own service when acknowledged; on the other once it has
    applied the write's `seq` (min_seq waits for that); both then give identical answers, and
    each index holds exactly the store's codes."""
    a, b = cluster.clients
    written = ingest(a, corpus[:40])
    assert written["seq"] == 40 + 1  # the model switch was change 1
    assert corpus[0]["id"] in search_ids(a, corpus[0]["text"])  # read-your-writes, no wait
    assert corpus[0]["id"] in search_ids(b, corpus[0]["text"], min_seq=written["seq"])
    more = ingest(b, corpus[40:80])
    deleted = b.post("/v1/documents/delete", json={"ids": [d["id"] for d in corpus[:5]]}).json()
    assert deleted["seq"] == more["seq"] + 5
    for doc in corpus[:80:7]:
        assert search_ids(a, doc["text"], min_seq=deleted["seq"]) == search_ids(b, doc["text"])
    assert corpus[0]["id"] not in search_ids(a, corpus[0]["text"])
    for client in (a, b):
        feed = client.get("/v1/info", params={}).json()["feed"]
        assert feed["applied_seq"] == feed["store_seq"] == deleted["seq"]
        assert feed["lag_changes"] == 0
    assert cluster.state(0).follower.wait_for(deleted["seq"], 5)
    for number in (0, 1):
        assert_index_matches_store(cluster.state(number))
    assert (
        a.get(f"/v1/documents/{corpus[50]['id']}", params={"min_seq": more["seq"]}).json()["text"]
        == corpus[50]["text"]
    )


def test_min_seq_waits_then_answers_503_with_a_retry_hint_or_422_beyond_the_store(
    cluster: Cluster, corpus: list[dict[str, Any]]
) -> None:
    a, b = cluster.clients
    cluster.state(1).settings.min_seq_wait_s = 0.3
    cluster.state(1).follower.stop()  # b stops following: it can only fall behind
    written = ingest(a, corpus[:10])
    started = time.monotonic()
    behind = b.get("/v1/search", params={"q": "orbit", "min_seq": written["seq"]})
    assert time.monotonic() - started >= 0.3
    assert behind.status_code == 503 and behind.headers["Retry-After"] == "1"
    error = behind.json()["error"]
    assert error["code"] == "catching_up" and error["details"]["min_seq"] == written["seq"]
    assert f"not yet {written['seq']}" in error["message"]
    for route in (f"/v1/documents/{corpus[0]['id']}", "/v1/buckets/00ff"):
        assert b.get(route, params={"min_seq": written["seq"]}).status_code == 503
    similar = b.get(f"/v1/documents/{corpus[0]['id']}/similar", params={"min_seq": 999})
    assert similar.status_code == 422 and "beyond the store's newest" in similar.text
    body = {"q": "orbit", "min_seq": written["seq"]}
    assert b.post("/v1/search", json=body).status_code == 503
    assert b.get("/v1/search", params={"q": "orbit", "min_seq": -1}).status_code == 422
    cluster.state(1).follower.catch_up()
    assert b.post("/v1/search", json=body).status_code == 200
    assert b.get("/readyz").status_code == 200


def test_readyz_fails_while_a_service_lags_past_the_bound(
    cluster: Cluster, corpus: list[dict[str, Any]]
) -> None:
    """/readyz counts the lag from when a change was first seen in the store: green at first,
    503 once it has waited longer than DOCBITS_READY_MAX_LAG_S, green again once applied."""
    a, b = cluster.clients
    state_b = cluster.state(1)
    state_b.settings.ready_max_lag_s = 0.3
    state_b.follower.stop()
    written = ingest(a, corpus[:5])
    assert b.get("/readyz").status_code == 200  # seen just now
    time.sleep(0.4)
    lagging = b.get("/readyz")
    assert lagging.status_code == 503 and "lagging: 5 changes behind" in lagging.text
    assert lagging.json()["error"]["details"]["applied_seq"] == written["seq"] - 5
    metrics = b.get("/metrics").text
    assert "docbits_feed_lag_changes 5.0" in metrics
    assert f"docbits_feed_store_seq {written['seq']}.0" in metrics
    assert 'docbits_feed_wakeups_total{cause="notified"}' in metrics
    assert 'docbits_feed_reloads_total{reason="start"} 1.0' in metrics
    if state_b.settings.store_url is not None:  # PostgreSQL's connection pool
        assert 'docbits_store_pool_connections{state="max"} 10.0' in metrics
    state_b.follower.catch_up()
    assert b.get("/readyz").status_code == 200
    assert "docbits_feed_lag_seconds 0.0" in b.get("/metrics").text


def test_a_model_switch_reaches_every_service_whole(
    cluster: Cluster, corpus: list[dict[str, Any]], other_model_dir: Path
) -> None:
    """A model switched on one service (stored in the store, codes re-encoded, flipped in one
    transaction) is served by every service, each with exactly the new model's codes; a writer
    still encoding with the old model re-encodes rather than store old codes."""
    a, b = cluster.clients
    ingest(a, corpus[:60])
    old = a.get("/v1/model").json()["model_fingerprint"]
    state_a = cluster.state(0)
    new = state_a.shelf.import_model(other_model_dir).fingerprint
    state_a.activate(new)
    assert a.get("/v1/model").json()["model_fingerprint"] == new != old
    late = ingest(b, corpus[60:80])  # b may still hold the old model: it must re-encode
    assert late["model_fingerprint"] == new
    assert b.get("/v1/info", params={}).json()["model_fingerprint"] == new
    for number in (0, 1):
        assert cluster.state(number).follower.wait_for(late["seq"], 5)
        assert_index_matches_store(cluster.state(number))
    assert search_ids(a, corpus[65]["text"]) == search_ids(b, corpus[65]["text"])
    if cluster.state(0).settings.store_url is not None:  # b fetched the model from the store
        assert (cluster.data_dirs[1] / "models" / new / "model.safetensors").exists()


def test_a_service_started_later_or_after_a_gap_loads_the_store_as_it_is(
    cluster: Cluster, corpus: list[dict[str, Any]]
) -> None:
    """A third service starting cold, and one whose feed position was compacted away, both end
    with exactly the store's documents and codes."""
    a = cluster.clients[0]
    ingest(a, corpus[:30])
    state_b = cluster.state(1)
    state_b.follower.stop()
    ingest(a, corpus[30:50])
    a.post("/v1/documents/delete", json={"ids": [corpus[31]["id"], corpus[2]["id"]]})
    store = cluster.state(0).store
    store.compact_feed(store.last_seq() + 1)
    state_b.follower.catch_up()  # FeedGapError inside: it reloads
    assert state_b.follower.applied_seq == store.last_seq()
    assert state_b.metrics.feed_reloads.labels("gap")._value.get() == 1
    c = cluster.add()
    for state in (state_b, cluster.state(2)):
        assert_index_matches_store(state)
        assert len(state.active.index) == 48
    assert search_ids(c, corpus[40]["text"]) == search_ids(a, corpus[40]["text"])


# PostgreSQL only: the lease itself is in the store's contract tests, on both backends.
@pytest.mark.parametrize("cluster", ["postgres"], indirect=True)
def test_one_training_job_at_a_time_across_services(
    cluster: Cluster, corpus: list[dict[str, Any]]
) -> None:
    """A job leased to a process that died blocks training everywhere until its lease lapses,
    then fails. Automatic retraining starts one job on the service that crosses the threshold; the
    other shows it with its progress, refuses a second one and starts none by itself; both
    serve the trained model after it."""
    a, b = cluster.clients
    for number in (0, 1):
        settings = cluster.state(number).settings
        settings.retrain_growth = 0.5  # the served model learned from 240 documents: at 120
        cluster.state(number).trainer._default_config.update(epochs=2, bits=16)
    ingest(b, corpus[:100])
    store = cluster.state(0).store
    store.claim_training_job("job-ghost", {}, "a process that died", lease_s=1.0)
    refused = b.post("/v1/model/train", json={"epochs": 2, "bits": 16})
    assert refused.status_code == 409 and "job-ghost" in refused.text
    time.sleep(1.1)
    assert b.get("/v1/model/jobs/job-ghost").json()["status"] == "failed"
    written = ingest(a, corpus[100:120])  # a crosses the threshold: it starts the job
    job_id = a.get("/v1/info").json()["training_job"]["id"]
    assert job_id != "job-ghost"
    assert cluster.state(1).follower.wait_for(written["seq"], 5)
    ingest(b, corpus[120:130])  # b is past the threshold too, but a job exists
    second = b.post("/v1/model/train", json={"epochs": 2})
    assert second.status_code == 409 and job_id in second.text
    deadline = time.monotonic() + 180
    while (job := b.get(f"/v1/model/jobs/{job_id}").json())["status"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["status"] == "succeeded", job
    assert 120 <= job["documents"] <= 130 and job["progress"]["epoch"] >= 1
    assert cluster.state(1).trainer._latest is None  # b never started one
    for number, client in enumerate((a, b)):
        assert cluster.state(number).follower.wait_for(store.last_seq(), 10)
        assert client.get("/v1/model").json()["model_fingerprint"] == job["fingerprint"]
        assert_index_matches_store(cluster.state(number))


def test_the_python_client_passes_seq_and_min_seq(
    cluster: Cluster, corpus: list[dict[str, Any]]
) -> None:
    a, b = (DocbitsClient(str(client.base_url)) for client in cluster.clients)
    # Each client talks through its app's TestClient, whichever httpx package Starlette picked
    # (it prefers httpx2 where installed, whose responses httpx's own client refuses).
    a.http, b.http = cluster.clients
    written = a.ingest(corpus[:12])
    code = written.documents[0].code
    assert b.get_document(corpus[0]["id"], min_seq=written.seq).code == code
    assert corpus[0]["id"] in {
        member.id for member in b.bucket(code, min_seq=written.seq).documents
    }
    hits = b.search(corpus[0]["text"], nearest=True, limit=12, min_seq=written.seq).hits
    assert corpus[0]["id"] in {hit.id for hit in hits}
    assert b.similar(corpus[0]["id"], nearest=True, min_seq=written.seq).hits
    deleted = b.delete_documents([corpus[0]["id"]])
    assert deleted.seq == written.seq + 1
    assert a.info().feed.applied_seq >= written.seq
    with pytest.raises(DocbitsError) as refused:
        a.get_document(corpus[0]["id"], min_seq=deleted.seq + 5)
    assert (refused.value.status, refused.value.code) == (422, "validation_error")


# ---- the pieces, on their own ------------------------------------------------------------------


class _Hasher:
    fingerprint = "m" * 64
    bits = 16


def test_apply_changes_stops_before_a_model_change_and_keeps_feed_order() -> None:
    from docbits.index.hash_index import HashIndex
    from docbits.index.store import Change

    def upsert(seq: int, doc_id: str, code: int, fingerprint: str = _Hasher.fingerprint):
        return Change(seq, "upsert", doc_id, code.to_bytes(2, "big"), fingerprint, 0.0)

    active = ActiveModel(_Hasher(), HashIndex(16))  # type: ignore[arg-type]
    changes = [
        upsert(1, "a", 1),
        upsert(2, "b", 1),
        Change(3, "delete", "a", None, None, 0.0),
        upsert(4, "c", 1),
        upsert(5, "b", 2, fingerprint="old model"),  # another model's code: out of the index
        upsert(6, "a", 1),
        Change(7, "model", None, None, "n" * 64, 0.0),
        upsert(8, "d", 1),
    ]
    assert apply_changes(active, changes) == 6
    assert active.index.bucket(b"\x00\x01") == ["c", "a"]  # a came back after c
    assert active.index.code_of("b") is None and active.index.code_of("d") is None
    assert apply_changes(None, changes[:3]) == 3


def test_apply_changes_puts_each_change_form_in_the_index() -> None:
    """The int8 form an upsert change carries lands packed beside its code; a change without
    one (written before the feed carried forms) leaves zeros."""
    from docbits.index.forms import pack_forms
    from docbits.index.hash_index import HashIndex
    from docbits.index.store import Change

    forms = np.arange(-64, 64, 4, dtype=np.int8).reshape(2, 16)
    fingerprint = _Hasher.fingerprint
    active = ActiveModel(_Hasher(), HashIndex(16))  # type: ignore[arg-type]
    changes = [
        Change(1, "upsert", "a", b"\x00\x01", fingerprint, 0.0, forms[0].tobytes()),
        Change(2, "upsert", "b", b"\x00\x01", fingerprint, 0.0, None),
        Change(3, "upsert", "a", b"\x00\x02", fingerprint, 0.0, forms[1].tobytes()),
    ]
    assert apply_changes(active, changes) == 3
    np.testing.assert_array_equal(active.index.form_of("a"), pack_forms(forms[1:]))
    assert not active.index.form_of("b").any()


def test_the_lag_clock_times_the_oldest_change_seen_and_not_applied() -> None:
    clock = LagClock()
    assert clock.seconds() == 0 and clock.changes() == 0
    clock.saw(5)
    time.sleep(0.05)
    clock.saw(9)
    assert clock.changes() == 9 and clock.seconds() >= 0.05
    clock.applied(5)
    assert clock.changes() == 4 and clock.seconds() < 0.05
    clock.applied(9)
    assert clock.changes() == 0 and clock.seconds() == 0


def test_an_imported_model_is_published_to_the_store(tmp_path: Path, model_dir: Path) -> None:
    client = open_client(tmp_path, model_path=model_dir)
    try:
        artifact = ModelArtifact.from_directory(model_dir)
        assert client.app.state.service.store.get_model(artifact.fingerprint) == artifact
    finally:
        client.__exit__(None, None, None)
