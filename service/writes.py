"""The one write path: encode, store durably, then apply the feed up to this write, under the
write lock.

What a response acknowledges is committed in the store (one transaction per call) and already
searchable in this process's index (read-your-writes); other processes see it once their feed
follower applies it, and a client can wait for that with the response's `seq` (`min_seq`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from docbits.index.codes import code_to_hex
from docbits.index.store import ModelChangedError, StoredDocument, StoreError
from docbits.service.errors import ApiError
from docbits.service.state import ServiceState

ENCODE_ATTEMPTS = 3  # a batch encoded with a model that was switched meanwhile is encoded again


@dataclass(frozen=True)
class NewDocument:
    """A validated document about to be written."""

    id: str
    text: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Ingested:
    """What an ingest did: each document's code (hex, None without a model), the model that made
    them, and the feed position after the write."""

    codes: list[str | None]
    fingerprint: str | None
    seq: int


@dataclass(frozen=True)
class Deleted:
    """The ids that existed (now deleted) and the feed position after the delete."""

    ids: list[str]
    seq: int


def ingest(state: ServiceState, docs: list[NewDocument], insert_only: bool) -> Ingested:
    """Encode with the active model, store on condition that it is still the store's active
    model, and apply the feed up to this write.

    Encoding happens before the lock. If the model changed meanwhile (here, or in the store by
    another process), nothing was written: the batch is encoded again with the new model.
    """
    store = state.require_ready()
    texts = [doc.text for doc in docs]
    for _ in range(ENCODE_ATTEMPTS):
        active = state.active
        codes, forms = active.hasher.encode_with_forms(texts) if active else (None, None)
        fingerprint = active.fingerprint if active else None
        stored = [
            StoredDocument(
                id=doc.id,
                text=doc.text,
                metadata=doc.metadata,
                code=bytes(codes[row]) if codes is not None else None,
                fingerprint=fingerprint,
                form=forms[row].tobytes() if forms is not None else None,
            )
            for row, doc in enumerate(docs)
        ]
        try:
            with state.write_lock:
                if state.active is not active:
                    continue
                seq = store.upsert(stored, insert_only=insert_only, check_model=True)
                applied = apply_own_write(state, seq)
        except ModelChangedError:
            # Another process switched models: wait until this one serves the new model.
            state.follower.wait_for(store.last_seq(), state.settings.min_seq_wait_s)
            continue
        if not applied:  # a model change came before it: the follower reloads first
            state.follower.wait_for(seq, state.settings.min_seq_wait_s)
        state.maybe_autotrain()
        hex_codes = [None] * len(docs) if codes is None else [code_to_hex(bytes(r)) for r in codes]
        return Ingested(hex_codes, fingerprint, seq)
    raise ApiError(
        503,
        "unavailable",
        "the store's model changed while this batch was being encoded, and this process has not "
        "loaded the new one yet; nothing was written, retry",
        headers={"Retry-After": "1"},
    )


def delete(state: ServiceState, ids: Iterable[str]) -> Deleted:
    """Delete from the store, then apply the feed up to the delete."""
    store = state.require_ready()
    with state.write_lock:
        deleted = store.delete(list(ids))
        applied = apply_own_write(state, deleted.seq)
    if not applied:
        state.follower.wait_for(deleted.seq, state.settings.min_seq_wait_s)
    return Deleted(deleted.ids, deleted.seq)


def apply_own_write(state: ServiceState, seq: int) -> bool:
    """Apply the feed through a committed write (write lock held). A store that fails right
    after the commit does not undo it: the follower applies it later, and the write is still
    acknowledged."""
    try:
        return state.follower.apply_through(seq)
    except StoreError:
        return False
