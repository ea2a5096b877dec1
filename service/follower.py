"""The feed follower: this process's index is the store's as of `applied_seq`, kept so by the feed.

The in-memory index changes only by applying the store's change feed, in feed order, under the
state's write lock, and `applied_seq` (every change up to it is in the index) advances only there.
Two callers apply: the follower thread (everyone's writes: woken by the store's listener, or a
timeout, it reads `changes_since(applied_seq)`), and a writer of this process, which applies the
feed up to its own write before answering (read-your-writes). A `model` change, a feed gap and
start-up reload instead: the store's position first, then its active model, then that model's
codes, built beside the served index, caught up, and swapped in whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from docbits.index.forms import pack_forms
from docbits.index.store import (
    ACTIVE_MODEL_SETTING,
    Change,
    ChangeListener,
    DocumentStore,
    FeedGapError,
    StoreError,
)
from docbits.index.store.base import MODEL, UPSERT, stored_forms
from docbits.service.models import ActiveModel, active_model

if TYPE_CHECKING:
    from docbits.service.state import ServiceState

log = logging.getLogger("docbits.service")
PAGE = 10_000  # changes read (and applied) at a time
WAKE_TIMEOUT_S = 1.0  # read the feed at least this often, notified or not
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # waits between attempts while the store is away


class Follower:
    """Keeps `state.active` equal to the store's active model and codes, as of `applied_seq`."""

    def __init__(self, state: ServiceState) -> None:
        self._state = state
        self.applied_seq = 0
        self.lag = LagClock()
        self.store_error: str | None = None  # why the feed cannot be read right now
        self.reloading: str | None = None  # why the index is being reloaded, while it is
        self._advanced = threading.Condition()
        self._async_waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- start and stop ------------------------------------------------------------------
    def load(self) -> None:
        """Start-up: load the store's active model and codes and catch up with the feed."""
        self._reload("start")

    def start(self) -> None:
        """Follow the feed in a background thread until `stop`."""
        thread = threading.Thread(target=self._run, name="docbits-follower", daemon=True)
        thread.start()
        self._thread = thread

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=WAKE_TIMEOUT_S + 5)

    # ---- applying the feed -----------------------------------------------------------------
    def apply_through(self, seq: int) -> bool:
        """Apply the feed up to `seq` (the caller holds the write lock). False when a `model`
        change or a feed gap comes first: the follower thread reloads; `wait_for` it."""
        store = self._state.store
        while self.applied_seq < seq:
            try:
                changes = store.changes_since(self.applied_seq, limit=PAGE)
            except FeedGapError:
                return False
            if not changes or not self._apply(changes):
                return False
        return True

    def catch_up(self) -> None:
        """Apply everything the store holds beyond `applied_seq`, reloading where needed.

        Pages are read outside the write lock (writers of this process keep going) and applied
        under it from where `applied_seq` stands then.
        """
        state = self._state
        while True:
            try:
                changes = state.store.changes_since(self.applied_seq, limit=PAGE)
            except FeedGapError as gap:
                log.warning("%s", gap)
                self._reload("gap")
                continue
            if not changes:
                return
            self.lag.saw(changes[-1].seq)
            with state.write_lock:
                complete = self._apply([c for c in changes if c.seq > self.applied_seq])
            if not complete:
                self._reload("model")

    def _apply(self, changes: Sequence[Change]) -> bool:
        """Apply contiguous changes that follow `applied_seq` (write lock held); stops before a
        `model` change and returns False there."""
        state = self._state
        started = time.perf_counter()
        applied = apply_changes(state.active, changes)
        if applied:
            if state.active is None:
                state.documents_changed()
            self._advance(changes[applied - 1].seq)
            state.metrics.feed_apply.observe(time.perf_counter() - started)
        return applied == len(changes)

    def _reload(self, reason: str) -> None:
        """Serve the store's active model with its codes as of now: position first, then the
        model, then its codes, then the changes since, all beside the served index; then swap."""
        self.reloading = reason
        try:
            self._load_beside_and_swap(reason)
        finally:
            self.reloading = None

    def _load_beside_and_swap(self, reason: str) -> None:
        state = self._state
        store = state.store
        started = time.monotonic()
        while True:
            position = store.last_seq()
            self.lag.saw(position)
            fingerprint = store.get_setting(ACTIVE_MODEL_SETTING)
            fresh = None
            if fingerprint is not None:
                fresh = active_model(store, state.shelf.hasher(fingerprint))
            position = _catch_up_beside(store, fresh, position)
            if position is None:
                continue  # another switch came meanwhile: start again with that model
            with state.write_lock:
                position = _catch_up_beside(store, fresh, position)
                if position is None:
                    continue
                state.active = fresh
                state.documents_changed()
                self._advance(position)
            break
        elapsed = time.monotonic() - started
        state.metrics.feed_reloads.labels(reason).inc()
        state.metrics.feed_reload_seconds.observe(elapsed)
        log.info(
            "loaded model %s with %d documents at feed position %d in %.2f s (%s)",
            fingerprint[:12] if fingerprint else "none",
            state.document_count,
            position,
            elapsed,
            reason,
        )

    def _advance(self, seq: int) -> None:
        """Record that every change up to `seq` is applied, and wake who waits for it."""
        with self._advanced:
            self.applied_seq = seq
            self.lag.applied(seq)
            self._advanced.notify_all()
            due = [waiter for waiter in self._async_waiters if waiter[0] <= seq]
        for _, loop, future in due:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits
                loop.call_soon_threadsafe(_resolve, future)

    # ---- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        """Wake on the listener or a timeout, apply what the feed holds; survive store outages."""
        listener: ChangeListener | None = None
        failures = 0
        metrics = self._state.metrics
        while not self._stopping.is_set():
            try:
                if listener is None:
                    listener = self._state.store.change_listener()
                    woke = True  # changes may have landed while there was no listener
                else:
                    woke = listener.wait(WAKE_TIMEOUT_S)
                metrics.feed_wakeups.labels("notified" if woke else "timeout").inc()
                self.catch_up()
                if self.store_error is not None:
                    log.info("the store answers again; caught up to %d", self.applied_seq)
                self.store_error, failures = None, 0
            except StoreError as error:  # unavailable, or a model that cannot load yet
                self.store_error = str(error)
                log.error("following the store's feed: %s", error)
                self._stopping.wait(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
                failures += 1
            except Exception as error:
                self.store_error = f"{type(error).__name__}: {error}"
                log.exception("following the store's feed failed; retrying")
                self._stopping.wait(BACKOFF_S[-1])
        if listener is not None:
            listener.close()

    # ---- waiting for a position ------------------------------------------------------------
    def wait_for(self, seq: int, timeout_s: float) -> bool:
        """Block until `applied_seq >= seq` or the timeout; True if reached."""
        with self._advanced:
            return self._advanced.wait_for(lambda: self.applied_seq >= seq, timeout_s)

    async def wait_for_async(self, seq: int, timeout_s: float) -> bool:
        """`wait_for` for the event loop: no thread is held while waiting."""
        if self.applied_seq >= seq:
            return True
        future = asyncio.get_running_loop().create_future()
        waiter = (seq, asyncio.get_running_loop(), future)
        with self._advanced:
            if self.applied_seq >= seq:
                return True
            self._async_waiters.append(waiter)
        try:
            await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            pass
        finally:
            with self._advanced:
                self._async_waiters.remove(waiter)
        return self.applied_seq >= seq


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def apply_changes(active: ActiveModel | None, changes: Sequence[Change]) -> int:
    """Apply changes in order to the index of `active` until a `model` change; returns how many
    were applied. Consecutive changes of one kind go in one index call (atomic for readers),
    so readers only ever see the index as of some feed position."""
    applied = 0
    while applied < len(changes):
        first = changes[applied]
        if first.kind == MODEL:
            return applied
        keep = _indexed_by(active, first)
        end = applied + 1
        while end < len(changes) and changes[end].kind != MODEL:
            if _indexed_by(active, changes[end]) != keep:
                break
            end += 1
        run = changes[applied:end]
        if active is not None:
            ids = [change.id for change in run]
            if keep:
                width = active.bits // 8
                codes = np.frombuffer(b"".join(c.code for c in run), np.uint8).reshape(-1, width)
                forms = stored_forms(active.fingerprint, [c.form for c in run], active.bits)
                active.index.upsert(ids, codes, pack_forms(forms))
            else:
                active.index.remove(ids)
        applied = end
    return applied


def _indexed_by(active: ActiveModel | None, change: Change) -> bool:
    """Whether a change puts its document in the index (an upsert with the active model's code)
    rather than taking it out (a delete, no code, or another model's code)."""
    return (
        active is not None
        and change.kind == UPSERT
        and change.code is not None
        and change.fingerprint == active.fingerprint
    )


def _catch_up_beside(store: DocumentStore, fresh: ActiveModel | None, position: int) -> int | None:
    """Apply the feed after `position` to an index nobody reads yet; the new position, or None
    when a `model` change comes (the reload starts again)."""
    while changes := store.changes_since(position, limit=PAGE):
        if apply_changes(fresh, changes) < len(changes):
            return None
        position = changes[-1].seq
    return position


class LagClock:
    """How far behind the store this process is: the newest feed position it has seen, and
    since when it has known of changes it has not applied yet (a time on this machine's clock,
    so no clocks need to agree)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.store_seq = 0
        self._applied = 0
        self._first_seen: deque[tuple[int, float]] = deque()  # (position, when first seen)

    def saw(self, seq: int) -> None:
        """The store holds changes up to `seq` (a position read from it)."""
        with self._lock:
            if seq > self.store_seq:
                self.store_seq = seq
                if seq > self._applied:
                    self._first_seen.append((seq, time.monotonic()))

    def applied(self, seq: int) -> None:
        with self._lock:
            self._applied = seq
            self.store_seq = max(self.store_seq, seq)
            while self._first_seen and self._first_seen[0][0] <= seq:
                self._first_seen.popleft()

    def changes(self) -> int:
        """Changes seen in the store and not applied yet."""
        with self._lock:
            return max(0, self.store_seq - self._applied)

    def seconds(self) -> float:
        """How long the oldest change seen and not applied has been known (0: none)."""
        with self._lock:
            return time.monotonic() - self._first_seen[0][1] if self._first_seen else 0.0
