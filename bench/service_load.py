"""Load benchmark of the HTTP service: a real uvicorn server (one worker) on 127.0.0.1.

Ingests the 20 Newsgroups train split in batches of 500, then drives search (test-split texts as
queries) and the no-op `/livez` route side by side at 1, 8 and 32 concurrent clients for a fixed
time each, and writes `docs/results/service.md`.

    .venv/bin/python bench/service_load.py [--model DIR] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.corpus import Document, load_corpus  # noqa: E402
from service.client import DocbitsClient  # noqa: E402

DEFAULT_CORPUS = Path(
    os.environ.get("DOCBITS_20NEWS", ROOT.parent / "shared" / "data" / "20news-bydate.tar.xz")
)
TARGET_RATIO = 0.60
TARGET_P99_MS = 25.0
TARGET_INGEST = 2000.0


@dataclass
class LoadResult:
    """One (route, concurrency) run: completed requests, errors and latencies."""

    route: str
    clients: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    server_cpu_s: float = 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU time (all its threads) per completed request."""
        return 1000 * self.server_cpu_s / max(1, len(self.latencies_ms))

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def http_stack() -> str:
    """The HTTP parser and event loop uvicorn's "auto" picks in this environment."""
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"{parser} parser, {loop} loop"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batch_sizes(base_url: str) -> str:
    """Mean search requests per query-encode call over the whole run, from /metrics."""
    metrics = httpx.get(f"{base_url}/metrics", timeout=30).text
    values = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("docbits_query_encode_batch_requests_")
    }
    calls = values.get("docbits_query_encode_batch_requests_count", 0.0)
    total = values.get("docbits_query_encode_batch_requests_sum", 0.0)
    mean = total / max(calls, 1)
    return f"{total:.0f} search requests encoded in {calls:.0f} calls ({mean:.1f} per call)"


def encode_cost_ms(model_dir: Path, texts: list[str]) -> dict[int, float]:
    """CPU ms per query of the model's `encode` alone, one query per call and 32 per call."""
    import torch

    from model.hasher import Hasher

    torch.set_num_threads(1)
    hasher = Hasher.load(model_dir)
    hasher.encode(texts[:32])
    costs = {}
    for per_call in (1, 32):
        started = time.process_time()
        for start in range(0, len(texts), per_call):
            hasher.encode(texts[start : start + per_call])
        costs[per_call] = 1000 * (time.process_time() - started) / len(texts)
    return costs


def trained_model(corpus: list[Document], epochs: int, bits: int, into: Path) -> Path:
    """Train a model on the train split (when no --model is given) and save it."""
    from model.train import TrainConfig, train

    texts = [doc.text for doc in corpus]
    started = time.perf_counter()
    hasher = train(texts, TrainConfig(bits=bits, epochs=epochs), progress=True)
    print(f"trained {bits}-bit model in {time.perf_counter() - started:.0f}s", flush=True)
    hasher.save(into)
    return into


