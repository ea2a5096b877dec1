"""The one write path: encode, store durably, then update the index, under the write lock.

What a response acknowledges is committed in the store (one transaction per call) and already
searchable in this process's index.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from docbits.index.codes import code_to_hex
from docbits.index.store import StoredDocument
from docbits.service.state import ServiceState


@dataclass(frozen=True)
class NewDocument:
    """A validated document about to be written."""

    id: str
    text: str
    metadata: dict[str, Any]


def ingest(
    state: ServiceState, docs: list[NewDocument], insert_only: bool
) -> tuple[list[str | None], str | None]:
    """Encode, store durably, update the index; returns each code (hex) and the fingerprint.

    Encoding happens before the lock; if the model switched meanwhile, the batch is encoded
    again with the new one, so no document is stored with a code of a retired model.
    """
    store = state.require_ready()
    texts = [doc.text for doc in docs]
    active = state.active
    codes, forms = active.hasher.encode_with_forms(texts) if active else (None, None)
    with state.write_lock:
        if state.active is not active:
            active = state.active
            codes, forms = active.hasher.encode_with_forms(texts) if active else (None, None)
        fingerprint = active.fingerprint if active else None
        store.upsert(
            [
                StoredDocument(
                    id=doc.id,
                    text=doc.text,
                    metadata=doc.metadata,
                    code=bytes(codes[row]) if codes is not None else None,
                    fingerprint=fingerprint,
                    form=forms[row].tobytes() if forms is not None else None,
                )
                for row, doc in enumerate(docs)
            ],
            insert_only=insert_only,
        )
        if active is not None and codes is not None:
            active.index.upsert([doc.id for doc in docs], codes)
        state.documents_changed()
    state.maybe_autotrain()
    if codes is None:
        return [None] * len(docs), None
    return [code_to_hex(bytes(row)) for row in codes], fingerprint


def delete(state: ServiceState, ids: Iterable[str]) -> list[str]:
    """Delete from the store and the index together; returns the ids that existed."""
    store = state.require_ready()
    with state.write_lock:
        deleted = store.delete(list(ids)).ids
        active = state.active
        if active is not None and deleted:
            active.index.remove(deleted)
        state.documents_changed()
    return deleted
