"""`EncodeBatcher`: searches waiting on the loop get their own rows from fewer encode calls."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from docbits.service.batching import EncodeBatcher


class CountingEncoder:
    """Encodes a text as its length (one uint8 row), counting the texts of each call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        if any(text == "boom" for text in texts):
            raise ValueError("cannot encode boom")
        return np.array([[len(text)] for text in texts], dtype=np.uint8)


async def gather_settled(batcher: EncodeBatcher, calls: list[tuple[CountingEncoder, list[str]]]):
    """Run every call concurrently; each outcome is the codes or the exception raised."""
    return await asyncio.gather(
        *(batcher.encode(encoder.encode, texts) for encoder, texts in calls),
        return_exceptions=True,
    )


def test_each_caller_gets_its_own_rows_from_fewer_calls() -> None:
    encoder = CountingEncoder()
    inputs = [["x" * (i % 50 + 1), "y" * (i % 7 + 1)] for i in range(40)]
    batcher = EncodeBatcher(max_texts=16)
    results = asyncio.run(gather_settled(batcher, [(encoder, texts) for texts in inputs]))
    for texts, codes in zip(inputs, results, strict=True):
        assert codes.tolist() == [[len(text)] for text in texts]
    assert sum(encoder.calls) == 80
    assert len(encoder.calls) < 40
    assert max(encoder.calls) <= 16


def test_callers_arriving_over_several_loop_turns_share_a_call() -> None:
    encoder = CountingEncoder()
    batcher = EncodeBatcher(quiet_turns=2)

    async def arrive_after(turns: int, text: str) -> np.ndarray:
        for _ in range(turns):
            await asyncio.sleep(0)
        return await batcher.encode(encoder.encode, [text])

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(arrive_after(0, "a"), arrive_after(1, "bb"))

    results = asyncio.run(main())
    assert [codes.tolist() for codes in results] == [[[1]], [[2]]]
    assert encoder.calls == [2]


def test_a_lone_caller_is_not_held_back_past_max_turns() -> None:
    encoder = CountingEncoder()
    batcher = EncodeBatcher(quiet_turns=100, max_turns=3)

    async def main() -> tuple[np.ndarray, int]:
        task = asyncio.ensure_future(batcher.encode(encoder.encode, ["abc"]))
        turns = 0
        while not task.done() and not encoder.calls:
            await asyncio.sleep(0)
            turns += 1
        return await task, turns

    codes, turns = asyncio.run(main())
    assert codes.tolist() == [[3]]
    assert turns <= 5


def test_an_error_reaches_every_caller_of_the_failed_call_and_the_batcher_recovers() -> None:
    encoder = CountingEncoder()
    batcher = EncodeBatcher()
    results = asyncio.run(gather_settled(batcher, [(encoder, ["boom"]), (encoder, ["ok"])]))
    assert all(isinstance(result, ValueError) for result in results)
    again = asyncio.run(gather_settled(batcher, [(encoder, ["fine"])]))
    assert again[0].tolist() == [[4]]


def test_different_encoders_are_never_mixed_in_one_call() -> None:
    first, second = CountingEncoder(), CountingEncoder()
    batcher = EncodeBatcher()
    calls = [((first, second)[i % 2], [f"t{i}"]) for i in range(10)]
    results = asyncio.run(gather_settled(batcher, calls))
    assert sum(first.calls) == 5 and sum(second.calls) == 5
    assert all(codes.tolist() == [[2]] for codes in results)


def test_a_cancelled_caller_is_skipped_and_the_others_still_get_their_rows() -> None:
    encoder = CountingEncoder()
    batcher = EncodeBatcher()

    async def main() -> list[object]:
        doomed = asyncio.ensure_future(batcher.encode(encoder.encode, ["gone"]))
        kept = asyncio.ensure_future(batcher.encode(encoder.encode, ["kept!"]))
        await asyncio.sleep(0)
        doomed.cancel()
        return await asyncio.gather(doomed, kept, return_exceptions=True)

    doomed, kept = asyncio.run(main())
    assert isinstance(doomed, asyncio.CancelledError)
    assert kept.tolist() == [[5]]
    assert encoder.calls == [1]


