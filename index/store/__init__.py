"""Durable documents, codes and settings: the `DocumentStore` interface and one file per backend.

`base.py` holds the interface and the errors every backend raises; `sqlite.py` is the embedded
default (one file under the data folder).
"""

from pathlib import Path

from docbits.index.store.base import (
    ACTIVE_MODEL_SETTING,
    DocumentStore,
    DuplicateIdError,
    IntegrityReport,
    StoredDocument,
    StoreError,
    StoreUnavailableError,
)
from docbits.index.store.sqlite import SQLiteStore

SQLITE_FILE = "docbits.sqlite3"


def open_store(url: str | None, data_dir: Path) -> DocumentStore:
    """The store a URL names; no URL is the embedded default, an SQLite file in `data_dir`."""
    if not url:
        return SQLiteStore(data_dir / SQLITE_FILE)
    raise StoreError(f"unsupported store URL {url!r}: leave it unset for the embedded SQLite store")


__all__ = [
    "ACTIVE_MODEL_SETTING",
    "DocumentStore",
    "DuplicateIdError",
    "IntegrityReport",
    "SQLiteStore",
    "StoreError",
    "StoreUnavailableError",
    "StoredDocument",
    "open_store",
]
