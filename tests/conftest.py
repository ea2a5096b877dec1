"""Shared fixtures: where the 20 Newsgroups tarball lives, and a loud failure when it is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NEWSGROUPS = Path(
    os.environ.get("DOCBITS_20NEWS", ROOT.parent / "shared" / "data" / "20news-bydate.tar.xz")
)


@pytest.fixture(scope="session")
def newsgroups_path() -> Path:
    """Path to 20news-bydate.tar.xz; fails (never skips) when it is missing."""
    if not NEWSGROUPS.exists():
        pytest.fail(
            f"20 Newsgroups not found at {NEWSGROUPS}. Get 20news-bydate.tar.gz from "
            "http://qwone.com/~jason/20Newsgroups/ (or the project's ../shared/data) and set "
            "DOCBITS_20NEWS to its path."
        )
    return NEWSGROUPS


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server for the whole session (see tests/postgres_server.py); each
    test makes its own database with `create_database()`. Fails loudly when PostgreSQL is not
    installed."""
    from tests.postgres_server import PostgresServer

    with PostgresServer() as server:
        yield server
