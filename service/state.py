"""Application state: the store, the active model (hasher + its index) and the one write path."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from docbits.index.codes import code_to_hex
from docbits.index.hash_index import HashIndex
from docbits.index.store import (
    ACTIVE_MODEL_SETTING,
    StoredDocument,
    StoreUnavailableError,
    open_store,
)
from docbits.index.store.sqlite import SQLiteStore
from docbits.service.batching import EncodeBatcher
from docbits.service.errors import ApiError
from docbits.service.metrics import ServiceMetrics
from docbits.service.settings import Settings

if TYPE_CHECKING:
    from docbits.model.hasher import Hasher
    from docbits.service.training import TrainingManager

log = logging.getLogger("docbits.service")
T = TypeVar("T")


class StartupError(RuntimeError):
    """The service cannot start as configured; the message says why and what to do."""


@dataclass(frozen=True)
class ActiveModel:
    """A hasher and the index of codes it made; swapped together, never mixed."""

    hasher: Hasher
    index: HashIndex

    @property
    def fingerprint(self) -> str:
        return self.hasher.fingerprint

    @property
    def bits(self) -> int:
        return self.hasher.bits


@dataclass(frozen=True)
class NewDocument:
    """A validated document about to be written."""

    id: str
    text: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Ranked:
    """One query's outcome before documents are fetched: its code, candidates, the page."""

    query_code: bytes
    candidates: int
    page: list[tuple[str, int]]


def load_hasher(path: Path, torch_threads: int | None = None) -> Hasher:
    """Load a model directory (torch is imported only here, when a model is needed)."""
    import torch

    from docbits.model.hasher import Hasher

    if torch_threads:
        torch.set_num_threads(torch_threads)
    return Hasher.load(path)


def exempt_from_gc() -> None:
    """Collect once, then move every live object out of the garbage collector's sight.

    What start-up loads (modules, the model, the index, the metadata) lives as long as the
    process. Left in the oldest generation, each full collection walks all of it: pauses of a
    few hundred ms under load, the whole 32-client p99 of the search benchmark. Objects made
    later are collected as usual.
    """
    gc.collect()
    gc.freeze()


def metadata_filter(
    wanted: dict[str, Any] | None, metadata_of: dict[str, dict[str, Any]]
) -> Callable[[str], bool] | None:
    """A `keep(id)` predicate: each key's value (or an item of a list value) is wanted."""
    if not wanted:
        return None
    choices = {key: value if isinstance(value, list) else [value] for key, value in wanted.items()}

    def matches(value: Any, ok: list[Any]) -> bool:
        if isinstance(value, list):
            return any(item in ok for item in value)
        return value in ok

    def keep(doc_id: str) -> bool:
        metadata = metadata_of.get(doc_id, {})
        return all(key in metadata and matches(metadata[key], ok) for key, ok in choices.items())

    return keep


