"""Hash index over binary codes and the durable document store (no torch imports here)."""

from pathlib import Path

from docbits.index.kernel_cache import drop_stale_caches

drop_stale_caches(Path(__file__).parent)  # before any kernel loads its cache

from docbits.index.codes import code_to_hex, hex_to_code  # noqa: E402
from docbits.index.hash_index import BatchHits, HashIndex, Hit  # noqa: E402
from docbits.index.store import (  # noqa: E402
    DocumentStore,
    DuplicateIdError,
    IntegrityReport,
    StoredDocument,
    StoreError,
    StoreUnavailableError,
)
from docbits.index.store.sqlite import SQLiteStore  # noqa: E402

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
