"""Model lifecycle: find a model by fingerprint (models folder, else the store), import one trained
offline, and switch the store to a new model.

A switch encodes every document lacking the new model's code while writers carry on, then stores
those codes and flips the active model in one store transaction, on condition that the feed has
not moved since the codes were computed (else it encodes what changed and tries again). Every
process, the switching one included, then serves the new model once its feed follower reaches
the `model` change (`service/follower.py`).
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from docbits.index.forms import pack_forms
from docbits.index.hash_index import HashIndex
from docbits.index.store import (
    ACTIVE_MODEL_SETTING,
    DocumentStore,
    FeedMovedError,
    ModelArtifact,
    ModelChangedError,
    StoreUnavailableError,
)
from docbits.index.store.base import DELETE, UPSERT
from docbits.service.errors import StartupError

if TYPE_CHECKING:
    from docbits.model.hasher import Hasher

log = logging.getLogger("docbits.service")
SWITCH_DEADLINE_S = 60.0  # how long a switch keeps trying to land between other writes


@dataclass(frozen=True)
class ActiveModel:
    """A hasher and the index of the codes it made; swapped together, never mixed."""

    hasher: Hasher
    index: HashIndex

    @property
    def fingerprint(self) -> str:
        return self.hasher.fingerprint

    @property
    def bits(self) -> int:
        return self.hasher.bits

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Codes and packed rescoring forms of query texts side by side, (n, bits/8 + bits/2)
        uint8: split them with `split_query`."""
        codes, forms = self.hasher.encode_with_forms(texts)
        return np.hstack([codes, pack_forms(forms)])

    def split_query(self, row: np.ndarray) -> tuple[bytes, np.ndarray]:
        """(code, packed form) of one row of `encode_queries`."""
        return row[: self.bits // 8].tobytes(), row[self.bits // 8 :]


def load_hasher(path: Path, torch_threads: int | None = None) -> Hasher:
    """Load a model folder (torch is imported only here, when a model is needed)."""
    import torch

    from docbits.model.hasher import Hasher

    if torch_threads:
        torch.set_num_threads(torch_threads)
    return Hasher.load(path)


def load_or_refuse(path: Path, torch_threads: int | None) -> Hasher:
    """`load_hasher`, with a damaged or missing model turned into a StartupError."""
    from docbits.model.errors import ArtifactError

    try:
        return load_hasher(path, torch_threads)
    except ArtifactError as exc:
        raise StartupError(f"cannot load the model at {path}: {exc}") from exc


class ModelShelf:
    """Models by fingerprint: `models_dir/<fingerprint>`, copied there from the store when this
    machine has no copy, and published to the store so that other machines can do the same."""

    def __init__(self, store: DocumentStore, models_dir: Path, torch_threads: int | None) -> None:
        self.store = store
        self.models_dir = models_dir
        self.torch_threads = torch_threads
        self._cached: Hasher | None = None  # the last one loaded (start-up loads it twice)

    def hasher(self, fingerprint: str) -> Hasher:
        """The model `fingerprint`; StartupError when it is in neither place or is damaged."""
        cached = self._cached
        if cached is not None and cached.fingerprint == fingerprint:
            return cached
        path = self.models_dir / fingerprint
        if not path.is_dir():
            self._copy_from_store(fingerprint, path)
        hasher = load_or_refuse(path, self.torch_threads)
        if hasher.fingerprint != fingerprint:
            raise StartupError(
                f"{path} holds a model with fingerprint {hasher.fingerprint[:12]}, not "
                f"{fingerprint[:12]}; its weights changed. Remove the folder to fetch the model "
                f"from the store again, or start with --model DIR to re-encode."
            )
        self._cached = hasher
        return hasher

    def _copy_from_store(self, fingerprint: str, path: Path) -> None:
        artifact = self.store.get_model(fingerprint)
        if artifact is None:
            raise StartupError(
                f"model {fingerprint[:12]} is neither in {path} nor in the store; restore that "
                "folder, or start with --model DIR to re-encode every document with another model"
            )
        scratch = artifact.write_to(self.models_dir / f"tmp-fetch-{uuid.uuid4().hex}")
        try:
            scratch.rename(path)
        except OSError:  # another process on this machine fetched it first
            shutil.rmtree(scratch, ignore_errors=True)
            if not path.is_dir():
                raise
        log.info("model %s copied from the store to %s", fingerprint[:12], path)

    def publish(self, fingerprint: str) -> None:
        """Store the model's files in the store (once), so that any process can load it."""
        if not self.store.has_model(fingerprint):
            self.store.put_model(ModelArtifact.from_directory(self.models_dir / fingerprint))

    def import_model(self, path: Path) -> Hasher:
        """Load an offline-trained model, keep a copy under `models_dir/<fingerprint>` and
        publish it to the store."""
        hasher = load_or_refuse(path, self.torch_threads)
        target = self.models_dir / hasher.fingerprint
        if not target.exists():
            scratch = self.models_dir / f"tmp-import-{uuid.uuid4().hex}"
            shutil.copytree(path, scratch)
            scratch.rename(target)
        self.publish(hasher.fingerprint)
        self._cached = hasher
        return hasher


def active_model(store: DocumentStore, hasher: Hasher) -> ActiveModel:
    """`hasher` with a fresh index of its stored codes."""
    index = store.load_index(hasher.fingerprint, hasher.bits)
    # An index bulk-built from zero codes cannot grow yet; start empty ones fresh.
    return ActiveModel(hasher, index if len(index) else HashIndex(hasher.bits))


# ---- switching --------------------------------------------------------------------------------


class PendingCodes:
    """Codes and rescoring forms computed for a switch, by id, kept up to date with the feed
    until the flip."""

    def __init__(self, store: DocumentStore, hasher: Hasher, batch_size: int) -> None:
        self.store, self.hasher, self.batch_size = store, hasher, batch_size
        self.position = store.last_seq()  # read before the texts: later changes are in the feed
        self.encoded: dict[str, tuple[bytes, bytes]] = {}
        self.add(store.ids_without_code(hasher.fingerprint, form=True))

    def add(self, ids: list[str]) -> None:
        """Encode the stored texts of `ids` (forgetting those no longer stored)."""
        found, codes, forms = encode_ids(self.store, self.hasher, ids, self.batch_size)
        for doc_id in set(ids) - set(found):
            self.encoded.pop(doc_id, None)
        pairs = ((code.tobytes(), form.tobytes()) for code, form in zip(codes, forms, strict=True))
        self.encoded.update(zip(found, pairs, strict=True))

    def follow_feed(self) -> bool:
        """Re-encode what was written or deleted since; False if the model is already active
        (another process switched to it meanwhile)."""
        changed: dict[str, None] = {}
        while changes := self.store.changes_since(self.position):
            for change in changes:
                if change.kind == DELETE:
                    self.encoded.pop(change.id, None)
                    changed.pop(change.id, None)
                elif change.kind == UPSERT:
                    changed[change.id] = None
                elif change.fingerprint == self.hasher.fingerprint:
                    return False
            self.position = changes[-1].seq
        self.add(list(changed))
        return True

    def arrays(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(ids, codes, forms) as `switch_model` takes them."""
        ids = list(self.encoded)
        bits = self.hasher.bits
        codes = b"".join(code for code, _ in self.encoded.values())
        forms = b"".join(form for _, form in self.encoded.values())
        return (
            ids,
            np.frombuffer(codes, dtype=np.uint8).reshape(len(ids), bits // 8),
            np.frombuffer(forms, dtype=np.int8).reshape(len(ids), bits),
        )


def switch_to(store: DocumentStore, hasher: Hasher, encode_batch_size: int) -> int:
    """Make `hasher` the store's active model, its codes stored for every document; returns the
    feed position after the switch (what a process must apply to serve it)."""
    fingerprint = hasher.fingerprint
    if store.get_setting(ACTIVE_MODEL_SETTING) == fingerprint:
        return encode_missing(store, hasher, encode_batch_size)
    pending = PendingCodes(store, hasher, encode_batch_size)
    log.info("switching to model %s: %d to encode", fingerprint[:12], len(pending.encoded))
    deadline = time.monotonic() + SWITCH_DEADLINE_S
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        if not pending.follow_feed():
            return encode_missing(store, hasher, encode_batch_size)
        ids, codes, forms = pending.arrays()
        try:
            seq = store.switch_model(fingerprint, ids, codes, forms, expect_seq=pending.position)
        except FeedMovedError:
            continue
        log.info("switched to model %s at feed position %d (%d re-encoded)", fingerprint[:12],
                 seq, len(ids))  # fmt: skip
        return seq
    raise StoreUnavailableError(
        f"the switch to model {fingerprint[:12]} found new writes at each of {attempts} "
        f"attempts in {SWITCH_DEADLINE_S:g} s; retry when writes are calmer"
    )


def encode_missing(store: DocumentStore, hasher: Hasher, encode_batch_size: int) -> int:
    """Encode documents lacking the active model's code or rescoring form (none, unless written
    before forms existed or by a process that did not check the model); returns the feed
    position."""
    missing = store.ids_without_code(hasher.fingerprint, form=True)
    ids, codes, forms = encode_ids(store, hasher, missing, encode_batch_size)
    if not ids:
        return store.last_seq()
    log.info("encoding %d documents that had no current code or form", len(ids))
    try:
        return store.set_codes(ids, codes, hasher.fingerprint, check_model=True, forms=forms)
    except ModelChangedError:  # another switch came first: it encoded them
        return store.last_seq()


def encode_ids(
    store: DocumentStore, hasher: Hasher, ids: list[str], batch_size: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, codes, rescoring forms) of the stored documents among `ids`, read and encoded
    `batch_size` at a time."""
    done_ids: list[str] = []
    codes = [np.zeros((0, hasher.bits // 8), dtype=np.uint8)]
    forms = [np.zeros((0, hasher.bits), dtype=np.int8)]
    for start in range(0, len(ids), batch_size):
        found = store.get_many(ids[start : start + batch_size])
        batch = [found[doc_id] for doc_id in ids[start : start + batch_size] if doc_id in found]
        batch_codes, batch_forms = hasher.encode_with_forms([doc.text for doc in batch])
        codes.append(batch_codes)
        forms.append(batch_forms)
        done_ids.extend(doc.id for doc in batch)
    return done_ids, np.concatenate(codes), np.concatenate(forms)
