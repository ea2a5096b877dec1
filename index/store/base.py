"""The `DocumentStore` interface: durable documents, their codes and settings.

Backends (SQLite embedded, PostgreSQL later) implement it; nothing here is backend-specific.
Every write method is one transaction: all of it is durable when the call returns, or none of it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from docbits.index.hash_index import HashIndex

ACTIVE_MODEL_SETTING = "active_model"


@dataclass
class StoredDocument:
    """One document as stored; `code` is None until a model has encoded it."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    code: bytes | None = None
    fingerprint: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class IntegrityReport:
    """How the store and the in-memory index agree for one model fingerprint."""

    ok: bool
    documents: int
    indexed: int
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    storage_errors: list[str] = field(default_factory=list)


class StoreError(Exception):
    """Any failure of the document store."""


class DuplicateIdError(StoreError):
    """An insert-only write named ids that already exist; nothing was written."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = sorted(set(ids))
        shown = ", ".join(self.ids[:10]) + (" ..." if len(self.ids) > 10 else "")
        super().__init__(f"{len(self.ids)} document id(s) already exist: {shown}")


class StoreUnavailableError(StoreError):
    """The store cannot serve right now (disk full, read-only, locked, unreachable)."""


class DocumentStore(ABC):
    """Durable documents and codes; safe to call from several threads, writes serialised."""

    @abstractmethod
    def upsert(self, docs: Sequence[StoredDocument], insert_only: bool = False) -> None:
        """Write documents atomically; existing ids keep created_at and get a new updated_at.

        With `insert_only`, raise DuplicateIdError (writing nothing) if any id already exists or
        repeats within the batch. Timestamps are set by the store.
        """

    @abstractmethod
    def get(self, doc_id: str) -> StoredDocument | None:
        """One document, or None."""

    @abstractmethod
    def get_many(self, ids: Sequence[str]) -> dict[str, StoredDocument]:
        """The documents that exist among `ids`, keyed by id."""

    def get_metadata(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The metadata of the documents that exist among `ids`, keyed by id."""
        return {doc_id: doc.metadata for doc_id, doc in self.get_many(ids).items()}

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> list[str]:
        """Delete atomically; returns the ids that existed (in the order given)."""

    @abstractmethod
    def count(self) -> int:
        """Number of documents."""

    @abstractmethod
    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """The subset of `ids` that exist."""

    @abstractmethod
    def iter_documents(self, batch_size: int = 1000) -> Iterator[list[StoredDocument]]:
        """Every document, in insertion order, `batch_size` at a time."""

    @abstractmethod
    def iter_codes(
        self, fingerprint: str, batch_size: int = 100_000
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """(ids, (n, b/8) uint8 codes) of documents coded by `fingerprint`, in insertion order."""

    @abstractmethod
    def ids_without_code(self, fingerprint: str) -> list[str]:
        """Ids whose code is missing or was made by another model, in insertion order."""

    @abstractmethod
    def set_codes(self, ids: Sequence[str], codes: np.ndarray, fingerprint: str) -> None:
        """Store codes for existing documents atomically (unknown ids raise StoreError)."""

    @abstractmethod
    def get_setting(self, key: str) -> str | None:
        """A stored setting, or None."""

    @abstractmethod
    def set_setting(self, key: str, value: str) -> None:
        """Store a setting durably."""

    @abstractmethod
    def switch_model(self, fingerprint: str, ids: Sequence[str], codes: np.ndarray) -> None:
        """In one transaction, store these codes and make `fingerprint` the active model."""

    @abstractmethod
    def storage_errors(self) -> list[str]:
        """Problems the backend's own consistency check finds (empty when healthy)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""

    def integrity_check(self, index: HashIndex, fingerprint: str) -> IntegrityReport:
        """Compare the stored codes of `fingerprint` with the index, id by id."""
        stored: dict[str, bytes] = {}
        for ids, codes in self.iter_codes(fingerprint):
            stored.update(zip(ids, (row.tobytes() for row in codes), strict=True))
        indexed_ids, indexed_codes = index.to_arrays()
        indexed = dict(zip(indexed_ids, (row.tobytes() for row in indexed_codes), strict=True))
        missing = [doc_id for doc_id in stored if doc_id not in indexed]
        extra = [doc_id for doc_id in indexed if doc_id not in stored]
        mismatched = [
            doc_id
            for doc_id, code in stored.items()
            if doc_id in indexed and indexed[doc_id] != code
        ]
        storage_errors = self.storage_errors()
        return IntegrityReport(
            ok=not (missing or extra or mismatched or storage_errors),
            documents=len(stored),
            indexed=len(indexed),
            missing=missing,
            extra=extra,
            mismatched=mismatched,
            storage_errors=storage_errors,
        )

    def load_index(self, fingerprint: str, bits: int) -> HashIndex:
        """Build the in-memory index of `fingerprint`'s codes, in insertion order."""
        from docbits.index.hash_index import HashIndex

        all_ids: list[str] = []
        batches: list[np.ndarray] = []
        for ids, codes in self.iter_codes(fingerprint):
            if codes.shape[1] != bits // 8:
                raise StoreError(
                    f"stored codes of model {fingerprint[:12]} have {codes.shape[1] * 8} bits, "
                    f"expected {bits}"
                )
            all_ids.extend(ids)
            batches.append(codes)
        codes = np.concatenate(batches) if batches else np.zeros((0, bits // 8), np.uint8)
        index = HashIndex.from_arrays(bits, all_ids, codes)
        index.warm_up()
        return index
