"""Train through the service as a user would, and score what it learned.

Starts a real `docbits serve` (SQLite under a temporary data folder, automatic training off),
ingests a corpus's train side over HTTP, asks `POST /v1/model/train` for a model, waits for the
job and prints its wall time, epochs, why it stopped, and the P@100 of the model it switched to
(the harness of `docbits eval`: test side against train side, tie-aware).

Usage: .venv/bin/python bench/service_training.py [--corpus 20ng-raw] [--bits 64]
       [--budget-s 240]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.corpora import CORPORA, split_of  # noqa: E402
from bench.service_load import free_port, wait_ready  # noqa: E402
from docbits.model.evaluate import evaluate_hasher  # noqa: E402
from docbits.model.hasher import Hasher  # noqa: E402
from docbits.service.client import DocbitsClient  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=list(CORPORA), default="20ng-raw")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--budget-s", type=float, default=None, help="the service's default")
    args = parser.parse_args()
    split = split_of(args.corpus)
    with tempfile.TemporaryDirectory(prefix="docbits-train-bench-") as scratch:
        port = free_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith("DOCBITS_")}
        command = [sys.executable, "-m", "docbits.service.cli", "serve", "--data-dir", scratch]
        command += ["--port", str(port), "--autotrain-min-docs", "0", "--retrain-growth", "0"]
        command += ["--train-bits", str(args.bits), "--log-level", "warning"]
        if args.budget_s is not None:
            command += ["--train-budget-s", str(args.budget_s)]
        server = subprocess.Popen(command, env=env, start_new_session=True)
        try:
            with DocbitsClient(f"http://127.0.0.1:{port}", timeout=120) as client:
                wait_ready(client, server)
                documents = [
                    {"id": doc_id, "text": text}
                    for doc_id, text in zip(split.train_ids, split.train_texts, strict=True)
                ]
                for start in range(0, len(documents), 500):
                    client.ingest(documents[start : start + 500])
                started = time.monotonic()
                job = client.wait_for_job(client.train().id, timeout=3600)
                wall = time.monotonic() - started
            hasher = Hasher.load(Path(scratch) / "models" / job.fingerprint)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    validation = hasher.config["validation"]
    result = evaluate_hasher(hasher, split)
    print(
        json.dumps(
            {
                "corpus": args.corpus,
                "bits": args.bits,
                "status": job.status,
                "documents": job.documents,
                "job_wall_s": round(wall, 1),
                "training_s": round(hasher.config["training_seconds"], 1),
                "time_budget_s": hasher.config["train"]["time_budget_s"],
                "epochs_run": validation["epochs_run"],
                "best_epoch": validation["best_epoch"],
                "stopped_by": validation["stopped_by"],
                "p100": round(result["precision_at_100"]["tie_aware"], 4),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
