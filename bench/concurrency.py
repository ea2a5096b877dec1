"""Concurrency benchmark: W writers and R readers against one real `docbits serve` on 127.0.0.1.

Trains a tiny model, starts the server over a temporary data folder, runs the mixed load of
`tests/reliability/load.py` for a fixed time and prints what the clients saw (statuses, 5xx,
read-your-writes failures, latency) and how the server's resident memory moved.

    .venv/bin/python bench/concurrency.py [--writers 16] [--readers 16] [--seconds 120]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability.conftest import serving, topical_documents, train_tiny_model  # noqa: E402
from tests.reliability.load import run_load  # noqa: E402


def main() -> int:
    """Run the load once; exit 1 when any 5xx, dropped request or invisible write was seen."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--readers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="docbits-concurrency-") as scratch:
        folder = Path(scratch)
        texts = [doc["text"] for doc in topical_documents(200, seed=3)]
        model_dir = train_tiny_model(folder / "model", texts)
        with serving(folder / "data", model_dir=model_dir) as server:
            report = run_load(
                server.url, server.process.pid, args.writers, args.readers, args.seconds
            )
    print(report.summary())
    failed = report.server_errors or report.transport_errors or report.invisible_after_ack
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
