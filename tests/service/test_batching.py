"""`EncodeBatcher`: concurrent callers get their own rows, merged into fewer encode calls."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from service.batching import EncodeBatcher


class SlowEncoder:
    """Encodes a text as its length (one uint8 row), slowly, counting calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        time.sleep(0.01)
        if any(text == "boom" for text in texts):
            raise ValueError("cannot encode boom")
        return np.array([[len(text)] for text in texts], dtype=np.uint8)


def run_concurrently(batcher: EncodeBatcher, encoder: SlowEncoder, inputs: list[list[str]]) -> list:
    results: list = [None] * len(inputs)

    def call(position: int) -> None:
        try:
            results[position] = batcher.encode(encoder.encode, inputs[position])
        except ValueError as exc:
            results[position] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return results


def test_each_caller_gets_its_own_rows_from_fewer_calls() -> None:
    encoder = SlowEncoder()
    inputs = [["x" * (i % 50 + 1), "y" * (i % 7 + 1)] for i in range(40)]
    results = run_concurrently(EncodeBatcher(max_texts=16), encoder, inputs)
    for texts, codes in zip(inputs, results, strict=True):
        assert codes.tolist() == [[len(text)] for text in texts]
    assert sum(encoder.calls) == 80
    assert len(encoder.calls) < 40
    assert max(encoder.calls) <= 16


def test_an_error_reaches_only_the_batch_that_failed_and_the_batcher_recovers() -> None:
    encoder = SlowEncoder()
    batcher = EncodeBatcher()
    results = run_concurrently(batcher, encoder, [["boom"], *[["ok"]] * 5])
    assert isinstance(results[0], ValueError)
    assert batcher.encode(encoder.encode, ["fine"]).tolist() == [[4]]


def test_different_encoders_are_never_mixed_in_one_call() -> None:
    first, second = SlowEncoder(), SlowEncoder()
    batcher = EncodeBatcher()
    outcome: dict[str, np.ndarray] = {}

    def use(name: str, encoder: SlowEncoder) -> None:
        outcome[name] = batcher.encode(encoder.encode, [name])

    threads = [
        threading.Thread(target=use, args=(f"t{i}", (first, second)[i % 2])) for i in range(10)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sum(first.calls) == 5 and sum(second.calls) == 5
    assert all(outcome[f"t{i}"].tolist() == [[2]] for i in range(10))


@pytest.mark.parametrize("max_texts", [1, 3])
def test_a_request_larger_than_the_batch_cap_is_still_encoded(max_texts: int) -> None:
    encoder = SlowEncoder()
    codes = EncodeBatcher(max_texts=max_texts).encode(encoder.encode, ["a", "bb", "ccc", "dddd"])
    assert codes.tolist() == [[1], [2], [3], [4]]
