"""Batch Hamming balls by one scan of every code against a multi-index of the *queries*.

Multi-index hashing (Norouzi et al.) splits a code into r + 1 disjoint substrings: two codes
within distance r agree exactly on at least one of them (r flips touch at most r substrings).
Tables of substrings over the stored codes would cost ~8 B/doc each, beyond the memory budget,
so here the tables index the batch's queries instead (built per batch, a few hundred kB), and
every stored code is looked up in them: r + 1 cache-resident lookups per code, then a popcount
per candidate pair. For a batch of many queries this replaces Q × |ball| random probes of the
bucket tables (2,081 per query at 64 bits and r = 2) by one sequential pass over the codes.

Only single-word codes (at most 64 bits) are handled. Each (query, code) pair is reported once,
from the first substring the two agree on; hits come out grouped by query, ordered by
(distance, row).
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
from numba import njit

from index.kernels import popcount

REMOVED = 0  # `where` value of a removed row (hash_index.REMOVED)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: multiply, keep the top bits
_WORD_BITS = 64
MIN_SLOT_BITS = 8
MAX_SLOT_BITS = 20
SLOTS_PER_QUERY_BITS = 3  # about 8 slots per query keeps false slot matches rare
# Each substring also gets a bitmap of 2^(slot bits + FILTER_EXTRA_BITS) bits saying which
# hashes some query has: a few kB that stay in L1, so most codes never read the slot table.
FILTER_EXTRA_BITS = 3


@lru_cache(maxsize=64)
def substrings(bits: int, radius: int) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """(shifts, masks, widths) of the radius + 1 substrings of a `bits`-bit code (read-only).

    Substring j of a top-aligned 64-bit code word is `(word >> shifts[j]) & masks[j]`; widths
    differ by at most one bit. A zero-width substring (radius >= bits) always agrees.
    """
    count = radius + 1
    bounds = [bits * j // count for j in range(count + 1)]
    widths = tuple(hi - lo for lo, hi in itertools.pairwise(bounds))
    shifts = np.array([min(_WORD_BITS - hi, _WORD_BITS - 1) for hi in bounds[1:]], dtype=np.uint64)
    masks = np.array([(1 << width) - 1 for width in widths], dtype=np.uint64)
    shifts.setflags(write=False)
    masks.setflags(write=False)
    return shifts, masks, widths


def slot_bits_for(num_queries: int) -> int:
    """Bits of the per-substring slot tables for a batch of `num_queries` queries."""
    return min(MAX_SLOT_BITS, max(MIN_SLOT_BITS, num_queries.bit_length() + SLOTS_PER_QUERY_BITS))


@njit(cache=True, nogil=True, inline="always")
def _slot(value: np.uint64, slot_bits: int) -> np.uint64:
    """The slot of a substring value: its Fibonacci hash's top `slot_bits` bits."""
    return (value * _GOLDEN) >> np.uint64(_WORD_BITS - slot_bits)


