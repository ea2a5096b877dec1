"""End to end: `docbits serve` under uvicorn on 127.0.0.1, ingest and search through the CLI and
client, train through the API, restart the server, and find every document again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from docbits.service.client import DocbitsClient, DocbitsError

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def docbits(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docbits.service.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


READY_WITHIN_S = 120  # a loaded 2-core CI machine, numba kernels loaded or compiled at start


@contextmanager
def serving(data_dir: Path, port: int) -> Iterator[DocbitsClient]:
    """Run `docbits serve` until the block ends; yields a client once /readyz is green."""
    command = [sys.executable, "-m", "docbits.service.cli", "serve", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--autotrain-min-docs", "0", "--retrain-growth", "0"]
    command += ["--train-bits", "16"]
    command += ["--train-epochs", "3", "--log-level", "warning"]
    env = {**os.environ, "DOCBITS_API_KEY": ""}
    env.pop("DOCBITS_API_KEY")
    # The server's log goes to a file, not a pipe nobody reads while it runs (a full pipe
    # would block the server).
    log = (data_dir.parent / f"server-{port}.log").open("w+")
    server = subprocess.Popen(command, cwd=ROOT, env=env, stderr=log, text=True)
    client = DocbitsClient(f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while True:
            assert server.poll() is None, Path(log.name).read_text()
            try:
                client.readyz()
                break
            except Exception:
                assert time.monotonic() < deadline, (
                    f"server did not become ready in {READY_WITHIN_S} s:\n"
                    + Path(log.name).read_text()
                )
                time.sleep(0.1)
        yield client
    finally:
        client.close()
        log.close()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def assert_every_document_is_in_its_own_bucket(
    client: DocbitsClient, corpus: list[dict[str, Any]]
) -> None:
    for start in range(0, len(corpus), 50):
        chunk = corpus[start : start + 50]
        results = client.search_batch([d["text"] for d in chunk], limit=1000).results
        for doc, result in zip(chunk, results, strict=True):
            assert doc["id"] in {hit.id for hit in result.hits if hit.distance == 0}, doc["id"]


def test_serve_ingest_train_search_restart(tmp_path: Path, corpus: list[dict[str, Any]]) -> None:
    corpus_file = tmp_path / "corpus.jsonl"
    lines = [
        json.dumps({"id": d["id"], "text": d["text"], "labels": [d["metadata"]["topic"]]})
        for d in corpus
    ]
    corpus_file.write_text("\n".join(lines) + "\n")
    data_dir = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(data_dir, port) as client:
        out = docbits("ingest", "--url", url, "--corpus", str(corpus_file), "--batch-size", "64")
        assert out.returncode == 0, out.stderr
        assert client.info().documents == len(corpus)
        with pytest.raises(DocbitsError) as no_model:
            client.search("orbit shuttle")
        assert no_model.value.status == 409

        job = client.train()
        with pytest.raises(DocbitsError) as second:
            client.train()
        assert (second.value.status, second.value.code) == (409, "training_in_progress")
        done = client.wait_for_job(job.id, timeout=180)
        assert done.status.value == "succeeded", done.error
        assert done.progress["epochs"] == 3
        info = client.info()
        assert info.model_fingerprint == done.fingerprint and info.bits == 16
        assert_every_document_is_in_its_own_bucket(client, corpus)
        space = client.search("orbit shuttle launch rocket", nearest=True, limit=10)
        found = docbits(
            "search",
            "--url",
            url,
            "--nearest",
            "--limit",
            "10",
            "--json",
            "orbit shuttle launch rocket",
        )
        assert found.returncode == 0, found.stderr
        assert json.loads(found.stdout)["hits"] == [h.model_dump() for h in space.hits]
        assert "docbits_training_jobs_total" in client.metrics()

    with serving(data_dir, port) as client:
        info = client.info()
        assert info.model_fingerprint == done.fingerprint
        assert info.documents == len(corpus)
        first = client.get_document(corpus[0]["id"])
        assert first.text == corpus[0]["text"]
        assert first.metadata == {"labels": [corpus[0]["metadata"]["topic"]]}
        assert_every_document_is_in_its_own_bucket(client, corpus)
