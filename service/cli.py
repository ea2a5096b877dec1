"""The `docbits` command line: one sub-command per module in `service/commands/`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from docbits.service.commands import bench, eval, ingest, search, serve, train

COMMANDS = (serve, train, eval, ingest, search, bench)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser; each command module adds its own sub-parser."""
    parser = argparse.ArgumentParser(
        prog="docbits", description="Semantic-hashing retrieval: train, evaluate, serve, query."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
