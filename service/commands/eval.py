"""`docbits eval`: placeholder until its module lands."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("eval", help="(not built yet)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Not built yet."""
    raise SystemExit("docbits eval: not built yet")