@pytest.mark.parametrize("max_texts", [1, 3])
def test_a_request_larger_than_the_batch_cap_is_still_encoded(max_texts: int) -> None:
    encoder = CountingEncoder()
    batcher = EncodeBatcher(max_texts=max_texts)
    results = asyncio.run(gather_settled(batcher, [(encoder, ["a", "bb", "ccc", "dddd"])]))
    assert results[0].tolist() == [[1], [2], [3], [4]]


def test_encoding_runs_off_the_event_loop_thread() -> None:
    import threading

    threads: list[int] = []

    def encode(texts: Sequence[str]) -> np.ndarray:
        threads.append(threading.get_ident())
        return np.zeros((len(texts), 1), dtype=np.uint8)

    async def main() -> int:
        await EncodeBatcher().encode(encode, ["abc"])
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert threads and threads[0] != loop_thread


def test_finish_steps_run_off_the_loop_with_the_batch_and_fail_alone() -> None:
    import threading

    encoder = CountingEncoder()
    batcher = EncodeBatcher()
    threads: list[int] = []

    def finish(codes: np.ndarray) -> list[int]:
        threads.append(threading.get_ident())
        if codes.tolist() == [[4]]:
            raise KeyError("finish failed")
        return [int(row[0]) * 10 for row in codes]

    async def main() -> list[object]:
        texts = [["a"], ["bb", "ccc"], ["dddd"]]
        return await asyncio.gather(
            *(batcher.run(encoder.encode, t, finish) for t in texts), return_exceptions=True
        )

    loop_thread = threading.get_ident()
    results = asyncio.run(main())
    assert results[:2] == [[10], [20, 30]]
    assert isinstance(results[2], KeyError)
    assert encoder.calls == [4]
    assert len(set(threads)) == 1 and loop_thread not in threads


def test_arrivals_during_a_running_batch_form_the_next_one() -> None:
    import threading

    running = threading.Event()
    release = threading.Event()
    overlapping: list[bool] = []
    calls: list[list[str]] = []

    def slow_encode(texts: Sequence[str]) -> np.ndarray:
        overlapping.append(running.is_set())
        running.set()
        calls.append(list(texts))
        if texts[0] == "first":
            release.wait(timeout=10)
        running.clear()
        return np.array([[len(text)] for text in texts], dtype=np.uint8)

    batcher = EncodeBatcher(max_in_flight=1)

    async def main() -> list[np.ndarray]:
        first = asyncio.ensure_future(batcher.encode(slow_encode, ["first"]))
        while not running.is_set():
            await asyncio.sleep(0.001)
        later = [asyncio.ensure_future(batcher.encode(slow_encode, [t])) for t in ("a", "bb")]
        for _ in range(20):
            await asyncio.sleep(0)
        assert calls == [["first"]]  # still waiting for the running batch
        release.set()
        return await asyncio.gather(first, *later)

    results = asyncio.run(main())
    assert [codes.tolist() for codes in results] == [[[5]], [[1]], [[2]]]
    assert calls == [["first"], ["a", "bb"]]
    assert overlapping == [False, False]


def test_every_batch_runs_on_the_batchers_one_worker_thread() -> None:
    import threading

    threads: set[str] = set()

    def encode(texts: Sequence[str]) -> np.ndarray:
        threads.add(threading.current_thread().name)
        return np.zeros((len(texts), 1), dtype=np.uint8)

    batcher = EncodeBatcher()

    async def one_after_another() -> None:
        for round_ in range(30):
            await asyncio.gather(*(batcher.encode(encode, ["t"]) for _ in range(round_ % 4 + 1)))

    asyncio.run(one_after_another())
    batcher.close()
    assert len(threads) == 1 and threads.pop().startswith("docbits-search")
