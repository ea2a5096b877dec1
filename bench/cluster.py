"""Several docbits processes over one store: ingest, workers, write-to-visible lag, search p99.

Usage: .venv/bin/python bench/cluster.py --model DIR [--seconds 6] [--rounds 3] [--writes 200]

Starts its own PostgreSQL (the distribution's binaries, fsync on) and real `docbits serve`
processes on 127.0.0.1, then measures, side by side in one run:
- ingest of the 20 Newsgroups train split over HTTP (batches of 500, one client), SQLite and
  PostgreSQL;
- search requests/s at 32 clients (radius 0, test posts as queries) of `--workers 1` and
  `--workers 2` over the same PostgreSQL store, in alternating rounds; the load generator runs
  on the same two cores;
- write-to-visible lag: one document written on process A, then B's bucket of its code polled
  until it holds it (p50 and p99 over `--writes` writes);
- the p99 of search at 32 clients with PostgreSQL (the one-worker runs).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.service_load import (  # noqa: E402
    DEFAULT_CORPUS,
    LoadResult,
    drive,
    free_port,
    ingest,
    run_loop,
    wait_ready,
)
from docbits.model.corpus import load_corpus  # noqa: E402
from docbits.service.client import DocbitsClient  # noqa: E402
from tests.postgres_server import PostgresServer  # noqa: E402


class Server:
    """One `docbits serve` process (maybe with workers) on a free port."""

    def __init__(self, data_dir: Path, store_url: str | None, model: Path, workers: int = 1):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {key: value for key, value in os.environ.items() if not key.startswith("DOCBITS_")}
        if store_url:
            env["DOCBITS_STORE_URL"] = store_url
        command = [sys.executable, "-m", "docbits.service.cli", "serve"]
        command += ["--data-dir", str(data_dir), "--port", str(self.port), "--model", str(model)]
        command += ["--workers", str(workers), "--autotrain-min-docs", "0"]
        command += ["--retrain-growth", "0", "--log-level", "warning"]
        self.process = subprocess.Popen(command, env=env, start_new_session=True)
        with DocbitsClient(self.base_url, timeout=120) as client:
            wait_ready(client, self.process)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


def search_load(server: Server, queries: list[dict], clients: int, seconds: float) -> LoadResult:
    run_loop(drive(server.base_url, "/v1/search", queries, 8, 2.0, server.process.pid))
    return run_loop(
        drive(server.base_url, "/v1/search", queries, clients, seconds, server.process.pid)
    )


def visible_lag(writer: Server, reader: Server, writes: int) -> list[float]:
    """Seconds from each write's answer on `writer` until `reader`'s bucket holds the document."""
    lags = []
    with httpx.Client(timeout=30) as http:
        for number in range(writes):
            doc_id = f"lag-{number}"
            text = f"probe {number} orbit shuttle launch {number * 7919} telescope mirror"
            answer = http.post(
                f"{writer.base_url}/v1/documents",
                json={"documents": [{"id": doc_id, "text": text}]},
            )
            answer.raise_for_status()
            written = time.perf_counter()
            code = answer.json()["documents"][0]["code"]
            while True:
                bucket = http.get(f"{reader.base_url}/v1/buckets/{code}", params={"limit": 1000})
                if doc_id in {member["id"] for member in bucket.json()["documents"]}:
                    break
                if time.perf_counter() - written > 10:
                    raise SystemExit(f"{doc_id} not visible on the reader after 10 s")
            lags.append(time.perf_counter() - written)
    return lags


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--out", type=Path, help="write the Markdown page here too")
    args = parser.parse_args()

    documents = load_corpus(args.corpus)
    train_split = [d for d in documents if d.split == "train"]
    queries = [{"q": d.text[:2000], "limit": 10} for d in documents if d.split == "test"][:2000]
    with (
        tempfile.TemporaryDirectory(prefix="docbits-cluster-") as scratch,
        PostgresServer("-c fsync=on", in_memory=False) as postgres,
    ):
        work = Path(scratch)
        store_url = postgres.create_database()
        ingest_rates = {}
        for name, url in (("SQLite", None), ("PostgreSQL", store_url)):
            server = Server(work / name, url, args.model)
            try:
                with DocbitsClient(server.base_url, timeout=120) as client:
                    count, seconds = ingest(client, train_split, 500)
                ingest_rates[name] = count / seconds
                print(f"ingest {name}: {ingest_rates[name]:.0f} docs/s", flush=True)
            finally:
                server.stop()
        runs: dict[int, list[LoadResult]] = {1: [], 2: []}
        for round_number in range(args.rounds):
            for workers in (1, 2) if round_number % 2 == 0 else (2, 1):
                server = Server(work / f"workers-{workers}", store_url, args.model, workers)
                try:
                    result = search_load(server, queries, 32, args.seconds)
                finally:
                    server.stop()
                runs[workers].append(result)
                print(
                    f"round {round_number} workers {workers}: {result.throughput:.0f}/s "
                    f"p99 {result.percentile(0.99):.1f} ms errors {result.errors}",
                    flush=True,
                )
        first, second = Server(work / "a", store_url, args.model), None
        try:
            second = Server(work / "b", store_url, args.model)
            lags = visible_lag(first, second, args.writes)
        finally:
            first.stop()
            if second is not None:
                second.stop()

    one = sorted(runs[1], key=lambda run: run.throughput)[len(runs[1]) // 2]
    two = sorted(runs[2], key=lambda run: run.throughput)[len(runs[2]) // 2]
    ratio = two.throughput / one.throughput
    p50, p99 = percentile(lags, 0.5) * 1000, percentile(lags, 0.99) * 1000
    checks = [
        (
            "search req/s at 32 clients, --workers 2 / --workers 1",
            f"{ratio:.2f}×",
            "≥ 1.5×",
            ratio >= 1.5,
        ),
        ("write-to-visible lag on another process, p99", f"{p99:.1f} ms", "≤ 50 ms", p99 <= 50),
        (
            "ingest through PostgreSQL (batches of 500, one client)",
            f"{ingest_rates['PostgreSQL']:,.0f} docs/s",
            "≥ 2,000",
            ingest_rates["PostgreSQL"] >= 2000,
        ),
        (
            "search p99 at 32 clients, PostgreSQL, one worker",
            f"{one.percentile(0.99):.1f} ms",
            "≤ 25 ms",
            one.percentile(0.99) <= 25,
        ),
    ]
    lines = [
        "# Several processes over one store",
        "",
        f"Command: `python bench/cluster.py {' '.join(sys.argv[1:])}`. One PostgreSQL server "
        "(fsync on) and real `docbits serve` processes on 127.0.0.1, all on this machine's "
        f"2 CPU cores together with the load generator (load average {os.getloadavg()[0]:.1f} "
        "at the end). The index: the 11,314 training posts of 20 Newsgroups, 64-bit codes.",
        "",
        "| measure | measured | target | met |",
        "|---|---:|---:|---|",
        *[
            f"| {name} | {value} | {target} | {'yes' if met else '**no**'} |"
            for name, value, target, met in checks
        ],
        "",
        f"Ingest over HTTP, side by side: SQLite {ingest_rates['SQLite']:,.0f} docs/s, "
        f"PostgreSQL {ingest_rates['PostgreSQL']:,.0f} docs/s.",
        "",
        "| workers | search req/s (median round) | p50 ms | p99 ms | rounds req/s |",
        "|---:|---:|---:|---:|---|",
        *[
            f"| {workers} | {run.throughput:.0f} | {run.percentile(0.5):.1f} "
            f"| {run.percentile(0.99):.1f} | "
            + ", ".join(f"{r.throughput:.0f}" for r in runs[workers])
            + " |"
            for workers, run in ((1, one), (2, two))
        ],
        "",
        f"Write-to-visible lag over {len(lags)} writes: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"max {max(lags) * 1000:.1f} ms (from the write's answer on A to the document in B's "
        "bucket; B follows the store's change feed, woken by LISTEN/NOTIFY).",
    ]
    page = "\n".join(lines) + "\n"
    print(page)
    if args.out:
        args.out.write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
