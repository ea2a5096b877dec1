"""Cold start and resident memory of one serving process over a large store, on both backends.

Usage: .venv/bin/python bench/scale.py --model DIR [--docs 1000000] [--backends sqlite postgres]

Fills a store with `--docs` documents (short texts, three short metadata fields, codes and
rescoring forms of the model's length made by the model's fingerprint, so start-up has nothing
to re-encode), then
starts `docbits serve` over it and measures the seconds from the process start to `/readyz`
answering 200, and the process's resident memory (VmRSS) once ready and after some searches.
The same model over an empty store gives the baseline memory, so the page shows memory per
document in all (RSS / documents) and beyond the empty process ((RSS - empty RSS) / documents).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.service_load import free_port  # noqa: E402
from docbits.index.store import StoredDocument, open_store  # noqa: E402
from tests.postgres_server import PostgresServer  # noqa: E402

WORDS = [
    "orbit",
    "shuttle",
    "launch",
    "render",
    "pixel",
    "goal",
    "puck",
    "patient",
    "doctor",
    "engine",
    "price",
    "market",
]
GROUPS = [f"group-{number}" for number in range(20)]
BATCH = 5000


def fill(store_url: str | None, data_dir: Path, model: Path, docs: int, bits: int) -> float:
    """Write `docs` documents coded by the model and make it the active model; returns seconds."""
    config = json.loads((model / "config.json").read_text())
    fingerprint = config["fingerprint"]
    shutil.copytree(model, data_dir / "models" / fingerprint)
    store = open_store(store_url, data_dir)
    rng = random.Random(5)
    codes = np.random.default_rng(5).integers(0, 256, size=(docs, bits // 8), dtype=np.uint8)
    forms = np.random.default_rng(6).integers(-127, 128, size=(docs, bits), dtype=np.int8)
    started = time.perf_counter()
    try:
        for start in range(0, docs, BATCH):
            store.upsert(
                [
                    StoredDocument(
                        id=f"doc-{number:07d}",
                        text=" ".join(rng.choice(WORDS) for _ in range(12)),
                        metadata={
                            "group": rng.choice(GROUPS),
                            "lang": "en",
                            "year": 2000 + number % 25,
                        },
                        code=codes[number].tobytes(),
                        fingerprint=fingerprint,
                        form=forms[number].tobytes(),
                    )
                    for number in range(start, min(start + BATCH, docs))
                ]
            )
        store.switch_model(fingerprint, [], np.zeros((0, bits // 8), dtype=np.uint8))
    finally:
        store.close()
    return time.perf_counter() - started


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def serve(store_url: str | None, data_dir: Path) -> dict[str, float]:
    """Start a server, time it to ready, run searches, read its memory; then stop it."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("DOCBITS_")}
    if store_url:
        env["DOCBITS_STORE_URL"] = store_url
    command = [sys.executable, "-m", "docbits.service.cli", "serve", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--autotrain-min-docs", "0", "--retrain-growth", "0"]
    command += ["--log-level", "warning"]
    started = time.perf_counter()
    server = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            while True:
                if server.poll() is not None:
                    raise SystemExit("the server exited during start-up")
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            ready_s = time.perf_counter() - started
            ready_rss = rss_bytes(server.pid)
            for number in range(200):
                query = {"q": f"{WORDS[number % len(WORDS)]} launch", "nearest": "true"}
                assert client.get("/v1/search", params=query).status_code == 200
                filtered = {"q": "orbit", "nearest": True, "filter": {"group": GROUPS[number % 20]}}
                assert client.post("/v1/search", json=filtered).status_code == 200
            documents = client.get("/v1/info").json()["documents"]
        return {
            "ready_s": ready_s,
            "ready_rss": ready_rss,
            "search_rss": rss_bytes(server.pid),
            "documents": documents,
        }
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--out", type=Path, help="write the Markdown table here too")
    args = parser.parse_args()
    bits = json.loads((args.model / "config.json").read_text())["bits"]
    rows = []
    for backend in args.backends:
        with tempfile.TemporaryDirectory(prefix="docbits-scale-") as scratch:
            postgres = None
            if backend == "postgres":
                postgres = PostgresServer("-c fsync=on", in_memory=False).start()
            try:
                urls: list[str | None] = [None, None]
                if postgres is not None:
                    urls = [postgres.create_database(), postgres.create_database()]
                empty_dir, full_dir = Path(scratch) / "empty", Path(scratch) / "full"
                fill(urls[0], empty_dir, args.model, 0, bits)
                fill_s = fill(urls[1], full_dir, args.model, args.docs, bits)
                empty = serve(urls[0], empty_dir)
                full = serve(urls[1], full_dir)
            finally:
                if postgres is not None:
                    postgres.close()
        per_doc_all = full["search_rss"] / args.docs
        per_doc_beyond = (full["search_rss"] - empty["search_rss"]) / args.docs
        rows.append(
            f"| {backend} | {full['documents']:,} | {fill_s:.0f} | {full['ready_s']:.1f} "
            f"| {empty['search_rss'] / 2**20:.0f} | {full['ready_rss'] / 2**20:.0f} "
            f"| {full['search_rss'] / 2**20:.0f} "
            f"| {per_doc_all:.0f} | {per_doc_beyond:.0f} |"
        )
        print(rows[-1], flush=True)
    table = "\n".join(
        [
            f"Command: `python bench/scale.py {' '.join(sys.argv[1:])}`",
            "",
            "| backend | documents | fill s | cold start to ready s | empty process MiB "
            "| ready MiB | after searches MiB | B/doc in all | B/doc beyond the empty process |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    print(table)
    if args.out:
        args.out.write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
