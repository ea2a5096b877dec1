"""`ServiceState`: what a running service holds (the store, the active model and its index, the
training manager) and its start-up: open the store, choose the model, load the index."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from docbits.index.store import DocumentStore, StoreUnavailableError, open_store
from docbits.service.batching import EncodeBatcher
from docbits.service.errors import ApiError
from docbits.service.metrics import ServiceMetrics
from docbits.service.models import (
    ActiveModel,
    import_model,
    load_hasher,
    stored_active_model,
    switch_to,
)
from docbits.service.settings import Settings

if TYPE_CHECKING:
    from docbits.model.hasher import Hasher
    from docbits.service.training import TrainingManager

log = logging.getLogger("docbits.service")
T = TypeVar("T")


class ServiceState:
    """Owns the store and the active model; writes go through `write_lock` (`service/writes.py`)."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or ServiceMetrics()
        self.store: DocumentStore | None = None
        self.active: ActiveModel | None = None
        self.trainer: TrainingManager | None = None
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.write_lock = threading.Lock()
        self._pending: Hasher | None = None
        self._stored_documents = 0  # counted while no model (and so no index) exists
        self._query_batcher = EncodeBatcher(on_batch=self.metrics.query_batch.observe)
        self.metrics.documents.set_function(lambda: self.document_count)
        self.metrics.buckets.set_function(
            lambda: self.active.index.num_buckets() if self.active else 0
        )

    # ---- start-up ---------------------------------------------------------------------------
    def open(self) -> None:
        """Open the store and resolve which model to serve; fast, raises StartupError.

        A store that cannot be opened (read-only or full disk) is not fatal: the service starts
        and answers 503 with the reason, so the problem is visible and nothing is touched.
        """
        settings = self.settings
        try:
            settings.models_dir.mkdir(parents=True, exist_ok=True)
            url = settings.store_url
            self.store = open_store(url and url.get_secret_value(), settings.data_dir)
        except (StoreUnavailableError, OSError) as exc:
            self.load_error = self._unopenable_store_reason(exc)
            log.error("%s", self.load_error)
            return
        if settings.model_path is not None:
            self._pending = import_model(
                settings.model_path, settings.models_dir, settings.torch_threads
            )
        else:
            self._pending = stored_active_model(
                self.store, settings.models_dir, settings.torch_threads
            )

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
        map_large_allocations()
        try:
            self.documents_changed()
            if self._pending is not None:
                hasher, self._pending = self._pending, None
                self._switch_to(hasher)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("loading the store and index failed")
            raise
        exempt_from_gc()
        self.ready.set()
        log.info("ready: %d documents, model %s", self.document_count, self.fingerprint or "none")
        self.maybe_autotrain()

    def _switch_to(self, hasher: Hasher) -> None:
        """Make `hasher` the served model (re-encoding under the write lock), then swap it in."""
        with self.write_lock:
            self.active = switch_to(self._require_store(), hasher, self.settings.encode_batch_size)

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

    # ---- what it holds ---------------------------------------------------------------------
    @property
    def fingerprint(self) -> str | None:
        active = self.active
        return active.fingerprint if active else None

    @property
    def document_count(self) -> int:
        """Stored documents: all of them are indexed once a model exists."""
        active = self.active
        return len(active.index) if active else self._stored_documents

    def documents_changed(self) -> None:
        """Recount the stored documents after a write (only needed while no model exists)."""
        if self.active is None and self.store is not None:
            self._stored_documents = self.store.count()

    def _require_store(self) -> DocumentStore:
        if self.store is None:
            raise ApiError(503, "unavailable", "the store is not open yet")
        return self.store

    def require_ready(self) -> DocumentStore:
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

    def maybe_autotrain(self) -> None:
        """Start a training job by itself: the first once `autotrain_min_docs` documents are
        stored, then again whenever they have grown `retrain_growth` times past the number the
        active model was trained on (the switch, as always, without downtime)."""
        if self.trainer is None or self.trainer.running_job() is not None:
            return
        documents = self.document_count
        active = self.active
        if active is None:
            threshold = self.settings.autotrain_min_docs
            if threshold <= 0 or documents < threshold or self.trainer.has_jobs():
                return
            log.info("autotrain: %d documents stored, training the first model", documents)
        else:
            growth = self.settings.retrain_growth
            trained_on = trained_documents(active)
            if growth <= 0 or trained_on is None or documents < growth * trained_on:
                return
            log.info(
                "autotrain: %d documents stored, %.1f times the %d model %s was trained on",
                documents,
                documents / trained_on,
                trained_on,
                active.fingerprint[:12],
            )
        with contextlib.suppress(ApiError):  # a job started meanwhile: that one will do
            self.trainer.start()

    async def search_queries(
        self, active: ActiveModel, texts: Sequence[str], finish: Callable[[np.ndarray], T]
    ) -> T:
        """`finish(rows of active.encode_queries)` run in the worker thread right after the
        batch's shared encode."""
        return await self._query_batcher.run(active.encode_queries, texts, finish)


def trained_documents(active: ActiveModel) -> int | None:
    """How many documents the active model was trained on (None when its config does not say)."""
    count = active.hasher.config.get("corpus", {}).get("documents")
    return count if isinstance(count, int) and count > 0 else None


# glibc's mallopt parameter number of the size from which an allocation gets its own mapping.
M_MMAP_THRESHOLD = -3
LARGE_ALLOCATION_BYTES = 4 << 20


def map_large_allocations() -> None:
    """Give every allocation of 4 MiB or more (the arrays of a load or of a full scan) its own
    mapping, returned to the system when freed. By default glibc raises that threshold after
    such frees and then keeps the freed memory: ~90 MB of a 1 M-document process's search-time
    memory (`bench/scale.py`)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to set
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, LARGE_ALLOCATION_BYTES)


def exempt_from_gc() -> None:
    """Collect once, move every live object out of the garbage collector's sight, and hand the
    memory that loading freed back to the system.

    What start-up loads (modules, the model, the index) lives as long as the process; left in
    the oldest generation, each full collection would walk all of it, a pause under load. The
    index build frees a million short-lived id strings, which glibc keeps unless trimmed.
    """
    gc.collect()
    gc.freeze()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