class ServiceState:
    """Owns the store and the active model; every write goes through `_write_lock`."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or ServiceMetrics()
        self.store: SQLiteStore | None = None
        self.active: ActiveModel | None = None
        self.trainer: TrainingManager | None = None
        self.ready = threading.Event()
        self.load_error: str | None = None
        self._pending: Hasher | None = None
        self._write_lock = threading.Lock()
        self._query_batcher = EncodeBatcher(on_batch=self.metrics.query_batch.observe)
        self._metadata: dict[str, dict[str, Any]] = {}

    # ---- start-up -------------------------------------------------------------------------

    def open(self) -> None:
        """Open the store and resolve which model to serve; fast, raises StartupError.

        A store that cannot be opened (read-only or full disk) is not fatal: the service starts
        and answers 503 with the reason, so the problem is visible and nothing is touched.
        """
        try:
            self.settings.models_dir.mkdir(parents=True, exist_ok=True)
            url = self.settings.store_url
            self.store = open_store(url and url.get_secret_value(), self.settings.data_dir)
        except (StoreUnavailableError, OSError) as exc:
            self.load_error = self._unopenable_store_reason(exc)
            log.error("%s", self.load_error)
            return
        if self.settings.model_path is not None:
            self._pending = self._import_model(self.settings.model_path)
            return
        fingerprint = self.store.get_setting(ACTIVE_MODEL_SETTING)
        if fingerprint is None:
            return
        path = self.settings.models_dir / fingerprint
        if not path.is_dir():
            raise StartupError(
                f"the store's active model {fingerprint[:12]} is missing from {path}; restore that "
                "folder, or start with --model DIR to re-encode every document with another model"
            )
        hasher = self._load_or_refuse(path)
        if hasher.fingerprint != fingerprint:
            raise StartupError(
                f"{path} holds a model with fingerprint {hasher.fingerprint[:12]}, not the active "
                f"{fingerprint[:12]}; its weights changed. Start with --model {path} to re-encode."
            )
        self._pending = hasher

    def _unopenable_store_reason(self, exc: Exception) -> str:
        """Why the store cannot be opened, naming an unwritable data folder when that is it."""
        folder = self.settings.data_dir
        hint = (
            f"the data folder {folder} is read-only or not writable; "
            if folder.is_dir() and not os.access(folder, os.W_OK)
            else ""
        )
        return f"the document store cannot be opened: {hint}{exc}"

    def load(self) -> None:
        """Encode what lacks a code under the chosen model, build the index, then mark ready."""
        if self.store is None and self.load_error is not None:
            return
        try:
            self._load()
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("loading the store and index failed")
            raise
        exempt_from_gc()
        self.ready.set()
        log.info("ready: %d documents, model %s", len(self._metadata), self.fingerprint or "none")
        self.maybe_autotrain()

    def _load(self) -> None:
        store = self._require_store()
        for batch in store.iter_documents(1000):
            for doc in batch:
                self._metadata[doc.id] = doc.metadata
        self.metrics.documents.set(len(self._metadata))
        if self._pending is not None:
            hasher, self._pending = self._pending, None
            self._switch_to(hasher)

    def _import_model(self, path: Path) -> Hasher:
        """Load an offline-trained model and keep a copy under `models/<fingerprint>`."""
        hasher = self._load_or_refuse(path)
        target = self.settings.models_dir / hasher.fingerprint
        if not target.exists():
            scratch = self.settings.models_dir / f"tmp-import-{uuid.uuid4().hex}"
            shutil.copytree(path, scratch)
            scratch.rename(target)
        return hasher

    def _load_or_refuse(self, path: Path) -> Hasher:
        from docbits.model.errors import ArtifactError

        try:
            return load_hasher(path, self.settings.torch_threads)
        except ArtifactError as exc:
            raise StartupError(f"cannot load the model at {path}: {exc}") from exc

    def _switch_to(self, hasher: Hasher) -> None:
        """Re-encode documents whose code is not from `hasher`, build its index, make it active.

        All under the write lock, so no write lands between the re-encode and the swap; searches
        keep using the previous model until the swap.
        """
        store = self._require_store()
        with self._write_lock:
            missing = store.ids_without_code(hasher.fingerprint)
            ids, codes = self._encode_ids(hasher, missing)
            if store.get_setting(ACTIVE_MODEL_SETTING) != hasher.fingerprint:
                log.info("switching to model %s: %d re-encoded", hasher.fingerprint[:12], len(ids))
                store.switch_model(hasher.fingerprint, ids, codes)
            elif ids:
                log.info("encoding %d documents that had no current code", len(ids))
                store.set_codes(ids, codes, hasher.fingerprint)
            index = store.load_index(hasher.fingerprint, hasher.bits)
            # An index bulk-built from zero codes cannot grow yet; start empty ones fresh.
            self.active = ActiveModel(hasher, index if len(index) else HashIndex(hasher.bits))
        self.metrics.buckets.set(self.active.index.num_buckets())

    def _encode_ids(self, hasher: Hasher, ids: list[str]) -> tuple[list[str], np.ndarray]:
        store = self._require_store()
        size = self.settings.encode_batch_size
        done_ids: list[str] = []
        chunks: list[np.ndarray] = [np.zeros((0, hasher.bits // 8), dtype=np.uint8)]
        for start in range(0, len(ids), size):
            found = store.get_many(ids[start : start + size])
            batch = [found[doc_id] for doc_id in ids[start : start + size] if doc_id in found]
            chunks.append(hasher.encode([doc.text for doc in batch]))
            done_ids.extend(doc.id for doc in batch)
        return done_ids, np.concatenate(chunks)

    def activate(self, model_dir: Path) -> str:
        """Switch to a newly trained model: re-encode everything, then swap atomically."""
        hasher = load_hasher(model_dir, self.settings.torch_threads)
        self._switch_to(hasher)
        return hasher.fingerprint

    def close(self) -> None:
        """Stop training, the search worker and release the store."""
        if self.trainer is not None:
            self.trainer.shutdown()
        self._query_batcher.close()
        if self.store is not None:
            self.store.close()

    # ---- state queries ---------------------------------------------------------------------

    @property
    def fingerprint(self) -> str | None:
        active = self.active
        return active.fingerprint if active else None

    @property
    def document_count(self) -> int:
        return len(self._metadata)

    def _require_store(self) -> SQLiteStore:
        if self.store is None:
            raise ApiError(503, "unavailable", "the store is not open yet")
        return self.store

    def require_ready(self) -> SQLiteStore:
        """The store, or 503 while start-up is still loading."""
        if not self.ready.is_set():
            reason = self.load_error or "loading the store and index"
            raise ApiError(503, "unavailable", f"service is not ready: {reason}")
        return self._require_store()

    def require_model(self) -> ActiveModel:
        """The active model, or 409 explaining how to get one."""
        self.require_ready()
        active = self.active
        if active is None:
            running = self.trainer.running_job() if self.trainer else None
            hint = (
                f"training job {running.id} is running; poll GET /v1/model/jobs/{running.id}"
                if running
                else "train one with POST /v1/model/train (admin key), or restart with "
                "`docbits serve --model DIR`"
            )
            raise ApiError(
                409,
                "no_model",
                f"no model yet: {self.document_count} documents are stored; {hint}. Training "
                f"starts by itself at {self.settings.autotrain_min_docs} documents.",
                {"documents": self.document_count},
            )
        return active

    # ---- writes ----------------------------------------------------------------------------

    def ingest(
        self, docs: list[NewDocument], insert_only: bool
    ) -> tuple[list[str | None], str | None]:
        """Encode, store durably, update the index; returns each code (hex) and the fingerprint."""
        store = self.require_ready()
        texts = [doc.text for doc in docs]
        active = self.active
        codes = active.hasher.encode(texts) if active else None
        with self._write_lock:
            if self.active is not active:
                active = self.active
                codes = active.hasher.encode(texts) if active else None
            fingerprint = active.fingerprint if active else None
            stored = [
                StoredDocument(
                    id=doc.id,
                    text=doc.text,
                    metadata=doc.metadata,
                    code=bytes(codes[row]) if codes is not None else None,
                    fingerprint=fingerprint,
                )
                for row, doc in enumerate(docs)
            ]
            store.upsert(stored, insert_only=insert_only)
            for doc in docs:
                self._metadata[doc.id] = doc.metadata
            if active is not None and codes is not None:
                active.index.upsert([doc.id for doc in docs], codes)
        self._update_size_metrics()
        self.maybe_autotrain()
        hexes = (
            [code_to_hex(bytes(row)) for row in codes] if codes is not None else [None] * len(docs)
        )
        return hexes, fingerprint

    def delete(self, ids: Iterable[str]) -> list[str]:
        """Delete from the store and the index together; returns the ids that existed."""
        store = self.require_ready()
        with self._write_lock:
            deleted = store.delete(list(ids)).ids
            active = self.active
            if active is not None and deleted:
                active.index.remove(deleted)
            for doc_id in deleted:
                self._metadata.pop(doc_id, None)
        self._update_size_metrics()
        return deleted

    def _update_size_metrics(self) -> None:
        self.metrics.documents.set(len(self._metadata))
        active = self.active
        if active is not None:
            self.metrics.buckets.set(active.index.num_buckets())

    def maybe_autotrain(self) -> None:
        """Start the first training job once enough documents are stored and no model exists."""
        threshold = self.settings.autotrain_min_docs
        if self.active is not None or threshold <= 0 or self.trainer is None:
            return
        if self.document_count >= threshold and not self.trainer.has_jobs():
            log.info("autotrain: %d documents stored, starting training", self.document_count)
            self.trainer.start(documents=self.document_count)

    # ---- reads -----------------------------------------------------------------------------

    async def search_queries(
        self, active: ActiveModel, texts: list[str], finish: Callable[[np.ndarray], T]
    ) -> T:
        """`finish(codes)` run in the worker thread right after the batch's shared encode."""
        return await self._query_batcher.run(active.hasher.encode, texts, finish)

    def rank(
        self,
        active: ActiveModel,
        code: bytes,
        *,
        radius: int,
        limit: int,
        offset: int,
        nearest: bool,
        keep: Callable[[str], bool] | None,
    ) -> Ranked:
        """Collect candidates for one code (bucket, ball or nearest) and cut out the page."""
        if radius > self.settings.radius_cap:
            raise ApiError(
                422,
                "radius_too_large",
                f"radius {radius} exceeds the configured cap of {self.settings.radius_cap}",
                {"radius_cap": self.settings.radius_cap},
            )
        if limit > self.settings.max_limit:
            raise ApiError(
                422,
                "limit_too_large",
                f"limit {limit} exceeds the configured maximum of {self.settings.max_limit}",
                {"max_limit": self.settings.max_limit},
            )
        index = active.index
        if nearest:
            found = index.nearest(code, offset + limit, keep=keep)
        elif radius == 0:
            members = index.bucket(code, keep=keep)
            self.metrics.candidates.observe(len(members))
            page = [(doc_id, 0) for doc_id in members[offset : offset + limit]]
            return Ranked(code, len(members), page)
        else:
            found = index.ball(code, radius, keep=keep)
        self.metrics.candidates.observe(len(found))
        return Ranked(code, len(found), list(found[offset : offset + limit]))

    def metadata_keep(
        self, wanted: dict[str, Any] | None, exclude: str | None = None
    ) -> Callable[[str], bool] | None:
        """The `keep` predicate for a metadata filter, optionally leaving out one id."""
        keep = metadata_filter(wanted, self._metadata)
        if exclude is None:
            return keep
        if keep is None:
            return lambda doc_id: doc_id != exclude
        return lambda doc_id: doc_id != exclude and keep(doc_id)
