"""Query micro-batching: searches that arrive within the same few event-loop turns share one encode.

Encoding one short text costs mostly fixed per-call overhead (a torch forward). Each search
handler parks its texts here, with an optional `finish` step (rank the codes, read the hits from
SQLite, build the response body), and awaits a future. A callback re-scheduled once per loop turn
watches the queue and, as soon as a loop turn adds nothing more (or the batch is full, or
`max_turns` have passed), runs the encode of everything queued and then each caller's `finish`
in ONE worker-thread call. So the CPU work stays off the event loop, and the thread hop (a
wake-up of a worker and one of the loop) is paid once per batch, not once or twice per request.
Batches run one at a time (`max_in_flight`); searches arriving meanwhile form the next batch,
so the busier the service, the larger the batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

Encode = Callable[[Sequence[str]], np.ndarray]
Result = TypeVar("Result")


def _codes_as_they_are(codes: np.ndarray) -> np.ndarray:
    return codes


@dataclass(eq=False)
class _Waiting:
    """One caller's texts, its encoder, its finish step and the future its result arrives on."""

    encode: Encode
    texts: Sequence[str]
    finish: Callable[[np.ndarray], Any]
    result: asyncio.Future[Any]


class EncodeBatcher:
    """Merges the texts of searches queued in one event-loop turn into shared `encode` calls."""

    def __init__(
        self,
        max_texts: int = 256,
        on_batch: Callable[[int], None] | None = None,
        quiet_turns: int = 2,
        max_turns: int = 16,
        max_in_flight: int = 1,
    ) -> None:
        """`max_in_flight` batches run at once, on as many dedicated worker threads; the next
        forms while they run. One keeps the worker and the event loop the only threads taking
        turns on the GIL (more threads made each other wait: long latency tails, no extra
        throughput on two cores), and always the same worker, whose caches stay warm (a shared
        pool starts another thread whenever a batch is submitted before the last one's thread
        is back in the pool)."""
        self.max_texts = max_texts
        self.on_batch = on_batch
        self.quiet_turns = quiet_turns
        self.max_turns = max_turns
        self.max_in_flight = max_in_flight
        self._waiting: list[_Waiting] = []
        self._texts_waiting = 0
        self._watching = False
        self._in_flight = 0
        self._executor = ThreadPoolExecutor(max_in_flight, thread_name_prefix="docbits-search")

    def close(self) -> None:
        """Let the worker threads end once idle (batches already running finish)."""
        self._executor.shutdown(wait=False)

    async def encode(self, encode: Encode, texts: Sequence[str]) -> np.ndarray:
        """Codes of `texts` from `encode`, possibly computed in one call with other callers."""
        return await self.run(encode, texts, _codes_as_they_are)

    async def run(
        self, encode: Encode, texts: Sequence[str], finish: Callable[[np.ndarray], Result]
    ) -> Result:
        """`finish(codes of texts)`, run in the worker thread right after the shared encode.

        An error in `finish` reaches this caller only; an error in the encode reaches every
        caller of that batch.
        """
        loop = asyncio.get_running_loop()
        waiting = _Waiting(encode, texts, finish, loop.create_future())
        self._waiting.append(waiting)
        self._texts_waiting += len(texts)
        if not self._watching:
            self._watching = True
            loop.call_soon(self._watch, loop, len(self._waiting), 0, 0)
        return await waiting.result

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
        """Start batches of what is queued (runs of one encoder, at most `max_texts` texts)
        while fewer than `max_in_flight` run; the rest waits for a running batch to end."""
        queued = [waiting for waiting in self._waiting if not waiting.result.done()]
        while queued and self._in_flight < self.max_in_flight:
            batch = self._take_batch(queued)
            del queued[: len(batch)]
            self._encode_batch(asyncio.get_running_loop(), batch)
        self._waiting = queued
        self._texts_waiting = sum(len(waiting.texts) for waiting in queued)

    def _batch_done(self, batch: list[_Waiting], done: asyncio.Future[list[Any]]) -> None:
        """Deliver a batch's results, then start what queued up meanwhile (it already waited)."""
        self._in_flight -= 1
        _deliver(batch, done)
        if self._waiting and not self._watching:
            self._flush()

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
        """One worker-thread call encodes the batch and runs each caller's finish step."""
        if self.on_batch is not None:
            self.on_batch(len(batch))
        self._in_flight += 1
        running = loop.run_in_executor(self._executor, _encode_and_finish, batch)
        running.add_done_callback(lambda done: self._batch_done(batch, done))


@dataclass(frozen=True)
class _Failed:
    """A caller's finish step raised: the error goes to that caller alone."""

    error: BaseException


def _encode_and_finish(batch: list[_Waiting]) -> list[Any]:
    """In the worker thread: one encode for the whole batch, then each caller's finish step."""
    codes = batch[0].encode([text for waiting in batch for text in waiting.texts])
    outcomes: list[Any] = []
    start = 0
    for waiting in batch:
        rows = codes[start : start + len(waiting.texts)]
        start += len(waiting.texts)
        try:
            outcomes.append(waiting.finish(rows))
        except Exception as error:
            outcomes.append(_Failed(error))
    return outcomes


def _deliver(batch: list[_Waiting], done: asyncio.Future[list[Any]]) -> None:
    """Each caller gets its finish step's result or error, or all get the encode's error."""
    error = done.exception() if not done.cancelled() else asyncio.CancelledError()
    outcomes = done.result() if error is None else [None] * len(batch)
    for waiting, outcome in zip(batch, outcomes, strict=True):
        if waiting.result.done():
            continue
        if error is not None:
            waiting.result.set_exception(error)
        elif isinstance(outcome, _Failed):
            waiting.result.set_exception(outcome.error)
        else:
            waiting.result.set_result(outcome)
