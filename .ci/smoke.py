"""CI smoke test of the compose deployment, run by ../shared/tools/docker-check once every
container is healthy (COMPOSE_PROFILES=cluster: the single SQLite container and the cluster).

Single container (API_PORT): writes need the key, search answers 409 before a model exists, a
32-bit model trained through the API finds each sampled post in its own bucket.
Cluster (HOST_PORT, nginx in front of three replicas over PostgreSQL): ingest and train through
the load balancer, every replica switches to the trained model, searches find the posts, and
searches still answer with one replica stopped.
"""

from __future__ import annotations

import os
import subprocess
import time

import httpx

from docbits.model.corpus import Document, load_corpus

GROUPS = ("sci.space", "rec.autos", "comp.graphics", "talk.politics.guns")
PER_GROUP = 50
REPLICAS = 3


def sample_posts() -> list[Document]:
    corpus = os.environ.get("DOCBITS_20NEWS", "../shared/data/20news-bydate.tar.xz")
    picked: dict[str, list[Document]] = {group: [] for group in GROUPS}
    for doc in load_corpus(corpus):
        group = doc.labels[0]
        if doc.split == "train" and group in picked and len(picked[group]) < PER_GROUP:
            picked[group].append(doc)
    return [doc for group in GROUPS for doc in picked[group]]


def client(port: str) -> httpx.Client:
    key = os.environ["DOCBITS_API_KEY"]
    return httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def train(api: httpx.Client) -> dict:
    """Start a 32-bit training job and wait for its end (any replica answers from the store)."""
    job = api.post("/v1/model/train", json={"bits": 32, "epochs": 10})
    assert job.status_code in (200, 201, 202), job.text
    deadline = time.monotonic() + 300
    while (status := api.get(f"/v1/model/jobs/{job.json()['id']}").json())["status"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline, f"training did not finish in 300 s: {status}"
        time.sleep(2)
    assert status["status"] == "succeeded", status
    print(f"smoke: trained on {status['documents']} documents, model {status['fingerprint'][:12]}")
    return status


def check_own_buckets(api: httpx.Client, docs: list[Document], fingerprint: str) -> None:
    """Each sampled post's text finds the post at distance 0, from the trained model."""
    ingested = {doc.id for doc in docs}
    for doc in docs[:: PER_GROUP // 2]:
        found = api.post("/v1/search", json={"q": doc.text, "radius": 0, "limit": len(docs)})
        assert found.status_code == 200, found.text
        body = found.json()
        assert body["model_fingerprint"] == fingerprint, body["model_fingerprint"]
        hits = body["hits"]
        assert {hit["id"] for hit in hits} <= ingested, hits
        assert doc.id in {hit["id"] for hit in hits if hit["distance"] == 0}, (doc.id, hits[:3])
    print(f"smoke: {len(docs[:: PER_GROUP // 2])} posts found in their own buckets")


def single(docs: list[Document]) -> None:
    batch = [{"id": d.id, "text": d.text, "metadata": {"group": d.labels[0]}} for d in docs]
    with client(os.environ["API_PORT"]) as api:
        anonymous = api.post(
            "/v1/documents", json={"documents": batch[:1]}, headers={"Authorization": ""}
        )
        assert anonymous.status_code == 401, anonymous.text
        ingested = api.post("/v1/documents", json={"documents": batch})
        assert ingested.status_code == 200, ingested.text
        assert [d["id"] for d in ingested.json()["documents"]] == [d.id for d in docs]
        untrained = api.get("/v1/search", params={"q": docs[0].text[:500]})
        assert untrained.status_code == 409, untrained.text
        check_own_buckets(api, docs, train(api)["fingerprint"])


def cluster(docs: list[Document]) -> None:
    batch = [{"id": d.id, "text": d.text, "metadata": {"group": d.labels[0]}} for d in docs]
    with client(os.environ["HOST_PORT"]) as api:
        for start in range(0, len(batch), 50):  # several requests, so several replicas write
            written = api.post("/v1/documents", json={"documents": batch[start : start + 50]})
            assert written.status_code == 200, written.text
        fingerprint = train(api)["fingerprint"]
        deadline = time.monotonic() + 120
        while True:  # every replica switches when it reads the model change from the store
            seen = {api.get("/v1/info").json()["model_fingerprint"] for _ in range(3 * REPLICAS)}
            if seen == {fingerprint}:
                break
            assert time.monotonic() < deadline, f"replicas still serve {seen}"
            time.sleep(1)
        check_own_buckets(api, docs, fingerprint)
        replica = subprocess.run(
            ["docker", "ps", "-q", "--filter", "label=com.docker.compose.service=replica"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert len(replica) == REPLICAS, replica
        subprocess.run(["docker", "stop", replica[0]], check=True, capture_output=True)
        print("smoke: stopped one replica")
        for _ in range(4 * REPLICAS):
            found = api.get("/v1/search", params={"q": docs[0].text[:500], "nearest": True})
            assert found.status_code == 200, found.text
        print("smoke: the cluster still answers with a replica stopped")


if __name__ == "__main__":
    posts = sample_posts()
    single(posts)
    if "cluster" in os.environ.get("COMPOSE_PROFILES", ""):
        cluster(posts)
