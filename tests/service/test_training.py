"""Training through the service: autotrain at the threshold, failures reported, job errors."""

from __future__ import annotations

import json
import queue
import sqlite3
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from docbits.index.store import SQLiteStore, StoredDocument
from docbits.service.training import train_worker
from tests.service.conftest import open_client


def wait_for_job(client: TestClient, job_id: str, timeout: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/model/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def test_training_starts_by_itself_at_the_threshold_and_switches(
    tmp_path: Path, corpus: list[dict[str, Any]]
) -> None:
    client = open_client(tmp_path, train_bits=16, train_epochs=2, train_variant="undercomplete")
    client.app.state.settings.autotrain_min_docs = 60
    try:
        client.post("/v1/documents", json={"documents": corpus[:59]})
        assert client.get("/v1/info").json()["training_job"] is None
        client.post("/v1/documents", json={"documents": corpus[59:80]})
        job = client.get("/v1/info").json()["training_job"]
        assert job is not None
        done = wait_for_job(client, job["id"])
        assert done["status"] == "succeeded", done["error"]
        assert done["documents"] == 80
        info = client.get("/v1/info").json()
        assert info["model_fingerprint"] == done["fingerprint"]
        model_dir = tmp_path / "models" / done["fingerprint"]
        trained = json.loads((model_dir / "config.json").read_text())
        assert trained["train"]["time_budget_s"] == 240.0  # the service's default budget
        stored = client.get(f"/v1/documents/{corpus[0]['id']}").json()
        assert stored["model_fingerprint"] == done["fingerprint"] and stored["code"]
        hits = client.get("/v1/search", params={"q": corpus[0]["text"], "limit": 100}).json()
        assert corpus[0]["id"] in {hit["id"] for hit in hits["hits"]}
        assert 'docbits_training_jobs_total{status="succeeded"} 1.0' in client.get("/metrics").text
    finally:
        client.__exit__(None, None, None)


def test_the_service_retrains_once_its_documents_have_doubled(
    tmp_path: Path, corpus: list[dict[str, Any]]
) -> None:
    """The first model trains on 60 documents; 119 stored start nothing, 120 start a second
    job, whose record and model both say it trained on all 120, and whose model is served."""
    client = open_client(
        tmp_path, train_bits=16, train_epochs=2, train_variant="undercomplete", retrain_growth=2
    )
    client.app.state.settings.autotrain_min_docs = 60
    try:
        client.post("/v1/documents", json={"documents": corpus[:60]})
        first = wait_for_job(client, client.get("/v1/info").json()["training_job"]["id"])
        assert first["status"] == "succeeded" and first["documents"] == 60, first
        client.post("/v1/documents", json={"documents": corpus[60:119]})
        assert client.get("/v1/info").json()["training_job"]["id"] == first["id"]
        client.post("/v1/documents", json={"documents": corpus[119:120]})
        second = client.get("/v1/info").json()["training_job"]
        assert second["id"] != first["id"]
        second = wait_for_job(client, second["id"])
        assert second["status"] == "succeeded" and second["documents"] == 120, second
        model = client.get("/v1/model").json()
        assert model["model_fingerprint"] == second["fingerprint"] != first["fingerprint"]
        assert model["config"]["corpus"]["documents"] == 120
        hits = client.get("/v1/search", params={"q": corpus[100]["text"], "limit": 100}).json()
        assert corpus[100]["id"] in {hit["id"] for hit in hits["hits"]}
    finally:
        client.__exit__(None, None, None)


def test_a_failed_training_job_reports_its_error_and_keeps_the_service_up(
    tmp_path: Path,
) -> None:
    client = open_client(tmp_path, train_bits=16, train_epochs=1)
    try:
        assert client.post("/v1/model/train").json()["error"]["code"] == "no_documents"
        only_stop_words = [{"text": "the of and"}, {"text": "a to in"}, {"text": "is it that"}]
        client.post("/v1/documents", json={"documents": only_stop_words})
        response = client.post("/v1/model/train", json={"epochs": 1})
        assert response.status_code == 202
        done = wait_for_job(client, response.json()["id"])
        assert done["status"] == "failed"
        assert "ValueError" in done["error"]
        assert client.get("/v1/search", params={"q": "the"}).status_code == 409
        assert client.get("/v1/model/jobs/job-unknown").status_code == 404
    finally:
        client.__exit__(None, None, None)


def test_a_worker_that_lost_its_lease_stores_no_model(
    tmp_path: Path, corpus: list[dict[str, Any]]
) -> None:
    """Trained, but the job is no longer leased to its service (it lapsed, another process took
    over): the worker reports a failure and stores nothing."""
    store = SQLiteStore(tmp_path / "docbits.sqlite3")
    try:
        store.upsert([StoredDocument(doc["id"], doc["text"]) for doc in corpus[:120]])
        store.claim_training_job("job-lapsed", {}, "another process", lease_s=60)
        events: queue.Queue = queue.Queue()
        config = {"bits": 16, "epochs": 1, "variant": "undercomplete", "hidden_sizes": [16]}
        train_worker(None, str(tmp_path), config, "job-lapsed", "this process", events)
        reported = [events.get_nowait() for _ in range(events.qsize())]
        assert [event["event"] for event in reported] == ["started", "epoch", "failed"]
        assert "no longer leased" in reported[-1]["error"]
        assert store.count() == 120
        with sqlite3.connect(tmp_path / "docbits.sqlite3") as connection:
            assert connection.execute("SELECT COUNT(*) FROM models").fetchone() == (0,)
    finally:
        store.close()
