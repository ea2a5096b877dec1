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
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from numba import njit

from docbits.index.kernels import popcount
from docbits.index.scratch import SCRATCH, SCRATCH_ENTRIES

REMOVED = 0  # `where` value of a removed row (hash_index.REMOVED)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: multiply, keep the top bits
_WORD_BITS = 64
MIN_SLOT_BITS = 8
MAX_SLOT_BITS = 20
SLOTS_PER_QUERY_BITS = 3  # about 8 slots per query keeps false slot matches rare
# Each substring also gets a bitmap of 2^(slot bits + FILTER_EXTRA_BITS) bits saying which
# hashes some query has: a few kB that stay in L1, so most codes never read the slot table.
FILTER_EXTRA_BITS = 3
# Hits a chunk keeps from its counting pass (4 B each, in a buffer lent by `docbits.index.scratch`);
# a chunk with more is scanned a second time.
BUFFERED_HITS = SCRATCH_ENTRIES
# A buffered hit is ENTRY_BITS wide: its key above, its row's offset within a segment of
# 2^row_bits rows below. Batches with too many keys to leave MIN_ROW_BITS are not buffered.
ENTRY_BITS = 32
MIN_ROW_BITS = 8


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


def scan_balls(
    words: np.ndarray,
    pad: int,
    where: np.ndarray,
    spans: list[tuple[int, int]],
    query_words: np.ndarray,
    bits: int,
    radius: int,
    map_spans: Callable[[Callable[[int], object], list[int]], list],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, rows int32, distances uint8) of every query's ball, by (distance, row).

    `words` is the (n,) stored first code word (uint32 codes are shifted up by `pad` bits);
    `spans` split the rows into chunks that `map_spans(function, chunk numbers)` runs (on
    threads). Each chunk is scanned once, counting hits per (query, distance) key and keeping
    them in a borrowed scratch buffer; the counts give every chunk's place in the answer, where
    the buffered rows are then written. A chunk whose hits did not fit its buffer is scanned a
    second time, writing rows straight to their places. Distances are filled in per key last.
    """
    shifts, masks, _ = substrings(bits, radius)
    slot_bits = slot_bits_for(len(query_words))
    tables = query_tables(query_words, shifts, masks, slot_bits)
    num_keys = len(query_words) * (radius + 1)
    row_bits = ENTRY_BITS - max(1, (num_keys - 1).bit_length())
    capacity = BUFFERED_HITS if row_bits >= MIN_ROW_BITS else 0
    counts = np.zeros((len(spans), num_keys), dtype=np.int64)
    # marks[s]: where segment s of a chunk's rows starts in its buffer; the last, the end.
    segment_rows = 1 << row_bits if capacity else 1 << 62
    marks = [np.zeros(-(-(hi - lo) // segment_rows) + 1, dtype=np.int64) for lo, hi in spans]
    stored = [0] * len(spans)
    parts = list(range(len(spans)))

    def scan(part: int, buffer: np.ndarray, positions: np.ndarray, rows: np.ndarray) -> int:
        """`scan_chunk` over chunk `part`, counting or filling as the arrays say."""
        return scan_chunk(
            words,
            pad,
            where,
            spans[part],
            shifts,
            masks,
            slot_bits,
            tables,
            radius,
            counts[part],
            buffer,
            marks[part],
            row_bits,
            positions,
            rows,
        )

    with SCRATCH.lend(len(spans)) as scratch:
        buffers = [buffer[:capacity] for buffer in scratch]

        def count(part: int) -> None:
            stored[part] = scan(part, buffers[part], _NO_POSITIONS, _NO_ROWS)

        map_spans(count, parts)
        totals = counts.sum(axis=0)
        key_starts = np.zeros(num_keys + 1, dtype=np.int64)
        np.cumsum(totals, out=key_starts[1:])
        # Chunk t's hits of key k go after those of the chunks before it.
        positions = key_starts[:-1] + np.cumsum(counts, axis=0) - counts
        rows = np.empty(key_starts[-1], dtype=np.int32)

        def fill(part: int) -> None:
            if stored[part] == counts[part].sum():
                first_row = spans[part][0]
                place_hits(buffers[part], marks[part], row_bits, first_row, positions[part], rows)
            else:
                scan(part, _NO_BUFFER, positions[part], rows)

        map_spans(fill, parts)
    distances = np.empty(key_starts[-1], dtype=np.uint8)
    fill_distances(key_starts, radius, distances)
    return key_starts[:: radius + 1].copy(), rows, distances


@njit(cache=True, nogil=True)
def scan_chunk(
    words: np.ndarray,
    pad: int,
    where: np.ndarray,
    span: tuple[int, int],
    shifts: np.ndarray,
    masks: np.ndarray,
    slot_bits: int,
    tables: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    radius: int,
    counts: np.ndarray,
    buffer: np.ndarray,
    marks: np.ndarray,
    row_bits: int,
    positions: np.ndarray,
    out_rows: np.ndarray,
) -> int:
    """Scan rows span[0]..span[1] - 1 for hits; a hit's key is query * (radius + 1) + distance.

    Counting (`positions` empty): add each hit to `counts[key]` and store the first len(buffer)
    as uint32 `key << row_bits | offset`, the offset taken within the hit's segment of
    2^row_bits rows; `marks[s]` is where segment s starts in the buffer (and the last entry the
    end). Returns how many hits were stored. Filling (`positions` given): write each hit's row
    at `positions[key]`, advanced. Removed rows are skipped; a pair is taken from the first
    substring on which it agrees. Candidates are written unconditionally and kept by advancing
    a count: no branch to mispredict.
    """
    starts, queries, slot_words, filters = tables
    filling = len(positions) > 0
    buffering = len(buffer) > 0
    num_substrings = len(shifts)
    fields = masks << shifts  # substring j's bits in place
    filter_bits = slot_bits + FILTER_EXTRA_BITS
    limit = np.uint64(radius)
    offset_mask = (1 << row_bits) - 1 if buffering else 0
    kept = np.empty(len(queries[0]) + 1, dtype=np.int64)
    stored = 0
    for row in range(span[0], span[1]):
        offset = row - span[0]
        if buffering and (offset & offset_mask) == 0:
            marks[offset >> row_bits] = stored
        word = np.uint64(words[row]) << np.uint64(pad)
        for j in range(num_substrings):
            part = (word >> shifts[j]) & masks[j]
            bit = _slot(part, filter_bits)
            if not (filters[j, bit >> np.uint64(6)] >> (bit & np.uint64(63))) & np.uint64(1):
                continue
            if where[row] == REMOVED:
                break
            slot = _slot(part, slot_bits)
            found = 0
            for entry in range(starts[j, slot], starts[j, slot + np.uint64(1)]):
                difference = word ^ slot_words[j, entry]
                distance = popcount(difference)
                earlier = False
                for i in range(j):
                    earlier |= (difference & fields[i]) == 0
                kept[found] = np.int64(queries[j, entry]) * (radius + 1) + np.int64(distance)
                same = (difference & fields[j]) == 0
                found += np.int64((distance <= limit) & same & (not earlier))
            for h in range(found):
                key = kept[h]
                if filling:
                    out_rows[positions[key]] = row
                    positions[key] += 1
                    continue
                counts[key] += 1
                if stored < len(buffer):
                    buffer[stored] = np.uint32((key << row_bits) | (offset & offset_mask))
                    stored += 1
    if buffering:
        marks[len(marks) - 1] = stored
    return stored


@njit(cache=True, nogil=True)
def place_hits(
    buffer: np.ndarray,
    marks: np.ndarray,
    row_bits: int,
    first_row: int,
    positions: np.ndarray,
    out_rows: np.ndarray,
) -> None:
    """Write the rows of `scan_chunk`'s buffered hits (in row order) at `positions[key]`,
    advanced; segment s of the buffer, `marks[s]` to `marks[s + 1]`, holds offsets from row
    `first_row + s * 2^row_bits`."""
    offset_mask = np.uint32((1 << row_bits) - 1)
    for segment in range(len(marks) - 1):
        base = first_row + (segment << row_bits)
        for i in range(marks[segment], marks[segment + 1]):
            key = buffer[i] >> row_bits
            out_rows[positions[key]] = base + (buffer[i] & offset_mask)
            positions[key] += 1


@njit(cache=True, nogil=True)
def fill_distances(key_starts: np.ndarray, radius: int, distances: np.ndarray) -> None:
    """Every hit's distance, read off its key's range: key k holds distance k % (radius + 1)."""
    for key in range(len(key_starts) - 1):
        distances[key_starts[key] : key_starts[key + 1]] = key % (radius + 1)


_NO_BUFFER = np.zeros(0, dtype=np.uint32)
_NO_POSITIONS = np.zeros(0, dtype=np.int64)
_NO_ROWS = np.zeros(0, dtype=np.int32)
