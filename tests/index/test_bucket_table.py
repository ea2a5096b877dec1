"""BucketTable and bucket keys: linearity of keys, and the probe kernel against a brute force."""

from __future__ import annotations

import numpy as np
import pytest

from docbits.index.bucket_table import BucketTable, bucket_key, bucket_keys
from docbits.index.codes import words_to_codes
from docbits.index.hamming import ball_masks
from docbits.index.kernels import CONFIRM_NONE, pack_masks, probe_balls, split_hits


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


def test_one_word_keys_are_a_bijection_that_keeps_low_zero_bits() -> None:
    rng = np.random.default_rng(2)
    words = random_words(rng, 20_000, 1)
    assert len(np.unique(bucket_keys(words))) == len(np.unique(words))
    high_only = words & np.uint64(0xFFFFFFFF00000000)
    assert not np.any(bucket_keys(high_only) & np.uint64(0xFFFFFFFF))
    # Every single-bit code has a distinct key, so flipping one bit always changes the bucket.
    single_bits = (np.uint64(1) << np.arange(64, dtype=np.uint64))[:, None]
    assert len(np.unique(bucket_keys(single_bits))) == 64


@pytest.mark.parametrize("skewed", [False, True])
def test_probe_kernel_finds_exactly_the_rows_with_each_probed_code(skewed: bool) -> None:
    rng = np.random.default_rng(3)
    codes = random_words(rng, 5000, 1) & np.uint64(0xFFFFFFFF00000000)
    codes[200:260] = codes[:60] ^ np.uint64(1 << 40)  # neighbours at distance 1
    if skewed:
        codes[:100] = codes[0]  # one bucket far longer than a cell: found by bisection
    table = BucketTable(bucket_keys(codes), np.arange(len(codes), dtype=np.int32))
    masks, weights = ball_masks(32, 1)
    where = np.zeros(len(codes), dtype=np.uint8)  # unread: the table's `want` is -1
    queries = codes[:50]
    offsets, found = probe_balls(
        words_to_codes(queries, 32),
        pack_masks(bucket_keys(masks), weights, masks),
        (table.kernel_view(-1), BucketTable.empty().kernel_view(-1)),
        where,
        codes.T.copy(),
        CONFIRM_NONE,
        np.empty(4, dtype=np.int64),
    )
    rows, distances = split_hits(found)
    for q, query in enumerate(queries[:, 0]):
        lo, hi = offsets[q], offsets[q + 1]
        got = list(zip(distances[lo:hi].tolist(), rows[lo:hi].tolist(), strict=True))
        expected = sorted(
            (int(weight), row)
            for mask, weight in zip(masks[:, 0], weights, strict=True)
            for row in np.flatnonzero(codes[:, 0] == (query ^ mask)).tolist()
        )
        assert got == expected
        assert (0, q) in got


@pytest.mark.parametrize(("n", "copies"), [(20_000, 1), (5000, 1), (5000, 40)])
def test_probe_kernel_orders_a_shell_of_many_runs_by_row(n: int, copies: int) -> None:
    """Neighbours behind all 32 one-bit probes come back in row order: merged when few rows
    are spread wide (20 000 rows, 32 hits), through the bitmap when they are dense."""
    rng = np.random.default_rng(4)
    codes = random_words(rng, n, 1) & np.uint64(0xFFFFFFFF00000000)
    base = codes[0, 0]
    neighbours = base ^ (np.uint64(1) << np.arange(32, 64, dtype=np.uint64))
    rows = rng.choice(np.arange(1, len(codes)), size=32 * copies, replace=False)
    codes[rows, 0] = np.repeat(neighbours, copies)
    table = BucketTable(bucket_keys(codes), np.arange(len(codes), dtype=np.int32))
    masks, weights = ball_masks(32, 1)
    offsets, found = probe_balls(
        words_to_codes(codes[:1], 32),
        pack_masks(bucket_keys(masks), weights, masks),
        (table.kernel_view(-1), BucketTable.empty().kernel_view(-1)),
        np.zeros(len(codes), dtype=np.uint8),
        codes.T.copy(),
        CONFIRM_NONE,
        np.empty(4, dtype=np.int64),
    )
    got_rows, got_distances = split_hits(found)
    distance_one = np.flatnonzero(np.bitwise_count(codes[:, 0] ^ base) == 1)
    assert got_rows.tolist() == [0, *distance_one.tolist()]
    assert got_distances.tolist() == [0] + [1] * len(distance_one)
    assert offsets.tolist() == [0, 1 + 32 * copies]