@njit(cache=True, nogil=True)
def query_tables(
    query_words: np.ndarray, shifts: np.ndarray, masks: np.ndarray, slot_bits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per substring j, the queries grouped by slot, and a filter bitmap of their hashes.

    Returns starts (m, 2^s + 1) int32; queries (m, Q) int32 and their words (m, Q) uint64, so
    substring j's queries in slot s are `queries[j, starts[j, s]:starts[j, s + 1]]`; and
    filters (m, 2^(s + FILTER_EXTRA_BITS - 6)) uint64.
    """
    num_substrings = len(shifts)
    num_queries = len(query_words)
    num_slots = 1 << slot_bits
    starts = np.zeros((num_substrings, num_slots + 1), dtype=np.int32)
    queries = np.empty((num_substrings, num_queries), dtype=np.int32)
    slot_words = np.empty((num_substrings, num_queries), dtype=np.uint64)
    filter_bits = slot_bits + FILTER_EXTRA_BITS
    filters = np.zeros((num_substrings, 1 << (filter_bits - 6)), dtype=np.uint64)
    for j in range(num_substrings):
        for q in range(num_queries):
            part = (query_words[q] >> shifts[j]) & masks[j]
            starts[j, _slot(part, slot_bits) + np.uint64(1)] += 1
            bit = _slot(part, filter_bits)
            filters[j, bit >> np.uint64(6)] |= np.uint64(1) << (bit & np.uint64(63))
        for s in range(num_slots):
            starts[j, s + 1] += starts[j, s]
        fill = starts[j, :num_slots].copy()
        for q in range(num_queries):
            slot = _slot((query_words[q] >> shifts[j]) & masks[j], slot_bits)
            queries[j, fill[slot]] = q
            slot_words[j, fill[slot]] = query_words[q]
            fill[slot] += 1
    return starts, queries, slot_words, filters


@njit(cache=True, nogil=True)
def scan_rows(
    words: np.ndarray,
    pad: int,
    where: np.ndarray,
    first_row: int,
    stop_row: int,
    shifts: np.ndarray,
    masks: np.ndarray,
    slot_bits: int,
    starts: np.ndarray,
    queries: np.ndarray,
    slot_words: np.ndarray,
    filters: np.ndarray,
    radius: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Hits among rows first_row..stop_row - 1: (query * (radius + 1) + distance, row), by row.

    `words` is the (n,) stored first code word (uint32 codes are shifted up by `pad` bits);
    removed rows are skipped. A pair is kept from the first substring on which it agrees.
    Candidates are written unconditionally and kept by advancing the count (no branch to
    mispredict: on skewed codes most candidates are hits, on others few are).
    """
    num_substrings = len(shifts)
    fields = masks << shifts  # substring j's bits in place
    filter_bits = slot_bits + FILTER_EXTRA_BITS
    limit = np.uint64(radius)
    keys = np.empty(1024, dtype=np.int64)
    rows = np.empty(1024, dtype=np.int32)
    count = 0
    for row in range(first_row, stop_row):
        word = np.uint64(words[row]) << np.uint64(pad)
        for j in range(num_substrings):
            part = (word >> shifts[j]) & masks[j]
            bit = _slot(part, filter_bits)
            if not (filters[j, bit >> np.uint64(6)] >> (bit & np.uint64(63))) & np.uint64(1):
                continue
            if where[row] == REMOVED:
                break
            slot = _slot(part, slot_bits)
            lo, hi = starts[j, slot], starts[j, slot + np.uint64(1)]
            if count + (hi - lo) > len(keys):
                keys = _grown(keys, count + (hi - lo))
                rows = _grown(rows, count + (hi - lo))
            for entry in range(lo, hi):
                difference = word ^ slot_words[j, entry]
                distance = popcount(difference)
                earlier = False
                for i in range(j):
                    earlier |= (difference & fields[i]) == 0
                keys[count] = np.int64(queries[j, entry]) * (radius + 1) + np.int64(distance)
                rows[count] = row
                same = (difference & fields[j]) == 0
                count += np.int64((distance <= limit) & same & (not earlier))
    return keys[:count], rows[:count]


@njit(cache=True, nogil=True)
def _grown(values: np.ndarray, needed: int) -> np.ndarray:
    """A copy of `values` with room for at least `needed` entries (doubling)."""
    grown = np.empty(max(2 * len(values), needed), dtype=values.dtype)
    grown[: len(values)] = values
    return grown


@njit(cache=True, nogil=True)
def group_hits(
    keys: np.ndarray, rows: np.ndarray, num_queries: int, radius: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR offsets per query, rows (int32) and distances (uint8) ordered by (distance, row).

    `keys`/`rows` come in ascending row order; a counting sort on the key keeps that order.
    """
    num_keys = num_queries * (radius + 1)
    starts = np.zeros(num_keys + 1, dtype=np.int64)
    for key in keys:
        starts[key + 1] += 1
    for key in range(num_keys):
        starts[key + 1] += starts[key]
    offsets = np.empty(num_queries + 1, dtype=np.int64)
    for q in range(num_queries + 1):
        offsets[q] = starts[q * (radius + 1)]
    ordered_rows = np.empty(len(rows), dtype=np.int32)
    distances = np.empty(len(rows), dtype=np.uint8)
    for i in range(len(keys)):
        key = keys[i]
        position = starts[key]
        ordered_rows[position] = rows[i]
        distances[position] = key % (radius + 1)
        starts[key] = position + 1
    return offsets, ordered_rows, distances
