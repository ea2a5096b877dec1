"""Query micro-batching: searches that arrive within the same few event-loop turns share one encode.

Encoding one short text costs mostly fixed per-call overhead (sparse-matrix set-up, a torch
forward). Each search handler parks its texts here and awaits a future. A callback re-scheduled
once per loop turn watches the queue and, as soon as a loop turn adds nothing more (or the batch
is full, or `max_turns` have passed), encodes everything queued in ONE worker-thread call, so the
CPU work stays off the event loop and the thread hop is paid once per batch, not per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Encode = Callable[[Sequence[str]], np.ndarray]


@dataclass(eq=False)
class _Waiting:
    """One caller's texts, its encoder and the future its codes (or the error) arrive on."""

    encode: Encode
    texts: Sequence[str]
    codes: asyncio.Future[np.ndarray]


class EncodeBatcher:
    """Merges the texts of searches queued in one event-loop turn into shared `encode` calls."""

    def __init__(
        self,
        max_texts: int = 256,
        on_batch: Callable[[int], None] | None = None,
        quiet_turns: int = 2,
        max_turns: int = 16,
    ) -> None:
        self.max_texts = max_texts
        self.on_batch = on_batch
        self.quiet_turns = quiet_turns
        self.max_turns = max_turns
        self._waiting: list[_Waiting] = []
        self._texts_waiting = 0
        self._watching = False

    async def encode(self, encode: Encode, texts: Sequence[str]) -> np.ndarray:
        """Codes of `texts` from `encode`, possibly computed in one call with other callers."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(encode, texts, loop.create_future())
        self._waiting.append(waiting)
        self._texts_waiting += len(texts)
        if not self._watching:
            self._watching = True
            loop.call_soon(self._watch, loop, len(self._waiting), 0, 0)
        return await waiting.codes

    def _watch(self, loop: asyncio.AbstractEventLoop, seen: int, quiet: int, turns: int) -> None:
        """Once per loop turn: flush when arrivals stop, the batch is full or waited too long."""
        quiet = quiet + 1 if len(self._waiting) == seen else 0
        turns += 1
        if (
            quiet >= self.quiet_turns
            or turns >= self.max_turns
            or self._texts_waiting >= self.max_texts
        ):
            self._watching = False
            self._flush()
        else:
            loop.call_soon(self._watch, loop, len(self._waiting), quiet, turns)

    def _flush(self) -> None:
        """Encode everything queued, in runs of the same encoder of at most `max_texts` texts."""
        queued = [waiting for waiting in self._waiting if not waiting.codes.done()]
        self._waiting = []
        self._texts_waiting = 0
        while queued:
            batch = self._take_batch(queued)
            del queued[: len(batch)]
            self._encode_batch(asyncio.get_running_loop(), batch)

    def _take_batch(self, queued: list[_Waiting]) -> list[_Waiting]:
        """The longest prefix of `queued` with one encoder and at most `max_texts` texts."""
        first = queued[0]
        batch, total = [first], len(first.texts)
        for waiting in queued[1:]:
            if waiting.encode != first.encode or total + len(waiting.texts) > self.max_texts:
                break
            batch.append(waiting)
            total += len(waiting.texts)
        return batch

    def _encode_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Waiting]) -> None:
        """One encode call for the batch in a worker thread (CPU work stays off the loop)."""
        if self.on_batch is not None:
            self.on_batch(len(batch))
        texts = [text for waiting in batch for text in waiting.texts]
        running = loop.run_in_executor(None, batch[0].encode, texts)
        running.add_done_callback(lambda done: _deliver(batch, done))


def _deliver(batch: list[_Waiting], done: asyncio.Future) -> None:
    """Each caller gets its rows of the batch's codes, or all get the encode's error."""
    error = done.exception() if not done.cancelled() else asyncio.CancelledError()
    start = 0
    for waiting in batch:
        if not waiting.codes.done():
            if error is not None:
                waiting.codes.set_exception(error)
            else:
                waiting.codes.set_result(done.result()[start : start + len(waiting.texts)])
        start += len(waiting.texts)
