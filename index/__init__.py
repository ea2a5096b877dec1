"""Hash index over binary codes and the durable document store (no torch imports here)."""

from index.codes import code_to_hex, hex_to_code
from index.hash_index import BatchHits, HashIndex, Hit
from index.sqlite_store import SQLiteStore
from index.store import (
    DocumentStore,
    DuplicateIdError,
    IntegrityReport,
    StoredDocument,
    StoreError,
    StoreUnavailableError,
)

__all__ = [
    "BatchHits",
    "DocumentStore",
    "DuplicateIdError",
    "HashIndex",
    "Hit",
    "IntegrityReport",
    "SQLiteStore",
    "StoreError",
    "StoreUnavailableError",
    "StoredDocument",
    "code_to_hex",
    "hex_to_code",
]
