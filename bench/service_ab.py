"""Same-run A/B of the HTTP service: several server variants, interleaved, on the same box.

Each arm is a Python interpreter (a checkout's .venv: its editable install decides which code
runs) and the speed-ups swapped for plain versions (`bench/ab_server.py --without ...`). Every
arm gets its own data folder, ingests the 20 Newsgroups train split once (timed), then each round
starts it, warms it up and drives `GET /v1/search` (test posts as queries, radius 0, limit 10) at
each client count; arms run in a rotated order per round and the median round is reported.

    python bench/service_ab.py --model DIR --arm today=/work/base/.venv/bin/python \
        --arm plain=.venv/bin/python --arm no-batcher=.venv/bin/python:batcher --rounds 3
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.service_load import (  # noqa: E402
    DEFAULT_CORPUS,
    LoadResult,
    drive,
    free_port,
    run_loop,
    wait_ready,
)
from docbits.model.corpus import load_corpus  # noqa: E402
from docbits.service.client import DocbitsClient  # noqa: E402


@dataclass
class Arm:
    """One server variant: its interpreter, the swaps it runs without, its results."""

    label: str
    python: str
    without: list[str]
    params: dict[str, str] = field(default_factory=dict)
    ingest_docs_per_s: float = 0.0
    runs: dict[int, list[LoadResult]] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> Arm:
        """LABEL=PYTHON[:SWAP,...][?NAME=VALUE&...] (query parameters added to every search)."""
        label, _, rest = spec.partition("=")
        rest, _, query = rest.partition("?")
        python, _, swaps = rest.partition(":")
        params = dict(pair.split("=", 1) for pair in query.split("&") if pair)
        return cls(label, python, [s for s in swaps.split(",") if s], params)


def start(arm: Arm, data_dir: Path, model: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [arm.python, str(ROOT / "bench" / "ab_server.py")]
    for name in arm.without:
        command += ["--without", name]
    command += ["--", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    command += ["--model", str(model), "--autotrain-min-docs", "0", "--log-level", "warning"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("DOCBITS_")}
    env["DOCBITS_RETRAIN_GROWTH"] = "0"  # an environment variable: older versions ignore it
    return subprocess.Popen(command, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def ingest_raw(base_url: str, corpus: list, batch: int) -> tuple[int, float]:
    """POST the corpus in batches with plain httpx (any version's answers); (documents, s)."""
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=120) as http:
        for start in range(0, len(corpus), batch):
            docs = corpus[start : start + batch]
            http.post(
                "/v1/documents",
                json={
                    "documents": [
                        {"id": d.id, "text": d.text, "metadata": {"group": d.labels[0]}}
                        for d in docs
                    ]
                },
            ).raise_for_status()
    return len(corpus), time.perf_counter() - started


def stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


def median_run(runs: list[LoadResult]) -> LoadResult:
    """The run with the median throughput."""
    return sorted(runs, key=lambda run: run.throughput)[len(runs) // 2]


def report(arms: list[Arm], clients: list[int], command: str, rounds: int) -> str:
    """The page: one row per (arm, clients), then what each speed-up saves.

    A swap arm runs without one speed-up; what that speed-up saves is the share of the server
    CPU time per request that running without it adds: 1 - (with) / (without), against the
    arm named `new`, or the first arm when there is none.
    """
    by_label = {arm.label: arm for arm in arms}
    reference = by_label.get("new", arms[0])
    lines = [
        "| arm | runs without, query | clients | search req/s | vs reference | p50 ms | p99 ms "
        "| server CPU ms/req | ingest docs/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm in arms:
        for count in clients:
            run = median_run(arm.runs[count])
            base = median_run(reference.runs[count])
            lines.append(
                f"| {arm.label} | {', '.join(arm.without) or '—'} "
                f"{' '.join(f'{k}={v}' for k, v in arm.params.items())} | {count} "
                f"| {run.throughput:.0f} | {run.throughput / base.throughput:.2f}× "
                f"| {run.percentile(0.5):.1f} | {run.percentile(0.99):.1f} "
                f"| {run.cpu_ms_per_request:.3f} | {arm.ingest_docs_per_s:.0f} |"
            )
    savings = [
        "| speed-up | saves at "
        + " | saves at ".join(f"{count} client{'s' if count > 1 else ''}" for count in clients)
        + " | kept (saves ≥ 10% somewhere) |",
        "|---|" + "---:|" * len(clients) + "---|",
    ]
    for arm in arms:
        if not arm.without:
            continue
        shares = []
        for count in clients:
            with_it = median_run(reference.runs[count]).cpu_ms_per_request
            without = median_run(arm.runs[count]).cpu_ms_per_request
            shares.append(1 - with_it / without)
        verdict = "yes" if max(shares) >= 0.10 else "**no**"
        savings.append(
            f"| {', '.join(arm.without)} | "
            + " | ".join(f"{share:.0%}" for share in shares)
            + f" | {verdict} |"
        )
    load = os.getloadavg()[0]
    return (
        f"Command: `{command}` ({rounds} rounds; each cell is the round with the median "
        f"throughput; load average {load:.1f} at the end, on 2 CPUs shared with the load "
        "generator and whatever else runs).\n\n"
        + "\n".join(lines)
        + "\n\nWhat each speed-up saves, in server CPU time per search request:\n\n"
        + "\n".join(savings)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--model", type=Path, required=True, help="a saved model folder")
    parser.add_argument("--arm", action="append", required=True, help="LABEL=PYTHON[:SWAP,...]")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the markdown table here too")
    args = parser.parse_args()

    arms = [Arm.parse(spec) for spec in args.arm]
    documents = load_corpus(args.corpus)
    train_split = [d for d in documents if d.split == "train"]
    queries = [{"q": d.text[:2000], "limit": 10} for d in documents if d.split == "test"][:2000]
    with tempfile.TemporaryDirectory(prefix="docbits-ab-") as scratch:
        work = Path(scratch)
        for round_number in range(args.rounds):
            shift = round_number % len(arms)
            for arm in arms[shift:] + arms[:shift]:
                port = free_port()
                data_dir = work / arm.label
                fresh = not data_dir.exists()
                server = start(arm, data_dir, args.model, port, work / f"{arm.label}.log")
                base_url = f"http://127.0.0.1:{port}"
                try:
                    with DocbitsClient(base_url, timeout=120) as client:
                        wait_ready(client, server)
                    if fresh:
                        count, seconds = ingest_raw(base_url, train_split, 500)
                        arm.ingest_docs_per_s = count / seconds
                    searches = [{**query, **arm.params} for query in queries]
                    run_loop(drive(base_url, "/v1/search", searches, 8, 2.0, server.pid))
                    for count in args.clients:
                        result = run_loop(
                            drive(base_url, "/v1/search", searches, count, args.seconds, server.pid)
                        )
                        arm.runs.setdefault(count, []).append(result)
                        print(
                            f"round {round_number} {arm.label:>14} {count:>3} clients: "
                            f"{result.throughput:.0f}/s p99 {result.percentile(0.99):.1f} ms "
                            f"cpu {result.cpu_ms_per_request:.2f} ms/req errors {result.errors}",
                            flush=True,
                        )
                finally:
                    stop(server)
                time.sleep(1.0)
    table = report(
        arms, args.clients, "python bench/service_ab.py " + " ".join(sys.argv[1:]), args.rounds
    )
    print(table)
    if args.out:
        args.out.write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
