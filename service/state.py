"""`ServiceState`: what a running service holds (the store, the active model and its index, the
feed follower, the training manager) and its start-up: open the store, import a model if asked,
load the store's active model and codes, then follow the store's change feed."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from starlette.concurrency import run_in_threadpool

from docbits.index.store import (
    ACTIVE_MODEL_SETTING,
    DocumentStore,
    StoreError,
    StoreUnavailableError,
    open_store,
)
from docbits.service.batching import EncodeBatcher
from docbits.service.errors import ApiError
from docbits.service.follower import Follower
from docbits.service.metrics import ServiceMetrics
from docbits.service.models import ActiveModel, ModelShelf, switch_to
from docbits.service.settings import Settings

if TYPE_CHECKING:
    from docbits.model.hasher import Hasher
    from docbits.service.training import TrainingManager

log = logging.getLogger("docbits.service")
T = TypeVar("T")
FIRST_TRAINING_SETTING = "first_training_job"  # the job automatic training started first
STORE_RETRY_S = (1.0, 2.0, 5.0, 10.0)  # waits between attempts to open an unavailable store
SWITCH_VISIBLE_S = 600.0  # how long a switch waits for this process to serve the new model


class ServiceState:
    """Owns the store, the active model and the follower that keeps it current; this process's
    writes go through `write_lock` (`service/writes.py`), and so does the follower."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or ServiceMetrics()
        self.store: DocumentStore | None = None
        self.shelf: ModelShelf | None = None
        self.active: ActiveModel | None = None
        self.trainer: TrainingManager | None = None
        self.follower = Follower(self)
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.write_lock = threading.Lock()
        self.closing = threading.Event()
        self._pending: Hasher | None = None
        self._stored_documents = 0  # counted while no model (and so no index) exists
        self._query_batcher = EncodeBatcher(on_batch=self.metrics.query_batch.observe)
        self.metrics.watch(self)

    # ---- start-up ---------------------------------------------------------------------------
    def open(self) -> None:
        """Open the store and check the model to serve; fast, raises StartupError.

        A store that cannot be opened now (an unreachable server, a read-only or full disk) is
        not fatal: the service starts not ready, says why, and `load` keeps trying.
        """
        try:
            self._open_store()
        except (StoreUnavailableError, OSError) as exc:
            self.load_error = self._unopenable_store_reason(exc)
            log.error("%s", self.load_error)
            return
        self._check_model()

    def _open_store(self) -> None:
        settings = self.settings
        settings.models_dir.mkdir(parents=True, exist_ok=True)
        url = settings.store_url
        store = open_store(url and url.get_secret_value(), settings.data_dir)
        self.shelf = ModelShelf(store, settings.models_dir, settings.torch_threads)
        self.store = store

    def _check_model(self) -> None:
        """Import `--model DIR`, or load the store's active model now, so a damaged or missing
        model is refused before anything is served."""
        if self.settings.model_path is not None:
            self._pending = self.shelf.import_model(self.settings.model_path)
            return
        fingerprint = self.store.get_setting(ACTIVE_MODEL_SETTING)
        if fingerprint is not None:
            self.shelf.hasher(fingerprint)
            self.shelf.publish(fingerprint)  # a store written before models lived in it

    def _unopenable_store_reason(self, exc: Exception) -> str:
        """Why the store cannot be opened, naming an unwritable data folder when that is it."""
        folder = self.settings.data_dir
        hint = (
            f"the data folder {folder} is read-only or not writable; "
            if self.settings.store_url is None
            and folder.is_dir()
            and not os.access(folder, os.W_OK)
            else ""
        )
        return f"the document store cannot be opened: {hint}{exc}"

    def switch_pending(self) -> None:
        """Make an imported model the store's active model (encoding the documents for it)."""
        if self._pending is not None:
            hasher, self._pending = self._pending, None
            switch_to(self.require_store(), hasher, self.settings.encode_batch_size)

    def load(self) -> None:
        """Background start-up: switch to an imported model, load the store's active model and
        codes and catch up with the feed; then ready, following the feed from there on."""
        if self.store is None and not self._wait_for_store():
            return
        map_large_allocations()
        try:
            self.switch_pending()
            self.follower.load()
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("loading the store and index failed")
            raise
        self.load_error = None
        exempt_from_gc()
        release_load_memory()
        self.ready.set()
        self.follower.start()
        log.info(
            "ready: %d documents, model %s, feed position %d",
            self.document_count,
            self.fingerprint or "none",
            self.follower.applied_seq,
        )
        self.maybe_autotrain()

    def _wait_for_store(self) -> bool:
        """Try to open the store until it opens (True) or the service closes (False)."""
        attempt = 0
        while not self.closing.wait(STORE_RETRY_S[min(attempt, len(STORE_RETRY_S) - 1)]):
            attempt += 1
            try:
                self._open_store()
            except (StoreUnavailableError, OSError) as exc:
                self.load_error = self._unopenable_store_reason(exc)
                log.warning("%s (attempt %d)", self.load_error, attempt)
                continue
            log.info("the document store opened at attempt %d", attempt)
            self._check_model()
            return True
        return False

    def activate(self, fingerprint: str) -> None:
        """Switch every process to the stored model `fingerprint`; returns once this one
        serves it."""
        hasher = self.require_shelf().hasher(fingerprint)
        seq = switch_to(self.require_store(), hasher, self.settings.encode_batch_size)
        if not self.follower.wait_for(seq, SWITCH_VISIBLE_S):
            raise StoreError(
                f"the store switched to model {fingerprint[:12]} at feed position {seq}, but "
                f"this process has not loaded it within {SWITCH_VISIBLE_S:g} s"
            )

    def close(self) -> None:
        """Stop training, the follower and the search worker, and release the store."""
        self.closing.set()
        if self.trainer is not None:
            self.trainer.shutdown()
        self.follower.stop()
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
        """Recount the stored documents after a change (only needed while no model exists)."""
        if self.active is None and self.store is not None:
            self._stored_documents = self.store.count()

    def require_store(self) -> DocumentStore:
        if self.store is None:
            raise ApiError(503, "unavailable", f"the store is not open: {self.load_error}")
        return self.store

    def require_shelf(self) -> ModelShelf:
        self.require_store()
        assert self.shelf is not None
        return self.shelf

    def require_ready(self) -> DocumentStore:
        """The store, or 503 while start-up is still loading."""
        if not self.ready.is_set():
            reason = self.load_error or "loading the store and index"
            raise ApiError(503, "unavailable", f"service is not ready: {reason}")
        return self.require_store()

    def require_model(self) -> ActiveModel:
        """The active model, or 409 explaining how to get one."""
        store = self.require_ready()
        active = self.active
        if active is None:
            running = store.running_training_job()
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

    # ---- consistency the client asks for -----------------------------------------------------
    def require_applied(self, min_seq: int | None) -> None:
        """Return once this process has applied feed position `min_seq` (blocking up to the
        configured wait), else 503 with a retry hint; 422 for a position the store never had."""
        if min_seq is None or self.follower.applied_seq >= min_seq:
            return
        self._refuse_unknown_seq(min_seq)
        if not self.follower.wait_for(min_seq, self.settings.min_seq_wait_s):
            raise self._behind(min_seq)

    async def require_applied_async(self, min_seq: int | None) -> None:
        """`require_applied` for the event loop (the wait holds no thread)."""
        if min_seq is None or self.follower.applied_seq >= min_seq:
            return
        await run_in_threadpool(self._refuse_unknown_seq, min_seq)
        if not await self.follower.wait_for_async(min_seq, self.settings.min_seq_wait_s):
            raise self._behind(min_seq)

    def _refuse_unknown_seq(self, min_seq: int) -> None:
        if min_seq <= self.follower.lag.store_seq:
            return
        newest = self.require_ready().last_seq()
        self.follower.lag.saw(newest)
        if min_seq > newest:
            raise ApiError(
                422,
                "validation_error",
                f"min_seq {min_seq} is beyond the store's newest change {newest}; pass the `seq` "
                "of a write response",
                {"min_seq": min_seq, "store_seq": newest},
            )

    def _behind(self, min_seq: int) -> ApiError:
        applied = self.follower.applied_seq
        return ApiError(
            503,
            "catching_up",
            f"this process has applied the store's changes up to {applied}, not yet {min_seq} "
            f"(waited {self.settings.min_seq_wait_s:g} s); retry, here or on another process",
            {"min_seq": min_seq, "applied_seq": applied},
            headers={"Retry-After": "1"},
        )

    # ---- training ----------------------------------------------------------------------------
    def maybe_autotrain(self) -> None:
        """Start a training job by itself: the first once `autotrain_min_docs` documents are
        stored, then again whenever they have grown `retrain_growth` times past the number the
        active model was trained on. The store's job lease keeps it to one job cluster-wide."""
        trainer, store = self.trainer, self.store
        if trainer is None or store is None:
            return
        documents = self.document_count
        active = self.active
        if active is None:
            threshold = self.settings.autotrain_min_docs
            if threshold <= 0 or documents < threshold:
                return
            if store.get_setting(FIRST_TRAINING_SETTING) is not None:
                return  # the first model is trained once; a failed job is retried by hand
            why = f"{documents} documents stored, training the first model"
        else:
            growth = self.settings.retrain_growth
            trained_on = trained_documents(active)
            if growth <= 0 or trained_on is None or documents < growth * trained_on:
                return
            why = (
                f"{documents} documents stored, {documents / trained_on:.1f} times the "
                f"{trained_on} model {active.fingerprint[:12]} was trained on"
            )
        if store.running_training_job() is not None:
            return
        with contextlib.suppress(ApiError):  # a job started elsewhere meanwhile: that one will do
            job = trainer.start()
            log.info("autotrain: %s (job %s)", why, job.id)
            if active is None:
                store.set_setting(FIRST_TRAINING_SETTING, job.id)

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
    """Collect once, then move every live object out of the garbage collector's sight.

    What start-up loads (modules, torch, the model) lives as long as the process. Left in the
    oldest generation, every full collection walks all of it with the GIL held: a pause of the
    whole server, about once a second under load (docs/results/speedups.md)."""
    gc.collect()
    gc.freeze()


def release_load_memory() -> None:
    """Hand the memory that loading freed (a million short-lived id strings, say) back to the
    system; glibc keeps it otherwise."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
