"""Mixed read/write load against a running server, shared by the concurrency test and benchmark.

Writers upsert small batches and, once a batch is acknowledged, search for each document with a
metadata filter unique to it: it must be found at once (read-your-writes). Readers search and
read documents. Every answer is counted by status; a sampler records the server's resident memory.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.reliability.conftest import topical_documents

REQUEST_TIMEOUT_S = 30.0
QUERIES = ["orbit shuttle launch", "pixel shader texture", "goalie puck", "patient vaccine dose"]


@dataclass
class LoadReport:
    """What the clients saw and what the server's memory did."""

    writers: int
    readers: int
    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: list[str] = field(default_factory=list)
    documents_written: int = 0
    invisible_after_ack: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    lock = threading.Lock()

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    def summary(self) -> str:
        """One paragraph of figures for logs and docs."""
        rss = f"{self.rss_mib[0]:.0f} → {self.rss_mib[-1]:.0f} MiB" if self.rss_mib else "n/a"
        return (
            f"{self.writers} writers + {self.readers} readers for {self.seconds:.0f} s: "
            f"{self.requests} requests ({self.requests / self.seconds:.0f}/s), statuses "
            f"{dict(sorted(self.statuses.items()))}, 5xx {self.server_errors}, transport errors "
            f"{len(self.transport_errors)}, documents written {self.documents_written}, "
            f"invisible after ack {len(self.invisible_after_ack)}, p50 "
            f"{self.percentile_ms(0.5):.1f} ms, p99 {self.percentile_ms(0.99):.1f} ms, max "
            f"{self.percentile_ms(1.0):.0f} ms, server RSS {rss}"
        )


def resident_mib(pid: int) -> float | None:
    """Resident set size of a process from /proc, or None when unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _timed(
    report: LoadReport, client: httpx.Client, method: str, path: str, **kw: object
) -> httpx.Response | None:
    started = time.monotonic()
    try:
        response = client.request(method, path, **kw)  # type: ignore[arg-type]
    except httpx.HTTPError as error:
        with report.lock:
            report.transport_errors.append(f"{method} {path}: {type(error).__name__}: {error}")
        return None
    with report.lock:
        report.statuses[response.status_code] += 1
        report.latencies_s.append(time.monotonic() - started)
    return response


def _writer(url: str, number: int, report: LoadReport, until: float) -> None:
    rng = random.Random(number)
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        batch_number = 0
        while time.monotonic() < until:
            docs = topical_documents(2, seed=number * 100_000 + batch_number, prefix="x")
            for i, doc in enumerate(docs):
                doc["id"] = f"w{number}-{batch_number}-{i}"
                doc["metadata"]["tag"] = doc["id"]
            batch_number += 1
            response = _timed(report, client, "POST", "/v1/documents", json={"documents": docs})
            if response is None or response.status_code != 200:
                continue
            with report.lock:
                report.documents_written += len(docs)
            doc = rng.choice(docs)
            body = {"q": doc["text"], "limit": 10, "filter": {"tag": doc["id"]}}
            found = _timed(report, client, "POST", "/v1/search", json=body)
            if found is not None and found.status_code == 200:
                hits = [hit["id"] for hit in found.json()["hits"]]
                if hits != [doc["id"]]:
                    with report.lock:
                        report.invisible_after_ack.append(doc["id"])


def _reader(url: str, number: int, report: LoadReport, until: float, known_ids: list[str]) -> None:
    rng = random.Random(10_000 + number)
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        while time.monotonic() < until:
            choice = rng.random()
            if choice < 0.5:
                params = {"q": rng.choice(QUERIES), "radius": rng.randint(0, 2), "limit": 20}
                _timed(report, client, "GET", "/v1/search", params=params)
            elif choice < 0.8:
                _timed(report, client, "GET", f"/v1/documents/{rng.choice(known_ids)}")
            else:
                body = {"queries": rng.sample(QUERIES, 3), "nearest": True, "limit": 5}
                _timed(report, client, "POST", "/v1/search", json=body)


def _sample_memory(pid: int, report: LoadReport, until: float) -> None:
    while time.monotonic() < until:
        rss = resident_mib(pid)
        if rss is not None:
            report.rss_mib.append(rss)
        time.sleep(0.5)


def run_load(
    url: str, server_pid: int, writers: int, readers: int, seconds: float, seed_docs: int = 200
) -> LoadReport:
    """Seed `seed_docs` documents, then run writers and readers for `seconds`; bounded in time."""
    seeded = topical_documents(seed_docs, seed=1, prefix="seed")
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        response = client.post("/v1/documents", json={"documents": seeded})
        response.raise_for_status()
    report = LoadReport(writers=writers, readers=readers, seconds=seconds)
    until = time.monotonic() + seconds
    known = [doc["id"] for doc in seeded]
    threads = [
        threading.Thread(target=_writer, args=(url, n, report, until)) for n in range(writers)
    ]
    threads += [
        threading.Thread(target=_reader, args=(url, n, report, until, known))
        for n in range(readers)
    ]
    threads.append(threading.Thread(target=_sample_memory, args=(server_pid, report, until)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 2 * REQUEST_TIMEOUT_S)
    stuck = [thread.name for thread in threads if thread.is_alive()]
    if stuck:
        raise RuntimeError(f"client threads still blocked after the run (deadlock?): {stuck}")
    return report
