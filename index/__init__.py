"""Hash index over binary codes and the durable document store (no torch imports here)."""

from docbits.index.codes import code_to_hex, hex_to_code
from docbits.index.hash_index import HashIndex, Hit
from docbits.index.store import (
    DocumentStore,
    DuplicateIdError,
    IntegrityReport,
    SQLiteStore,
    StoredDocument,
    StoreError,
    StoreUnavailableError,
)

__all__ = [
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
