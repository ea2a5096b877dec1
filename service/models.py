"""Model lifecycle: load a model folder, import one trained offline, and switch the served model.

A switch re-encodes every document whose code is not from the new model, stores those codes and
makes the model active in one store transaction, then builds its index: searches keep using the
previous model until the caller swaps in the `ActiveModel` returned here.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from docbits.index.hash_index import HashIndex
from docbits.index.store import ACTIVE_MODEL_SETTING, DocumentStore
from docbits.service.errors import StartupError

if TYPE_CHECKING:
    from docbits.model.hasher import Hasher

log = logging.getLogger("docbits.service")


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
        """Codes and rescoring forms of query texts side by side, (n, bits/8 + bits) uint8:
        split them with `split_query`."""
        codes, forms = self.hasher.encode_with_forms(texts)
        return np.hstack([codes, forms.view(np.uint8)])

    def split_query(self, row: np.ndarray) -> tuple[bytes, np.ndarray]:
        """(code, int8 form) of one row of `encode_queries`."""
        return row[: self.bits // 8].tobytes(), row[self.bits // 8 :].view(np.int8)


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


def import_model(path: Path, models_dir: Path, torch_threads: int | None) -> Hasher:
    """Load an offline-trained model and keep a copy under `models_dir/<fingerprint>`."""
    hasher = load_or_refuse(path, torch_threads)
    target = models_dir / hasher.fingerprint
    if not target.exists():
        scratch = models_dir / f"tmp-import-{uuid.uuid4().hex}"
        shutil.copytree(path, scratch)
        scratch.rename(target)
    return hasher


def stored_active_model(
    store: DocumentStore, models_dir: Path, torch_threads: int | None
) -> Hasher | None:
    """The store's active model loaded from `models_dir`, None when there is none yet."""
    fingerprint = store.get_setting(ACTIVE_MODEL_SETTING)
    if fingerprint is None:
        return None
    path = models_dir / fingerprint
    if not path.is_dir():
        raise StartupError(
            f"the store's active model {fingerprint[:12]} is missing from {path}; restore that "
            "folder, or start with --model DIR to re-encode every document with another model"
        )
    hasher = load_or_refuse(path, torch_threads)
    if hasher.fingerprint != fingerprint:
        raise StartupError(
            f"{path} holds a model with fingerprint {hasher.fingerprint[:12]}, not the active "
            f"{fingerprint[:12]}; its weights changed. Start with --model {path} to re-encode."
        )
    return hasher


def switch_to(store: DocumentStore, hasher: Hasher, encode_batch_size: int) -> ActiveModel:
    """Encode the documents that lack `hasher`'s code, make it the store's active model and
    build its index. The caller holds the write lock, so no write lands in between."""
    missing = store.ids_without_code(hasher.fingerprint, form=True)
    ids, codes, forms = encode_ids(store, hasher, missing, encode_batch_size)
    if store.get_setting(ACTIVE_MODEL_SETTING) != hasher.fingerprint:
        log.info("switching to model %s: %d re-encoded", hasher.fingerprint[:12], len(ids))
        store.switch_model(hasher.fingerprint, ids, codes, forms)
    elif ids:
        log.info("encoding %d documents that had no current code or form", len(ids))
        store.set_codes(ids, codes, hasher.fingerprint, forms=forms)
    index = store.load_index(hasher.fingerprint, hasher.bits)
    # An index bulk-built from zero codes cannot grow yet; start empty ones fresh.
    return ActiveModel(hasher, index if len(index) else HashIndex(hasher.bits))


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
