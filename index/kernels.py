"""The index's compiled loops (numba): Hamming distances, k smallest, Hamming-ball probes.

A Hamming-ball probe or a full scan is a short loop that numpy would run as several calls of
fixed overhead each; compiled, it runs at FAISS's speed and releases the GIL. Every compiled
index function lives in this one file, so numba's disk cache (`cache=True`, keyed by this file)
is never stale. Codes are word-major (W, n) uint64 arrays (`codes.py`); results are ordered by
(distance, row).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Distance given to removed rows by a scan: above any real distance (codes have ≤ 128 bits).
DEAD_DISTANCE = 255
SAMPLE_SIZE = 16384
_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@njit(cache=True, nogil=True, inline="always")
def popcount(x: np.uint64) -> np.uint64:
    """Set bits of a uint64 (the SWAR sum; LLVM turns it into a popcount instruction)."""
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return (x * _H01) >> np.uint64(56)


@njit(cache=True, nogil=True)
def distances(words: np.ndarray, query: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Hamming distance (uint8) from `query` (W,) to each code of `words` (W, n).

    Rows listed in `removed` get DEAD_DISTANCE. This is the project's one Hamming distance:
    `hamming.distance_matrix` and the index's scans both call it.
    """
    num_words, n = words.shape
    result = np.zeros(n, dtype=np.uint8)
    for w in range(num_words):
        row_words = words[w]
        qw = query[w]
        for i in range(n):
            result[i] += popcount(row_words[i] ^ qw)
    for row in removed:
        result[row] = DEAD_DISTANCE
    return result


@njit(cache=True, nogil=True)
def smallest_rows(dists: np.ndarray, k: int) -> np.ndarray:
    """Rows of the k smallest distances, by (distance, row); k at most the live rows.

    The k-th distance is estimated from a sample, one pass keeps the rows at or below it (raised
    and repeated in the rare case that keeps fewer than k), and a counting sort by distance,
    stable in row order, ranks the kept rows.
    """
    n = len(dists)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    step = max(1, n // SAMPLE_SIZE)
    sample_counts = np.zeros(256, dtype=np.int64)
    for i in range(0, n, step):
        sample_counts[dists[i]] += 1
    scale = n / max(1, (n + step - 1) // step)
    threshold = 0
    seen = 0.0
    while threshold < DEAD_DISTANCE - 1:
        seen += sample_counts[threshold] * scale
        if seen >= k:
            break
        threshold += 1
    threshold = min(threshold + 1, DEAD_DISTANCE - 1)
    while True:
        kept = np.flatnonzero(dists <= threshold)
        if len(kept) >= k:
            return _rank(dists, kept, k)
        threshold = min(threshold + 2, DEAD_DISTANCE - 1)


@njit(cache=True, nogil=True)
def _rank(dists: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The first k of ascending `rows` ordered by (distance, row), by a counting sort."""
    starts = np.zeros(257, dtype=np.int64)
    for row in rows:
        starts[dists[row] + 1] += 1
    for d in range(256):
        starts[d + 1] += starts[d]
    ranked = np.empty(len(rows), dtype=np.int64)
    for row in rows:
        d = dists[row]
        ranked[starts[d]] = row
        starts[d] += 1
    return ranked[:k]


@njit(cache=True, nogil=True)
def probe(
    query_key: np.uint64,
    query: np.ndarray,
    mask_keys: np.ndarray,
    mask_weights: np.ndarray,
    mask_words: np.ndarray,
    main_directory: np.ndarray,
    main_keys: np.ndarray,
    main_rows: np.ndarray,
    main_want: int,
    delta_directory: np.ndarray,
    delta_keys: np.ndarray,
    delta_rows: np.ndarray,
    delta_want: int,
    where: np.ndarray,
    words: np.ndarray,
    confirm: bool,
) -> np.ndarray:
    """Hits of the probes `query XOR mask` as int64 `distance << 32 | row`, sorted, so in
    (distance, row) order.

    A probe's bucket key is `query_key ^ mask_keys[p]` (keys are linear in the code) and its
    distance is `mask_weights[p]`. The main and delta tables are `BucketTable`s' (directory,
    keys, rows) and a `want`: an entry counts when `where[row] == want` (any row when `want` is
    negative) and, when `confirm` is set (keys of two-word codes are hashes), when its stored
    code is the probe's. Arrays go in one by one: numba types them faster than tuples.
    """
    found = np.empty(64, dtype=np.int64)
    while True:  # a second pass only when the first ran out of room, with room for all
        count = _probe_table(
            main_directory,
            main_keys,
            main_rows,
            main_want,
            query_key,
            query,
            mask_keys,
            mask_weights,
            mask_words,
            where,
            words,
            confirm,
            found,
            0,
        )
        count = _probe_table(
            delta_directory,
            delta_keys,
            delta_rows,
            delta_want,
            query_key,
            query,
            mask_keys,
            mask_weights,
            mask_words,
            where,
            words,
            confirm,
            found,
            count,
        )
        if count <= len(found):
            break
        found = np.empty(count, dtype=np.int64)
    hits = found[:count]
    if count > 1:
        hits.sort()
    return hits


@njit(cache=True, nogil=True)
def _probe_table(
    directory: np.ndarray,
    keys: np.ndarray,
    rows: np.ndarray,
    want: int,
    query_key: np.uint64,
    query: np.ndarray,
    mask_keys: np.ndarray,
    mask_weights: np.ndarray,
    mask_words: np.ndarray,
    where: np.ndarray,
    words: np.ndarray,
    confirm: bool,
    found: np.ndarray,
    count: int,
) -> int:
    """Append one table's hits to `found` from `count`, as far as it has room; returns the
    count they need (more than `len(found)` when some did not fit)."""
    if len(keys) == 0:
        return count
    cells = np.uint64(len(directory) - 1)
    shift = np.uint64(64)
    while cells > np.uint64(1):
        cells >>= np.uint64(1)
        shift -= np.uint64(1)
    needed = count
    for p in range(len(mask_keys)):
        key = query_key ^ mask_keys[p]
        cell = key >> shift
        lo, hi = directory[cell], directory[cell + np.uint64(1)]
        first, last = lo, hi  # keys are sorted: bisect to the first one not below `key`
        while first < last:
            middle = (first + last) >> 1
            if keys[middle] < key:
                first = middle + 1
            else:
                last = middle
        lo = first
        while lo < hi and keys[lo] == key:
            row = rows[lo]
            lo += 1
            if want >= 0 and where[row] != want:
                continue
            if confirm:
                same = True
                for w in range(len(query)):
                    same &= words[w, row] == query[w] ^ mask_words[p, w]
                if not same:
                    continue
            if needed < len(found):
                found[needed] = (np.int64(mask_weights[p]) << 32) | row
            needed += 1
    return needed
