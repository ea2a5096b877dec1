"""The CLI's top level: every command is registered and `--help` works without heavy imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from docbits.service.cli import build_parser

COMMANDS = ["serve", "train", "eval", "ingest", "search", "bench"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "docbits.service.cli", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert command in out.stdout


def test_parser_requires_a_command() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([])
