"""Durable documents, codes and settings: the `DocumentStore` interface and one file per backend.

`base.py` holds the interface and the errors every backend raises; `sqlite.py` is the embedded
default (one file under the data folder), `postgres.py` the shared one (many processes and
machines over one PostgreSQL database). `open_store` picks one from a URL.
"""

from pathlib import Path
from urllib.parse import urlsplit

from docbits.index.store.base import (
    ACTIVE_MODEL_SETTING,
    Change,
    ChangeListener,
    Deleted,
    DocumentStore,
    DuplicateIdError,
    FeedGapError,
    FeedMovedError,
    IntegrityReport,
    JobRunningError,
    ModelArtifact,
    ModelChangedError,
    StoredDocument,
    StoreError,
    StoreFullError,
    StoreUnavailableError,
    TrainingJob,
    mask_url,
)
from docbits.index.store.sqlite import SQLiteStore

SQLITE_FILE = "docbits.sqlite3"
POSTGRES_SCHEMES = ("postgresql", "postgres")


def open_store(url: str | None, data_dir: Path) -> DocumentStore:
    """The store a URL names: unset or empty, the SQLite file `data_dir/docbits.sqlite3`;
    `postgresql://user:password@host:port/database` (or `postgres://`), PostgreSQL.

    A malformed or unsupported URL raises StoreError, an unreachable server
    StoreUnavailableError; both name the URL with its password masked.
    """
    if not url:
        return SQLiteStore(Path(data_dir) / SQLITE_FILE)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is what rejects a malformed one
    except ValueError as error:
        raise StoreError(f"malformed store URL {mask_url(url)}: {error}") from None
    if parts.scheme.lower() not in POSTGRES_SCHEMES:
        raise StoreError(
            f"unsupported store URL {mask_url(url)}: expected postgresql://user:password@host:"
            "port/database, or no URL for the SQLite file in the data folder"
        )
    from docbits.index.store.postgres import PostgresStore

    return PostgresStore(url)


__all__ = [
    "ACTIVE_MODEL_SETTING",
    "SQLITE_FILE",
    "Change",
    "ChangeListener",
    "Deleted",
    "DocumentStore",
    "DuplicateIdError",
    "FeedGapError",
    "FeedMovedError",
    "IntegrityReport",
    "JobRunningError",
    "ModelArtifact",
    "ModelChangedError",
    "SQLiteStore",
    "StoreError",
    "StoreFullError",
    "StoreUnavailableError",
    "StoredDocument",
    "TrainingJob",
    "mask_url",
    "open_store",
]
