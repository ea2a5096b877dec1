"""Ingest and read-back speed of the two store backends, side by side in one run.

Usage: .venv/bin/python bench/store_speed.py [--docs 50000] [--batch 500] [--text-bytes 1000]

One client writes batches of documents (text, three short metadata fields, 8-byte codes) to a
SQLite file and to a PostgreSQL server that this script starts (the distribution's binaries,
fsync on, data on the same disk as the SQLite file). Batches alternate between the backends, so
the noise of a shared machine hits both alike. Each write is one durable transaction that also
appends to the change feed. Then each backend reads everything back: the feed from 0 (what a
follower catching up does) and the codes (what a cold start does).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from docbits.index.store import DocumentStore, SQLiteStore, StoredDocument  # noqa: E402
from docbits.index.store.postgres import PostgresStore  # noqa: E402
from tests.postgres_server import PostgresServer  # noqa: E402

FINGERPRINT = "b" * 64
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
    "the",
    "of",
    "and",
    "a",
    "to",
    "in",
]


def make_batches(docs: int, batch: int, text_bytes: int, seed: int) -> list[list[StoredDocument]]:
    """Documents with ~text_bytes of text, three short metadata fields and an 8-byte code."""
    rng = random.Random(seed)
    codes = np.random.default_rng(seed).integers(0, 256, size=(docs, 8), dtype=np.uint8)
    made = []
    for number in range(docs):
        text = " ".join(rng.choice(WORDS) for _ in range(text_bytes // 6))[:text_bytes]
        metadata = {"source": f"feed-{number % 7}", "lang": "en", "year": 2000 + number % 25}
        made.append(
            StoredDocument(
                f"doc-{number:08d}", text, metadata, codes[number].tobytes(), FINGERPRINT
            )
        )
    return [made[start : start + batch] for start in range(0, docs, batch)]


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def read_back(store: DocumentStore) -> tuple[float, float, int]:
    """Seconds to read the whole feed from 0 and all codes; the number of codes read."""
    feed_s = timed(lambda: _drain_feed(store))
    count = 0

    def codes() -> None:
        nonlocal count
        count = sum(len(ids) for ids, _, _ in store.iter_codes(FINGERPRINT))

    return feed_s, timed(codes), count


def _drain_feed(store: DocumentStore) -> None:
    position = 0
    while changes := store.changes_since(position, limit=10_000):
        position = changes[-1].seq


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--text-bytes", type=int, default=1000)
    parser.add_argument("--insert-only", action="store_true", help="insert_only=True writes")
    args = parser.parse_args()

    batches = make_batches(args.docs, args.batch, args.text_bytes, seed=1)
    folder = Path(tempfile.mkdtemp(prefix="docbits-store-speed-"))
    with PostgresServer(postgres_options="-c fsync=on", in_memory=False) as server:
        stores: dict[str, DocumentStore] = {
            "SQLite": SQLiteStore(folder / "docbits.sqlite3"),
            "PostgreSQL": PostgresStore(server.create_database()),
        }
        seconds: dict[str, list[float]] = {name: [] for name in stores}
        for batch in batches:
            for name, store in stores.items():
                seconds[name].append(
                    timed(lambda s=store, b=batch: s.upsert(b, insert_only=args.insert_only))
                )
        print(
            f"{args.docs} documents in batches of {args.batch} ({args.text_bytes} B of text, "
            f"3 metadata fields, 8-byte codes), one client, insert_only={args.insert_only}; "
            f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n"
        )
        print(
            "| backend | ingest docs/s | median batch ms | feed read docs/s | codes read docs/s |"
        )
        print("|---|---|---|---|---|")
        for name, store in stores.items():
            feed_s, codes_s, read = read_back(store)
            assert read == args.docs == store.count() == store.last_seq()
            total = sum(seconds[name])
            print(
                f"| {name} | {args.docs / total:,.0f} | "
                f"{statistics.median(seconds[name]) * 1000:.1f} | {args.docs / feed_s:,.0f} | "
                f"{args.docs / codes_s:,.0f} |"
            )
            store.close()
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
