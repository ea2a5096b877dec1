"""Query micro-batching: concurrent searches share one `encode` call instead of one call each.

Encoding one short text costs mostly fixed per-call overhead (sparse-matrix set-up, a torch
forward), so under load the first waiting thread becomes the leader, encodes every query queued
so far in one batch, hands each caller its row, then passes the lead to the next waiter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Encode = Callable[[Sequence[str]], np.ndarray]


@dataclass(eq=False)
class _Request:
    """One caller's texts and, once encoded, its codes (or the error)."""

    encode: Encode
    texts: Sequence[str]
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    codes: np.ndarray | None = None
    error: BaseException | None = None


class EncodeBatcher:
    """Thread-safe front of `encode` functions that merges the texts of concurrent callers."""

    def __init__(self, max_texts: int = 256, on_batch: Callable[[int], None] | None = None) -> None:
        self.max_texts = max_texts
        self.on_batch = on_batch
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._leader_active = False

    def encode(self, encode: Encode, texts: Sequence[str]) -> np.ndarray:
        """Codes of `texts` from `encode`, possibly computed in one batch with other callers."""
        request = _Request(encode, texts)
        with self._lock:
            self._queue.append(request)
            if not self._leader_active:
                self._leader_active = True
                request.lead = True
        if not request.lead:
            request.wake.wait()
        if request.lead and request.codes is None and request.error is None:
            self._run_batch()
        if request.error is not None:
            raise request.error
        assert request.codes is not None
        return request.codes

    def _run_batch(self) -> None:
        """Encode what is queued (same encoder, up to `max_texts`), then pass on the lead."""
        with self._lock:
            first = self._queue[0]
            batch, total = [], 0
            for queued in self._queue:
                if queued.encode != first.encode or (
                    batch and total + len(queued.texts) > self.max_texts
                ):
                    break
                batch.append(queued)
                total += len(queued.texts)
            del self._queue[: len(batch)]
        if self.on_batch is not None:
            self.on_batch(len(batch))
        try:
            codes = first.encode([text for queued in batch for text in queued.texts])
            start = 0
            for queued in batch:
                queued.codes = codes[start : start + len(queued.texts)]
                start += len(queued.texts)
        except BaseException as exc:
            for queued in batch:
                queued.error = exc
        with self._lock:
            successor = self._queue[0] if self._queue else None
            if successor is None:
                self._leader_active = False
            else:
                successor.lead = True
        for queued in batch:
            queued.wake.set()
        if successor is not None:
            successor.wake.set()
