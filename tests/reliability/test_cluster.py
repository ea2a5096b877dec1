"""Several `docbits serve` processes over one PostgreSQL database, and `--workers` over one SQLite
file: real servers on 127.0.0.1, real HTTP, a real PostgreSQL started by the tests, real faults.

After every test each process's index must hold exactly the store's documents with their codes,
compared id by id through the API (every stored id in its code's bucket, and no more ids indexed
than stored), and the store's feed must be dense.
"""

from __future__ import annotations

import hashlib
import random
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from docbits.index.store import ACTIVE_MODEL_SETTING
from docbits.index.store.postgres import PostgresStore
from docbits.index.store.sqlite import SQLiteStore
from tests.postgres_server import PostgresServer
from tests.reliability.conftest import (
    Server,
    free_port,
    start_server,
    topical_documents,
    wait_until_ready,
)
from tests.reliability.test_crash import bucket_members, wait_for_group_to_exit

LAG_BOUND_S = 2.0  # a write on one process is applied on the others within this (loaded CI)


@dataclass
class Cluster:
    """Servers over one store URL, each with a data folder of its own (no shared volume)."""

    url: str
    root: Path
    model: Path
    servers: list[Server] = field(default_factory=list)
    stack: ExitStack = field(default_factory=ExitStack)

    def start(self, number: int, wait: bool = True, env: dict[str, str] | None = None) -> Server:
        """Start (or restart) server `number`; server 0 imports the tiny model."""
        server = start_server(
            self.root / f"node{number}",
            model_dir=self.model if number == 0 else None,
            env={"DOCBITS_STORE_URL": self.url, **(env or {})},
            wait=wait,
            log_dir=self.root,
        )
        self.stack.callback(server.stop)
        if number < len(self.servers):
            self.servers[number] = server
        else:
            self.servers.append(server)
        return server


