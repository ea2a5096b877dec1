"""The one Hamming distance (compiled) against bit counting, and the bucket statistics."""

from __future__ import annotations

import numpy as np
import pytest

from docbits.index.codes import bucket_statistics
from docbits.index.hamming import distance_matrix


def test_distance_matrix_matches_bit_counting() -> None:
    rng = np.random.default_rng(0)
    for n_bytes in (1, 3, 8, 16):
        queries = rng.integers(0, 256, (7, n_bytes), dtype=np.uint8)
        db = rng.integers(0, 256, (11, n_bytes), dtype=np.uint8)
        expected = (
            np.unpackbits(queries, axis=1)[:, None, :] != np.unpackbits(db, axis=1)[None, :, :]
        ).sum(axis=2)
        distances = distance_matrix(queries, db)
        assert distances.shape == (7, 11)
        np.testing.assert_array_equal(distances, expected)


def test_hamming_distance_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="bits"):
        distance_matrix(np.zeros((1, 2), np.uint8), np.zeros((1, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        distance_matrix(np.zeros((1, 2), np.int64), np.zeros((1, 2), np.int64))


def test_bucket_statistics_count_buckets_and_entropy() -> None:
    result = bucket_statistics(np.array([7, 7, 1, 2], dtype=np.uint8).reshape(-1, 1))
    assert result["distinct_codes"] == 3
    assert result["largest_bucket"] == 2
    assert result["singleton_buckets"] == 2
    assert result["entropy_bits"] == pytest.approx(1.5)
    assert result["max_entropy_bits"] == pytest.approx(2.0)
    assert result["mean_bit_on_rate"] == pytest.approx((3 + 3 + 1 + 1) / 32)
    assert result["histogram"] == {1: 2, 2: 1}
