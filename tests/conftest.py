"""Shared fixtures: where the data sets live (20 Newsgroups, Reuters-21578, AG News), and a loud
failure when one is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NEWSGROUPS = Path(
    os.environ.get("DOCBITS_20NEWS", ROOT.parent / "shared" / "data" / "20news-bydate.tar.xz")
)
DATA = Path(os.environ.get("DOCBITS_DATA", ROOT.parent / "shared" / "data"))


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


def _data_file(name: str, what: str) -> Path:
    """Path of a data set under DOCBITS_DATA; fails (never skips) when it is missing."""
    path = DATA / name
    if not path.exists():
        pytest.fail(f"{what} not found at {path}: set DOCBITS_DATA to the folder holding {name}.")
    return path


@pytest.fixture(scope="session")
def reuters_path() -> Path:
    """Path to reuters21578.tar.xz (Reuters-21578, Distribution 1.0)."""
    return _data_file("reuters21578.tar.xz", "Reuters-21578")


@pytest.fixture(scope="session")
def ag_news_path() -> Path:
    """Path to ag_news_test.csv.xz (the AG News test set)."""
    return _data_file("ag_news_test.csv.xz", "AG News")


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server for the whole session (see tests/postgres_server.py); each
    test makes its own database with `create_database()`. Fails loudly when PostgreSQL is not
    installed."""
    from tests.postgres_server import PostgresServer

    with PostgresServer() as server:
        yield server
