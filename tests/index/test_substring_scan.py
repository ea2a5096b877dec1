"""Batch balls by substring scan (`docbits.index.substring_scan`) against brute force."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docbits.index import hash_index, substring_scan
from docbits.index.hash_index import HashIndex
from docbits.index.substring_scan import substrings


def brute_force_balls(
    codes: np.ndarray, alive: np.ndarray, queries: np.ndarray, radius: int
) -> list[list[tuple[str, int]]]:
    """Every live row within `radius` of each query, by (distance, row)."""
    answers = []
    for query in queries:
        distances = np.bitwise_count(codes ^ query).sum(axis=1)
        order = np.argsort(distances, kind="stable")
        answers.append(
            [
                (f"r{row}", int(distances[row]))
                for row in order
                if alive[row] and distances[row] <= radius
            ]
        )
    return answers


@pytest.mark.parametrize(("bits", "radius"), [(8, 0), (8, 3), (8, 8), (8, 10), (24, 2), (64, 5)])
def test_substrings_cover_every_bit_once(bits: int, radius: int) -> None:
    """The radius + 1 substrings partition the code's bits (zero-width ones when radius >= bits)."""
    shifts, masks, widths = substrings(bits, radius)
    assert len(widths) == radius + 1 and sum(widths) == bits
    covered = 0
    for shift, mask in zip(shifts.tolist(), masks.tolist(), strict=True):
        field = mask << shift
        assert covered & field == 0
        covered |= field
    assert covered == ((1 << bits) - 1) << (64 - bits)


@settings(max_examples=40, deadline=None)
@given(
    bits=st.sampled_from([8, 16, 32, 40, 64]),
    radius=st.integers(0, 12),
    seed=st.integers(0, 2**32 - 1),
    threads=st.sampled_from([1, 2, 3]),
    buffered=st.sampled_from([0, 5, 1 << 17]),
    entry_bits=st.sampled_from([32, 16, 12, 6]),
)
def test_scan_matches_brute_force(
    bits: int, radius: int, seed: int, threads: int, buffered: int, entry_bits: int
) -> None:
    """Clustered codes, duplicates, removals and moves, hits kept from the counting pass (whole
    chunks in one segment, or segments of a few rows when entries are narrow) or found again by
    a second pass (buffer full, or entries too narrow for the keys): the scan path equals brute
    force."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    centres = rng.integers(0, 256, size=(4, bits // 8), dtype=np.uint8)
    flips = np.packbits(rng.random((n, bits)) < 1.5 / bits, axis=1)
    codes = centres[rng.integers(0, len(centres), size=n)] ^ flips
    ids = [f"r{row}" for row in range(n)]
    index = HashIndex.from_arrays(bits, ids, codes)
    alive = np.ones(n, dtype=bool)
    removed = rng.choice(n, size=n // 10, replace=False)
    index.remove([ids[row] for row in removed])
    alive[removed] = False
    moved = rng.choice(np.flatnonzero(alive), size=n // 10, replace=False)
    codes[moved] = centres[0] ^ np.packbits(rng.random((len(moved), bits)) < 0.05, axis=1)
    index.upsert([ids[row] for row in moved], codes[moved])
    queries = np.concatenate([codes[rng.integers(0, n, size=20)], centres, centres[:1]])
    with (
        mock.patch.object(hash_index, "PROBE_COST_IN_CODES", 10**9),
        mock.patch.object(hash_index, "MIN_ROWS_PER_THREAD", max(1, n // threads)),
        mock.patch.object(substring_scan, "BUFFERED_HITS", buffered),
        mock.patch.object(substring_scan, "ENTRY_BITS", entry_bits),
        mock.patch.object(substring_scan, "MIN_ROW_BITS", 2),
    ):
        assert index._scan_is_cheaper(len(queries), radius)
        result = index.ball_many_arrays(queries, radius)
    assert result.to_lists() == brute_force_balls(codes, alive, queries, radius)


def test_cost_model_scans_big_batches_of_wide_balls_only() -> None:
    """At 100 k codes, 1000 queries of radius 2 over 64 bits scan; one query probes."""
    rng = np.random.default_rng(0)
    n = 100_000
    codes = rng.integers(0, 256, size=(n, 8), dtype=np.uint8)
    index = HashIndex.from_arrays(64, [f"r{row}" for row in range(n)], codes)
    assert index._scan_is_cheaper(1000, 2)
    assert not index._scan_is_cheaper(1, 2)
    assert not HashIndex(128)._scan_is_cheaper(1000, 2)  # two-word codes always probe
