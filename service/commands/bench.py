"""`docbits bench NAME [options]`: run one of the benchmark scripts in `bench/`."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = {
    "quality": "quality.py",
    "corpora": "quality_corpora.py",
    "teacher": "teacher_probe.py",
    "training": "service_training.py",
    "index": "index_speed.py",
    "service": "service_load.py",
    "speedups": "service_ab.py",
    "scale": "scale.py",
    "cluster": "cluster.py",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `bench NAME [script options...]`, NAME one of SCRIPTS."""
    p = sub.add_parser(
        "bench",
        help="run a benchmark (" + ", ".join(SCRIPTS) + ")",
        description=(
            "Runs bench/<script>.py from a source checkout with the given options; "
            "`docbits bench quality --help` lists the quality options."
        ),
    )
    p.add_argument("name", choices=sorted(SCRIPTS), help="which benchmark")
    p.add_argument("options", nargs=argparse.REMAINDER, help="passed on to the script")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the script with this interpreter; its exit status becomes ours."""
    script = BENCH_DIR / SCRIPTS[args.name]
    if not script.is_file():
        print(
            f"docbits bench: {script} not found; benchmarks run from a source checkout",
            file=sys.stderr,
        )
        return 2
    return subprocess.run([sys.executable, str(script), *args.options], check=False).returncode