@contextmanager
def cluster_of(
    count: int, url: str, root: Path, model: Path, env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    """`count` servers over `url`, started one after the other (the first imports the model)."""
    cluster = Cluster(url, root, model)
    with cluster.stack:
        for number in range(count):
            cluster.start(number, env=env)
        yield cluster


@pytest.fixture
def database(postgres_server: PostgresServer) -> Iterator[str]:
    url = postgres_server.create_database(password="hunter2")
    yield url
    postgres_server.drop_database(url)


# ---- checks ---------------------------------------------------------------------------------


def stored_codes(store: Any) -> dict[str, str]:
    """Every stored document's code (hex), all made by the active model; the feed is dense."""
    fingerprint = store.get_setting(ACTIVE_MODEL_SETTING)
    codes = {}
    for batch in store.iter_documents():
        for doc in batch:
            assert doc.fingerprint == fingerprint and doc.code is not None, doc.id
            codes[doc.id] = doc.code.hex()
    assert store.storage_errors() == []
    return codes


def wait_applied(client: httpx.Client, seq: int, timeout_s: float = 60.0) -> None:
    """Until the server behind `client` has applied the feed up to `seq`."""
    deadline = time.monotonic() + timeout_s
    while (feed := client.get("/v1/info").json()["feed"])["applied_seq"] < seq:
        assert time.monotonic() < deadline, feed
        time.sleep(0.02)


def assert_serves_exactly(server: Server, codes: dict[str, str], seq: int) -> None:
    """Once the server has applied `seq`, its index holds exactly `codes`, id by id: each id
    sits in its code's bucket, and it indexes no more documents than that. One connection,
    so one process answers it all."""
    by_code: dict[str, set[str]] = {}
    for doc_id, code in codes.items():
        by_code.setdefault(code, set()).add(doc_id)
    with server.client() as client:
        wait_applied(client, seq)
        assert client.get("/v1/info").json()["documents"] == len(codes), server.url
        for code, ids in by_code.items():
            assert bucket_members(client, code) == ids, (server.url, code)


def assert_all_serve_the_store(servers: list[Server], store: Any) -> dict[str, str]:
    codes = stored_codes(store)
    for server in servers:
        assert_serves_exactly(server, codes, store.last_seq())
    return codes


def post(client: httpx.Client, docs: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post("/v1/documents", json={"documents": docs})
    assert response.status_code == 200, response.text
    return response.json()


# ---- the tests --------------------------------------------------------------------------------


def test_processes_see_each_others_writes_within_the_lag_bound_and_answer_alike(
    database: str, tmp_path: Path, tiny_model: Path
) -> None:
    docs = topical_documents(300, seed=21, prefix="lag")
    lags: list[float] = []
    with cluster_of(3, database, tmp_path, tiny_model) as cluster:
        clients = [server.client() for server in cluster.servers]
        try:
            for number, start in enumerate(range(0, len(docs), 20)):
                writer, reader = clients[number % 3], clients[(number + 1) % 3]
                written = post(writer, docs[start : start + 20])
                acknowledged = time.monotonic()
                while reader.get("/v1/info").json()["feed"]["applied_seq"] < written["seq"]:
                    time.sleep(0.002)
                lags.append(time.monotonic() - acknowledged)
            last = written["seq"]
            for doc in docs[::29]:
                params = {"q": doc["text"], "nearest": "true", "limit": 20, "min_seq": last}
                answers = [client.get("/v1/search", params=params).json() for client in clients]
                assert answers[0]["hits"] and answers[0] == answers[1] == answers[2]
        finally:
            for client in clients:
                client.close()
        store = PostgresStore(database)
        try:
            assert len(assert_all_serve_the_store(cluster.servers, store)) == len(docs)
        finally:
            store.close()
    lags.sort()
    print(
        f"\nwrite-to-applied lag on another process ({len(lags)} writes): p50 "
        f"{statistics.median(lags) * 1000:.1f} ms, max {lags[-1] * 1000:.1f} ms"
    )
    assert lags[-1] < LAG_BOUND_S


@dataclass
class Ledger:
    """What writers were told: acknowledged documents, batches with no answer or a 503."""

    acknowledged: dict[str, dict[str, Any]] = field(default_factory=dict)
    unsure: list[list[str]] = field(default_factory=list)
    refusals: list[httpx.Response] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def write(self, client: httpx.Client, docs: list[dict[str, Any]]) -> bool:
        """Post a batch and record the answer; False when the server did not answer."""
        try:
            response = client.post("/v1/documents", json={"documents": docs})
        except httpx.TransportError:
            with self.lock:
                self.unsure.append([doc["id"] for doc in docs])
            return False
        with self.lock:
            if response.status_code == 200:
                codes = {item["id"]: item["code"] for item in response.json()["documents"]}
                for doc in docs:
                    self.acknowledged[doc["id"]] = {**doc, "code": codes[doc["id"]]}
            else:
                assert response.status_code == 503, response.text
                self.refusals.append(response)
                self.unsure.append([doc["id"] for doc in docs])
        return True

    def check(self, codes: dict[str, str]) -> None:
        """Every acknowledged document is stored with its code; no batch half-applied."""
        for doc_id, doc in self.acknowledged.items():
            assert codes.get(doc_id) == doc["code"], doc_id
        for batch in self.unsure:
            present = [doc_id for doc_id in batch if doc_id in codes]
            assert len(present) in (0, len(batch)), f"half-applied batch: {present}"


def test_sigkill_during_ingest_loses_nothing_acknowledged(
    database: str, tmp_path: Path, tiny_model: Path
) -> None:
    """One process is SIGKILLed while it ingests: every acknowledged document is stored and
    searchable on the other, no batch is half there, and the killed one, restarted, catches up
    (the other keeps ingesting meanwhile)."""
    ledger = Ledger()
    with cluster_of(2, database, tmp_path, tiny_model) as cluster:
        victim, survivor = cluster.servers
        stop = threading.Event()

        def ingest(server: Server, prefix: str) -> None:
            with server.client(timeout=10) as client:
                for number in range(10_000):
                    if stop.is_set():
                        return
                    docs = topical_documents(5, seed=number, prefix=f"{prefix}{number}-")
                    if not ledger.write(client, docs):
                        return

        writers = [
            threading.Thread(target=ingest, args=(victim, "v")),
            threading.Thread(target=ingest, args=(survivor, "s")),
        ]
        for writer in writers:
            writer.start()
        time.sleep(random.Random(5).uniform(0.5, 1.5))
        victim.kill()
        time.sleep(0.5)
        stop.set()
        for writer in writers:
            writer.join(timeout=60)
        assert len(ledger.unsure) >= 1 and not ledger.refusals
        store = PostgresStore(database)
        try:
            codes = assert_all_serve_the_store([survivor], store)
            ledger.check(codes)
            restarted = cluster.start(0)
            assert_all_serve_the_store([restarted, survivor], store)
        finally:
            store.close()
    assert sum(doc_id.startswith("v") for doc_id in ledger.acknowledged) > 0


def test_losing_postgres_while_serving_then_getting_it_back(
    tmp_path: Path, tiny_model: Path
) -> None:
    """PostgreSQL stops under two serving processes: writes answer 503 with Retry-After and
    nothing is acknowledged that was not committed; readiness fails naming the cause; once the
    server is back, both reconnect by themselves, writes resume and both catch up."""
    ledger = Ledger()
    with PostgresServer() as postgres:
        url = postgres.create_database(password="hunter2")
        with cluster_of(2, url, tmp_path, tiny_model) as cluster:
            a, b = cluster.servers
            with a.client(timeout=30) as client_a, b.client(timeout=30) as client_b:
                for number in range(5):
                    ledger.write(client_a, topical_documents(5, seed=number, prefix=f"a{number}"))
                postgres.stop("immediate")
                ledger.write(client_b, topical_documents(5, seed=5, prefix="b"))
                for refusal in ledger.refusals:
                    assert refusal.headers["Retry-After"] == "1"
                    error = refusal.json()["error"]
                    assert error["code"] == "unavailable" and "retry" in error["message"]
                    assert "hunter2" not in refusal.text
                assert len(ledger.refusals) == 1
                not_ready = client_a.get("/readyz")
                assert not_ready.status_code == 503, not_ready.text
                assert "hunter2" not in not_ready.text
                postgres.start()
                deadline = time.monotonic() + 60
                while client_b.get("/readyz").status_code != 200:
                    assert time.monotonic() < deadline, client_b.get("/readyz").text
                    time.sleep(0.1)
                for number in range(7, 10):
                    assert ledger.write(
                        client_b, topical_documents(5, seed=number, prefix=f"c{number}")
                    )
                assert len(ledger.refusals) == 1
            store = PostgresStore(url)
            try:
                codes = assert_all_serve_the_store(cluster.servers, store)
            finally:
                store.close()
            ledger.check(codes)
            assert len(ledger.acknowledged) == 8 * 5


def test_an_unreachable_database_at_start_is_named_and_waited_for(
    tmp_path: Path, tiny_model: Path
) -> None:
    """A server whose PostgreSQL cannot be reached starts not ready: /readyz and writes answer
    503 naming the URL with its password masked; it becomes ready by itself once the database
    answers."""
    port = free_port()
    url = f"postgresql://postgres:hunter2@127.0.0.1:{port}/postgres"
    server = start_server(
        tmp_path / "node", env={"DOCBITS_STORE_URL": url}, wait=False, log_dir=tmp_path
    )
    try:
        masked = f"postgresql://postgres:***@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 60
        with server.client() as client:
            while True:
                assert server.alive(), server.log()[-3000:]
                try:
                    answer = client.get("/readyz")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            assert answer.status_code == 503
            assert masked in answer.json()["error"]["message"], answer.text
            refused = client.post("/v1/documents", json={"documents": topical_documents(1)})
            assert refused.status_code == 503 and masked in refused.text
            assert "hunter2" not in answer.text + refused.text + server.log()
            with PostgresServer(port=port):
                wait_until_ready(server, timeout_s=60)
                assert (
                    client.post("/v1/documents", json={"documents": topical_documents(3)}).json()[
                        "seq"
                    ]
                    == 3
                )
    finally:
        server.stop()


@pytest.mark.slow  # in the fast suite: test_follower.py (leases), test_crash.py (the kill)
def test_a_job_of_a_killed_process_fails_when_its_lease_lapses(
    database: str, tmp_path: Path, tiny_model: Path
) -> None:
    """Training runs on one process; the other refuses a second job and reads the first from the
    store. SIGKILL the training process (its worker goes with it) while it trains: the job fails
    once its lease lapses, and the other process can train."""
    docs = topical_documents(300, seed=8, prefix="t")
    env = {"DOCBITS_TRAINING_LEASE_S": "2"}
    with cluster_of(2, database, tmp_path, tiny_model, env=env) as cluster:
        trainer, other = cluster.servers
        with trainer.client() as client_t, other.client() as client_o:
            post(client_t, docs)
            job = client_t.post("/v1/model/train", json={"epochs": 500, "bits": 16})
            assert job.status_code == 202, job.text
            job_id = job.json()["id"]
            refused = client_o.post("/v1/model/train", json={"epochs": 1})
            assert refused.status_code == 409 and job_id in refused.text
            deadline = time.monotonic() + 120
            while (seen := client_o.get(f"/v1/model/jobs/{job_id}").json())["status"] != (
                "training"
            ):
                assert seen["status"] == "queued", seen
                assert time.monotonic() < deadline, "the job never started training"
                time.sleep(0.02)
            trainer.kill()
            assert seen["documents"] == len(docs)
            deadline = time.monotonic() + 30
            while (lapsed := client_o.get(f"/v1/model/jobs/{job_id}").json())["status"] != (
                "failed"
            ):
                assert lapsed["status"] == "training", lapsed
                assert time.monotonic() < deadline, lapsed
                time.sleep(0.2)
            assert "lease" in lapsed["error"]
            again = client_o.post("/v1/model/train", json={"epochs": 1, "bits": 16})
            assert again.status_code == 202, again.text
        store = PostgresStore(database)
        try:
            assert not store.has_model(lapsed["fingerprint"] or "none")
            assert store.get_setting(ACTIVE_MODEL_SETTING) == weights_sha256(tiny_model)
        finally:
            store.close()


def weights_sha256(model_dir: Path) -> str:
    return hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()


def run_concurrent_writers(
    database: str, tmp_path: Path, tiny_model: Path, seconds: float
) -> tuple[int, int]:
    """Three processes, three writer threads each, upserting overlapping ids and deleting for
    `seconds`; then every index must hold exactly the store's documents and codes."""
    stop = threading.Event()
    errors: list[str] = []
    counts = {"writes": 0}
    with cluster_of(3, database, tmp_path, tiny_model) as cluster:

        def write(server: Server, seed: int) -> None:
            rng = random.Random(seed)
            with server.client(timeout=30) as client:
                while not stop.is_set():
                    ids = rng.sample(range(400), 6)
                    try:
                        if rng.random() < 0.2:
                            response = client.post(
                                "/v1/documents/delete", json={"ids": [f"w{i}" for i in ids]}
                            )
                        else:
                            docs = topical_documents(6, seed=rng.randrange(10**6))
                            for doc, number in zip(docs, ids, strict=True):
                                doc["id"] = f"w{number}"
                            response = client.post("/v1/documents", json={"documents": docs})
                    except httpx.TransportError as error:
                        errors.append(repr(error))
                        return
                    if response.status_code != 200:
                        errors.append(response.text)
                        return
                    counts["writes"] += 1

        threads = [
            threading.Thread(target=write, args=(server, 10 * number + thread))
            for number, server in enumerate(cluster.servers)
            for thread in range(3)
        ]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors[:3]
        store = PostgresStore(database)
        try:
            codes = assert_all_serve_the_store(cluster.servers, store)
            feed = store.changes_since(0, limit=10**7)
            assert [change.seq for change in feed] == list(range(1, store.last_seq() + 1))
        finally:
            store.close()
    return counts["writes"], len(codes)


def test_concurrent_writers_on_three_processes_leave_identical_indexes(
    database: str, tmp_path: Path, tiny_model: Path
) -> None:
    writes, documents = run_concurrent_writers(database, tmp_path, tiny_model, seconds=4)
    assert writes > 30 and documents > 50


@pytest.mark.slow
def test_concurrent_writers_for_a_minute(database: str, tmp_path: Path, tiny_model: Path) -> None:
    writes, documents = run_concurrent_writers(database, tmp_path, tiny_model, seconds=60)
    print(f"\nconcurrent writers for 60 s: {writes} writes, {documents} documents at the end")
    assert writes > 500


def test_workers_share_one_sqlite_file(tmp_path: Path, tiny_model: Path) -> None:
    """`docbits serve --workers 2` on the embedded store: two processes behind one port, each
    following the SQLite file; a write through one is read on either with min_seq."""
    data_dir = tmp_path / "data"
    server = start_server(data_dir, model_dir=tiny_model, args=["--workers", "2"])
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while len(seen) < 2:
            assert time.monotonic() < deadline, f"one worker only: {seen}"
            with server.client() as fresh:  # a new connection may land on either worker
                seen.add(fresh.get("/v1/info").json()["feed"]["process"])
        docs = topical_documents(60, seed=4, prefix="wk")
        for start in range(0, len(docs), 10):
            with server.client() as fresh:
                written = post(fresh, docs[start : start + 10])
            with server.client() as fresh:
                answer = fresh.get(
                    f"/v1/documents/{docs[start]['id']}/similar",
                    params={"min_seq": written["seq"], "nearest": "true", "limit": 1},
                )
                assert answer.status_code == 200, answer.text
        store = SQLiteStore(data_dir / "docbits.sqlite3")
        try:
            codes = stored_codes(store)
            assert len(codes) == len(docs)
            for _ in range(4):  # whichever worker answers holds exactly the store
                assert_serves_exactly(server, codes, store.last_seq())
        finally:
            store.close()
    finally:
        server.stop()
    assert server.process.returncode == 0, server.log()[-3000:]  # workers stopped on SIGTERM
    assert wait_for_group_to_exit(server, timeout_s=30) == []
