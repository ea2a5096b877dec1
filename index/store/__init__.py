"""Durable documents, codes and settings: the `DocumentStore` interface and one file per backend.

`base.py` holds the interface and the errors every backend raises; `sqlite.py` is the embedded
default (one file under the data folder).
"""

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

__all__ = [
    "ACTIVE_MODEL_SETTING",
    "DocumentStore",
    "DuplicateIdError",
    "IntegrityReport",
    "SQLiteStore",
    "StoreError",
    "StoreUnavailableError",
    "StoredDocument",
]