def start_server(data_dir: Path, model: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "service.cli", "serve", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--model", str(model), "--autotrain-min-docs", "0"]
    command += ["--log-level", "warning"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("DOCBITS_")}
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def wait_ready(client: DocbitsClient, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while True:
        if server.poll() is not None:
            raise SystemExit("server exited during start-up; see its log")
        try:
            client.readyz()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def ingest(client: DocbitsClient, corpus: list[Document], batch: int) -> tuple[int, float]:
    """POST the corpus in batches; returns (documents, seconds)."""
    started = time.perf_counter()
    for start in range(0, len(corpus), batch):
        docs = corpus[start : start + batch]
        client.ingest(
            [{"id": d.id, "text": d.text, "metadata": {"group": d.labels[0]}} for d in docs]
        )
    return len(corpus), time.perf_counter() - started


async def drive(
    base_url: str,
    route: str,
    params: list[dict[str, str | int]],
    clients: int,
    seconds: float,
    server_pid: int,
) -> LoadResult:
    """`clients` concurrent loops sending requests for `seconds`; warm-up excluded."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:

        async def loop(worker: int, until: float, record: bool) -> None:
            nonlocal errors
            position = worker
            while time.perf_counter() < until:
                query = params[position % len(params)]
                position += clients
                started = time.perf_counter()
                response = await http.get(route, params=query)
                elapsed = (time.perf_counter() - started) * 1000
                if not record:
                    continue
                if response.status_code == 200:
                    latencies.append(elapsed)
                else:
                    errors += 1

        warm_until = time.perf_counter() + 1.0
        await asyncio.gather(*(loop(w, warm_until, False) for w in range(clients)))
        began, cpu_before = time.perf_counter(), cpu_seconds(server_pid)
        until = began + seconds
        await asyncio.gather(*(loop(w, until, True) for w in range(clients)))
        measured = time.perf_counter() - began
        cpu = cpu_seconds(server_pid) - cpu_before
    return LoadResult(route, clients, measured, latencies, errors, cpu)


def report(
    results: list[tuple[LoadResult, LoadResult]],
    ingested: tuple[int, float],
    documents: int,
    buckets: int,
    bits: int,
    command: str,
    load_before: float,
    batching: str,
    encode_ms: dict[int, float],
) -> str:
    count, seconds = ingested
    ingest_rate = count / seconds
    lines = [
        "# Service load benchmark",
        "",
        "Measured by `bench/service_load.py` against a real uvicorn server (one worker, HTTP/1.1 "
        f"keep-alive, {http_stack()}) on 127.0.0.1; the load generator (httpx async clients) runs "
        "on the same machine and shares its CPUs.",
        "",
        f"- Command: `{command}`",
        f"- Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
        f"{platform.python_version()}",
        f"- Index: {documents} documents of the 20 Newsgroups train split, {bits}-bit codes, "
        f"{buckets} buckets",
        "- Search: `GET /v1/search?q=<text>` with a 20 Newsgroups test-split post as the query, "
        "radius 0, limit 10 (snippets); no-op: `GET /livez` (constant JSON, the framework's "
        "ceiling)",
        "",
        f"- Load average (1 min) before / after the run: {load_before:.1f} / "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work on the machine competes "
        "for the same cores; server CPU ms per request is the steadier figure)",
        "",
        "| clients | search req/s | search p50 ms | search p99 ms | search server CPU ms/req "
        "| no-op req/s | no-op p50 ms | no-op p99 ms | no-op server CPU ms/req | search / no-op |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for search, noop in results:
        ratio = search.throughput / noop.throughput
        lines.append(
            f"| {search.clients} | {search.throughput:.0f} | {search.percentile(0.5):.1f} | "
            f"{search.percentile(0.99):.1f} | {search.cpu_ms_per_request:.2f} | "
            f"{noop.throughput:.0f} | {noop.percentile(0.5):.1f} | {noop.percentile(0.99):.1f} | "
            f"{noop.cpu_ms_per_request:.2f} | {ratio:.0%} |"
        )
    errors = sum(s.errors + n.errors for s, n in results)
    lines += [
        "",
        f"Non-200 answers during the load: {errors}. Query micro-batching: {batching}.",
        "",
        "Encoding alone (the model's `encode`, one torch thread, the same queries, measured in the "
        f"benchmark process after the load): {encode_ms[1]:.2f} ms CPU per query one at a time, "
        f"{encode_ms[32]:.2f} ms per query in calls of 32.",
        "",
    ]
    lines += [
        f"Ingest: {count} documents in batches of 500 in {seconds:.1f} s = "
        f"**{ingest_rate:.0f} documents/s** (one client, each batch encoded, committed to SQLite "
        "and indexed before its response).",
        "",
        "## Targets",
        "",
    ]
    worst_ratio = min(s.throughput / n.throughput for s, n in results)
    p99_32 = next((s.percentile(0.99) for s, _ in results if s.clients == 32), float("nan"))
    lines += [
        _verdict(
            f"search ≥ {TARGET_RATIO:.0%} of the no-op route's throughput (lowest ratio "
            f"{worst_ratio:.0%})",
            worst_ratio >= TARGET_RATIO,
            f"{TARGET_RATIO - worst_ratio:.0%} short at the worst concurrency",
        ),
        _verdict(
            f"search p99 ≤ {TARGET_P99_MS:.0f} ms at 32 clients (measured {p99_32:.1f} ms)",
            p99_32 <= TARGET_P99_MS,
            f"{p99_32 - TARGET_P99_MS:.1f} ms over",
        ),
        _verdict(
            f"ingest ≥ {TARGET_INGEST:.0f} documents/s (measured {ingest_rate:.0f})",
            ingest_rate >= TARGET_INGEST,
            f"{TARGET_INGEST - ingest_rate:.0f} documents/s short",
        ),
        "",
    ]
    return "\n".join(lines)


def _verdict(what: str, met: bool, gap: str) -> str:
    return f"- {what}: **{'met' if met else 'not met'}**" + ("" if met else f" ({gap})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--model", type=Path, help="a saved model; trained here when absent")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=8, help="epochs when training here")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured time per run")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "service.md")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    documents = load_corpus(args.corpus)
    train_split = [d for d in documents if d.split == "train"]
    queries = [{"q": d.text[:2000], "limit": 10} for d in documents if d.split == "test"][:2000]
    with tempfile.TemporaryDirectory(prefix="docbits-bench-") as scratch:
        work = Path(scratch)
        model = args.model or trained_model(train_split, args.epochs, args.bits, work / "model")
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        server = start_server(work / "data", model, port, work / "server.log")
        try:
            with DocbitsClient(base_url, timeout=120) as client:
                wait_ready(client, server)
                ingested = ingest(client, train_split, 500)
                print(f"ingest: {ingested[0] / ingested[1]:.0f} docs/s", flush=True)
                info = client.info()
            results = []
            for clients in args.clients:
                search = asyncio.run(
                    drive(base_url, "/v1/search", queries, clients, args.seconds, server.pid)
                )
                noop = asyncio.run(
                    drive(base_url, "/livez", [{}], clients, args.seconds, server.pid)
                )
                print(
                    f"{clients:>3} clients: search {search.throughput:.0f}/s "
                    f"p50 {search.percentile(0.5):.1f} p99 {search.percentile(0.99):.1f} ms; "
                    f"no-op {noop.throughput:.0f}/s p99 {noop.percentile(0.99):.1f} ms",
                    flush=True,
                )
                results.append((search, noop))
            batching = batch_sizes(base_url)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        encode_ms = encode_cost_ms(model, [str(query["q"]) for query in queries[:320]])
    command = "python bench/service_load.py " + " ".join(sys.argv[1:])
    page = report(
        results,
        ingested,
        info.documents,
        info.buckets,
        info.bits or 0,
        command.strip(),
        load_before,
        batching,
        encode_ms,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
