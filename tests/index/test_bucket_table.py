"""BucketTable and bucket keys: linearity of keys and the XOR probe path against the general one."""

from __future__ import annotations

import numpy as np
import pytest

from index.bucket_table import BucketTable, bucket_key, bucket_keys


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
def test_lookup_xor_equals_lookup_of_the_probe_keys(skewed: bool) -> None:
    rng = np.random.default_rng(3)
    codes = random_words(rng, 5000, 1) & np.uint64(0xFFFFFFFF00000000)
    if skewed:
        codes[:100] = codes[0]  # one bucket longer than any window: the general path
    table = BucketTable(bucket_keys(codes), np.arange(len(codes), dtype=np.int32))
    masks = np.uint64(1) << np.arange(32, 64, dtype=np.uint64)
    mask_keys = bucket_keys(np.concatenate([[0], masks]).astype(np.uint64)[:, None])
    for query in codes[:50, 0]:
        query_key = bucket_key([int(query)])
        expected = table.lookup(mask_keys ^ np.uint64(query_key))
        got = table.lookup_xor(query_key, mask_keys, "ball-1")
        assert sorted(zip(*[a.tolist() for a in got], strict=True)) == sorted(
            zip(*[a.tolist() for a in expected], strict=True)
        )
        assert int(query) in [int(codes[row, 0]) for row in got[1].tolist()]
