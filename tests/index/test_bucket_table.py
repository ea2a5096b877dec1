"""BucketTable and bucket keys: linearity of keys, and the probe kernel against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from docbits.index.bucket_table import BucketTable, bucket_key, bucket_keys
from docbits.index.hamming import shell_range_masks
from docbits.index.kernels import probe


def random_words(rng: np.random.Generator, n: int, num_words: int) -> np.ndarray:
    """(n, num_words) uint64 words covering all 64 bits."""
    return rng.integers(0, 1 << 63, size=(n, num_words), dtype=np.uint64) * np.uint64(2) + (
        rng.integers(0, 2, size=(n, num_words), dtype=np.uint64)
    )


@pytest.mark.parametrize("num_words", [1, 2])
def test_keys_are_linear_and_match_the_scalar_form(num_words: int) -> None:
    rng = np.random.default_rng(1)
    left, right = random_words(rng, 500, num_words), random_words(rng, 500, num_words)
    assert np.array_equal(bucket_keys(left ^ right), bucket_keys(left) ^ bucket_keys(right))
    keys = bucket_keys(left)
    assert [bucket_key(row.tolist()) for row in left] == keys.tolist()


def test_one_word_keys_are_a_bijection() -> None:
    rng = np.random.default_rng(2)
    words = random_words(rng, 20_000, 1)
    assert len(np.unique(bucket_keys(words))) == len(np.unique(words))
    # Every single-bit code has a distinct key, so flipping one bit always changes the bucket.
    single_bits = (np.uint64(1) << np.arange(64, dtype=np.uint64))[:, None]
    assert len(np.unique(bucket_keys(single_bits))) == 64


def probe_one(table: BucketTable, codes: np.ndarray, query: int, radius: int) -> list[tuple]:
    """(distance, row) hits of `kernels.probe` for a 64-bit one-word query over `table`."""
    masks, weights = shell_range_masks(64, 0, radius)
    found = probe(
        np.uint64(bucket_key([query])),
        np.array([query], dtype=np.uint64),
        bucket_keys(masks),
        weights,
        masks,
        *table.kernel_view(-1),
        *BucketTable.empty().kernel_view(-1),
        np.zeros(len(codes), dtype=np.uint8),  # unread: the table's `want` is -1
        codes.T.copy(),
        False,
    )
    return list(zip((found >> 32).tolist(), (found & 0xFFFFFFFF).tolist(), strict=True))


@pytest.mark.parametrize("skewed", [False, True])
def test_probe_kernel_finds_exactly_the_rows_with_each_probed_code(skewed: bool) -> None:
    rng = np.random.default_rng(3)
    codes = random_words(rng, 5000, 1)
    codes[200:260] = codes[:60] ^ np.uint64(1 << 40)  # neighbours at distance 1
    if skewed:
        codes[:100] = codes[0]  # one bucket far longer than a cell: found by bisection
    table = BucketTable(bucket_keys(codes), np.arange(len(codes), dtype=np.int32))
    masks, weights = shell_range_masks(64, 0, 1)
    for q, query in enumerate(codes[:50, 0].tolist()):
        expected = sorted(
            (int(weight), row)
            for mask, weight in zip(masks[:, 0].tolist(), weights, strict=True)
            for row in np.flatnonzero(codes[:, 0] == (query ^ mask)).tolist()
        )
        got = probe_one(table, codes, query, 1)
        assert got == expected
        assert (0, q) in got


def test_probe_kernel_orders_a_shell_of_many_runs_by_row() -> None:
    """Neighbours behind all 64 one-bit probes, many copies each, come back in row order."""
    rng = np.random.default_rng(4)
    codes = random_words(rng, 5000, 1)
    base = int(codes[0, 0])
    neighbours = np.uint64(base) ^ (np.uint64(1) << np.arange(64, dtype=np.uint64))
    rows = rng.choice(np.arange(1, len(codes)), size=64 * 40, replace=False)
    codes[rows, 0] = np.repeat(neighbours, 40)
    table = BucketTable(bucket_keys(codes), np.arange(len(codes), dtype=np.int32))
    distance_one = np.flatnonzero(np.bitwise_count(codes[:, 0] ^ np.uint64(base)) == 1)
    assert probe_one(table, codes, base, 1) == [(0, 0)] + [(1, row) for row in distance_one]
