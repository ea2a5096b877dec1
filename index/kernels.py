"""Compiled loops (numba) for the index's hot paths: distance scans, k-smallest rows, probes.

Each kernel replaces a chain of numpy calls whose fixed cost (1-5 µs each) dominated single
queries. They release the GIL (`nogil`), so queries on several threads run in parallel, and are
cached on disk (`cache=True`: numba's cache folder, `NUMBA_CACHE_DIR` to move it), so only the
first process after an install pays the compile. Codes are word-major (W, n) arrays of uint32
(codes of at most 32 bits) or uint64 words; results are ordered by (distance, row).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, typeof
from numba.core.dispatcher import Dispatcher
from numba.core.typing.typeof import Purpose

from docbits.index.bucket_table import KEY_TABLES

DEAD_DISTANCE = 255
# How a probe's candidates (entries whose tag equals the probe's) are checked against its code.
CONFIRM_NONE = 0  # tags hold the whole key (codes of at most 32 bits)
CONFIRM_RUN = 1  # one code per run of equal tags (bar listed mixed runs): its first current entry
CONFIRM_EACH = 2  # every candidate's stored code is compared
# Cells longer than this (big buckets of skewed codes) are searched by bisection.
LONG_CELL = 16
BLOCK_PROBES = 64
SAMPLE_SIZE = 16384
_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


def entry_point(kernel: Dispatcher, *example: object) -> Callable:
    """`kernel` compiled (or loaded from the disk cache) for the types of the `example` arguments,
    as a function that skips numba's typing of every argument on every call (half the fixed cost
    of a small query when its caches are cold). Only pass it arguments of exactly those types:
    it does not check them."""
    return kernel.compile(tuple(typeof(value, Purpose.argument) for value in example))


@njit(cache=True, nogil=True, inline="always")
def popcount(x: np.uint64) -> np.uint64:
    """Set bits of a uint64 (the SWAR sum; LLVM turns it into a popcount instruction)."""
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return (x * _H01) >> np.uint64(56)


@njit(cache=True, nogil=True)
def scan_distances(words: np.ndarray, query: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Distance (uint8) from `query` (W,) to each of the n codes of `words` (W, n).

    Rows listed in `removed` get DEAD_DISTANCE, above any real distance (at most 128).
    """
    num_words, n = words.shape
    distances = np.empty(n, dtype=np.uint8)
    first = words[0]
    q0 = query[0]
    for i in range(n):
        distances[i] = popcount(np.uint64(first[i] ^ q0))
    for w in range(1, num_words):
        row_words = words[w]
        qw = query[w]
        for i in range(n):
            distances[i] += popcount(np.uint64(row_words[i] ^ qw))
    for row in removed:
        distances[row] = DEAD_DISTANCE
    return distances


@njit(cache=True, nogil=True)
def smallest_rows(distances: np.ndarray, k: int) -> np.ndarray:
    """Rows of the k smallest distances, by (distance, row); k at most the live rows.

    The k-th distance is estimated from a sample; one pass keeps rows at or below one more than
    that estimate (raised and repeated in the rare case it keeps fewer than k), then a counting
    sort by distance, stable in row order, ranks the few kept rows.
    """
    n = len(distances)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    step = max(1, n // SAMPLE_SIZE)
    sample_counts = np.zeros(256, dtype=np.int64)
    for i in range(0, n, step):
        sample_counts[distances[i]] += 1
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
        kept = _rows_at_most(distances, threshold)
        if len(kept) >= k:
            return _rank(distances, kept, k)
        threshold = min(threshold + 2, DEAD_DISTANCE - 1)


@njit(cache=True, nogil=True)
def _rows_at_most(distances: np.ndarray, threshold: int) -> np.ndarray:
    """Rows whose distance is at most `threshold`, ascending (a counting pass, then a fill)."""
    limit = np.uint8(threshold)
    count = 0
    for i in range(len(distances)):
        count += distances[i] <= limit
    kept = np.empty(count, dtype=np.int64)
    count = 0
    for i in range(len(distances)):
        if distances[i] <= limit:
            kept[count] = i
            count += 1
    return kept


@njit(cache=True, nogil=True)
def _rank(distances: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The first k of ascending `rows` ordered by (distance, row), by a counting sort."""
    starts = np.zeros(257, dtype=np.int64)
    for row in rows:
        starts[distances[row] + 1] += 1
    for d in range(256):
        starts[d + 1] += starts[d]
    ranked = np.empty(len(rows), dtype=np.int64)
    for row in rows:
        d = distances[row]
        ranked[starts[d]] = row
        starts[d] += 1
    return ranked[:k]


@njit(cache=True, nogil=True)
def _grown(values: np.ndarray, needed: int) -> np.ndarray:
    """A copy of `values` with room for at least `needed` entries (doubling)."""
    size = max(2 * len(values), needed, 16)
    grown = np.empty(size, dtype=values.dtype)
    grown[: len(values)] = values
    return grown


@njit(cache=True, nogil=True)
def _find_runs(
    directory: np.ndarray,
    tags: np.ndarray,
    query_key: np.uint64,
    mask_keys: np.ndarray,
    runs: np.ndarray,
) -> None:
    """runs[p] = [start, stop) of the entries whose tag equals that of key `query_key ^ mask p`.

    A key's cell is its top bits, its tag its top 32 bits; tags are sorted within a cell, so the
    matches are one contiguous run. Two passes: first every probe's cell bounds, then the runs,
    so the (cache-missing) reads of different probes overlap instead of waiting on each other.
    """
    shift = _cell_shift(directory)
    for p in range(len(mask_keys)):
        cell = (query_key ^ mask_keys[p]) >> shift
        runs[p, 0] = directory[cell]
        runs[p, 1] = directory[cell + np.uint64(1)]
    for p in range(len(mask_keys)):
        tag = np.uint32((query_key ^ mask_keys[p]) >> np.uint64(32))
        lo, end = runs[p, 0], runs[p, 1]
        if end - lo > LONG_CELL:
            hi = end
            while lo < hi:
                middle = (lo + hi) >> 1
                if tags[middle] < tag:
                    lo = middle + 1
                else:
                    hi = middle
        else:
            while lo < end and tags[lo] < tag:
                lo += 1
        stop = lo
        while stop < end and tags[stop] == tag:
            stop += 1
        runs[p, 0] = lo
        runs[p, 1] = stop


@njit(cache=True, nogil=True, inline="always")
def _cell_shift(directory: np.ndarray) -> np.uint64:
    """How far a key is shifted right to give its cell: 64 - log2(cells)."""
    cells = np.uint64(len(directory) - 1)
    shift = np.uint64(64)
    while cells > np.uint64(1):
        cells >>= np.uint64(1)
        shift -= np.uint64(1)
    return shift


@njit(cache=True, nogil=True, inline="always")
def _bucket_key(words: np.ndarray) -> np.uint64:
    """`bucket_table.bucket_keys` of one code's (W,) uint64 words: XOR of byte-table entries.

    KEY_TABLES is a global, which numba compiles in as a constant.
    """
    key = np.uint64(0)
    for w in range(min(len(words), KEY_TABLES.shape[0])):
        word = words[w]
        for byte in range(8):
            key ^= KEY_TABLES[w, byte, (word >> np.uint64(56 - 8 * byte)) & np.uint64(0xFF)]
    return key


@njit(cache=True, nogil=True)
def probe_balls(
    query_codes: np.ndarray,
    masks: np.ndarray,
    tables: tuple,
    where: np.ndarray,
    words: np.ndarray,
    confirm: int,
    found: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """`probe_words` of packed (q, b/8) uint8 query codes, hits in `found` or a grown copy."""
    query_words = np.empty((len(query_codes), masks.shape[1] - 2), dtype=np.uint64)
    for q in range(len(query_codes)):
        _pack_words(query_codes[q], query_words[q])
    offsets, found = probe_words(query_words, masks, tables, where, words, confirm, found)
    return offsets, found[: offsets[-1]]


@njit(cache=True, nogil=True)
def probe_words(
    query_words: np.ndarray,
    masks: np.ndarray,
    tables: tuple,
    where: np.ndarray,
    words: np.ndarray,
    confirm: int,
    found: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Hits of every query's probes `query XOR mask`: CSR offsets and (distance << 32 | row),
    the latter in `found` (int64), or in a grown copy when it was too small.

    Queries are (q, W) uint64 words of `codes.py`.

    `masks` is `pack_masks`'s (P, 2 + W) array. A probe's bucket key is its query's XOR its
    mask's, and its distance is the mask's weight (masks come in shell order, weights ascending).
    `tables` holds two (directory, tags, rows, mixed runs, want) of `BucketTable.kernel_view`
    (main and delta); an entry counts
    when `where[row]` equals `want` (any row when `want` is negative) and its code is the
    probe's, which tags alone settle only for codes of at most 32 bits. `confirm` says how the
    code is checked: CONFIRM_NONE, CONFIRM_RUN (the first current entry of a run of equal tags
    settles the whole run, unless the table lists the run as mixed) or CONFIRM_EACH. Each
    query's hits are ordered by (distance, row); one int64 array (not two) keeps the per-call
    allocations and conversions back to Python few.
    """
    num_queries = len(query_words)
    num_masks = len(masks)
    mask_keys = masks[:, 0]
    mask_weights = masks[:, 1]
    mask_words = masks[:, 2:]
    # Unpacked once: indexing a tuple of tables with a loop variable copies the whole tuple.
    _, _, main_rows, main_mixed, main_want = tables[0]
    _, _, delta_rows, delta_mixed, delta_want = tables[1]
    offsets = np.zeros(num_queries + 1, dtype=np.int64)
    scratch = np.empty(0, dtype=np.int64)
    bitmap = np.zeros(0, dtype=np.uint64)  # one bit per row, allocated when a shell needs it
    # Per query: each shell's start followed by the ends of its runs (each probe's hits in one
    # table, ascending rows), and where each shell's entries start in run_bounds.
    run_bounds = np.empty(3 * num_masks + 1, dtype=np.int64)
    shell_starts = np.empty(num_masks + 1, dtype=np.int64)
    # Queries are probed in blocks of at least BLOCK_PROBES probes (one query for r >= 1, 64
    # buckets for r = 0), so the cache misses of a block's probes overlap.
    block = max(1, BLOCK_PROBES // num_masks)
    probe_keys = np.empty(block * num_masks, dtype=np.uint64)
    main_runs = np.empty((block * num_masks, 2), dtype=np.int64)
    delta_runs = np.zeros((block * num_masks, 2), dtype=np.int64)  # empty while the delta is
    count = 0
    for q in range(num_queries):
        first = q % block * num_masks  # this query's first probe in the block
        if first == 0:
            _block_runs(query_words, q, block, mask_keys, probe_keys, tables, main_runs, delta_runs)
        # Room for every candidate first: arrays reassigned inside the probe loop cost
        # reference counting on every probe (~10 ns each, most of an empty r = 2 ball's time).
        needed = count
        for p in range(first, first + num_masks):
            needed += main_runs[p, 1] - main_runs[p, 0] + delta_runs[p, 1] - delta_runs[p, 0]
        if needed > len(found):
            found = _grown(found, needed)
        # Collect the hits in probe order, noting each shell's runs; order the shells after.
        query = query_words[q]
        shell, bound = 0, 1
        shell_starts[0] = 0
        run_bounds[0] = count
        for p in range(num_masks):
            if p > 0 and mask_weights[p] != mask_weights[p - 1]:
                shell += 1
                shell_starts[shell] = bound
                run_bounds[bound] = count
                bound += 1
            distance = np.int64(mask_weights[p]) << 32
            main_lo, main_hi = main_runs[first + p, 0], main_runs[first + p, 1]
            if main_lo < main_hi:
                count = _collect(
                    found,
                    count,
                    main_rows[main_lo:main_hi],
                    main_want,
                    _in_sorted(main_mixed, main_lo),
                    distance,
                    where,
                    words,
                    confirm,
                    query,
                    mask_words,
                    p,
                )
                if count > run_bounds[bound - 1]:
                    run_bounds[bound] = count
                    bound += 1
            delta_lo, delta_hi = delta_runs[first + p, 0], delta_runs[first + p, 1]
            if delta_lo < delta_hi:
                count = _collect(
                    found,
                    count,
                    delta_rows[delta_lo:delta_hi],
                    delta_want,
                    _in_sorted(delta_mixed, delta_lo),
                    distance,
                    where,
                    words,
                    confirm,
                    query,
                    mask_words,
                    p,
                )
                if count > run_bounds[bound - 1]:
                    run_bounds[bound] = count
                    bound += 1
        shell_starts[shell + 1] = bound
        if bound - (shell + 1) > 1:  # more than one run in all: some shell may need ordering
            scratch, bitmap = _order_shells(
                found, run_bounds, shell_starts[: shell + 2], scratch, bitmap
            )
        offsets[q + 1] = count
    return offsets, found


@njit(cache=True, nogil=True)
def _order_shells(
    found: np.ndarray,
    run_bounds: np.ndarray,
    shell_starts: np.ndarray,
    scratch: np.ndarray,
    bitmap: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """`_order_shell` every shell of one query that has several runs: shell s's entries in
    `run_bounds` (its start, then its runs' ends) lie from shell_starts[s] to shell_starts[s + 1].
    Returns the (maybe grown) `scratch` and `bitmap`."""
    for shell in range(len(shell_starts) - 1):
        runs = shell_starts[shell + 1] - shell_starts[shell] - 1
        if runs > 1:
            bounds = run_bounds[shell_starts[shell] :]
            scratch, bitmap = _order_shell(found, bounds, runs, scratch, bitmap)
    return scratch, bitmap


@njit(cache=True, nogil=True)
def _block_runs(
    query_words: np.ndarray,
    start: int,
    block: int,
    mask_keys: np.ndarray,
    probe_keys: np.ndarray,
    tables: tuple,
    main_runs: np.ndarray,
    delta_runs: np.ndarray,
) -> None:
    """Runs of every probe of queries start..start + block - 1 (fewer at the end), in order."""
    stop = min(start + block, len(query_words))
    num_masks = len(mask_keys)
    for q in range(start, stop):
        query_key = _bucket_key(query_words[q])
        for p in range(num_masks):
            probe_keys[(q - start) * num_masks + p] = query_key ^ mask_keys[p]
    probes = (stop - start) * num_masks
    directory, tags, _, _, _ = tables[0]
    _find_runs(directory, tags, np.uint64(0), probe_keys[:probes], main_runs[:probes])
    directory, tags, _, _, _ = tables[1]
    if len(tags):
        _find_runs(directory, tags, np.uint64(0), probe_keys[:probes], delta_runs[:probes])


@njit(cache=True, nogil=True, inline="always")
def _in_sorted(values: np.ndarray, value: int) -> bool:
    """Whether `value` is in the ascending array `values` (bisection)."""
    lo, hi = 0, len(values)
    while lo < hi:
        middle = (lo + hi) >> 1
        if values[middle] < value:
            lo = middle + 1
        else:
            hi = middle
    return lo < len(values) and values[lo] == value


@njit(cache=True, nogil=True, inline="always")
def _collect(
    found: np.ndarray,
    count: int,
    rows: np.ndarray,
    want: int,
    mixed: bool,
    distance: int,
    where: np.ndarray,
    words: np.ndarray,
    confirm: int,
    query: np.ndarray,
    mask_words: np.ndarray,
    p: int,
) -> int:
    """Append `distance | row` to `found` (from `count`) for each current entry of the run
    `rows` whose stored code is `query XOR mask_words[p]` (checked as `confirm` says, see
    `probe_words`, and one by one in a `mixed` run); returns the new count.

    Only called for non-empty runs: taking array slices costs reference counting per call.
    """
    settled = confirm == CONFIRM_NONE
    per_run = confirm == CONFIRM_RUN and not mixed
    for row in rows:
        if want >= 0 and where[row] != want:
            continue
        if not settled:
            if not _same_code(words, row, query, mask_words, p):
                if per_run:
                    return count  # every entry of the run has this code
                continue
            settled = per_run
        found[count] = distance | row
        count += 1
    return count


@njit(cache=True, nogil=True, inline="always")
def _pack_words(code: np.ndarray, words: np.ndarray) -> None:
    """Packed code bytes into `words`: byte i is bits 56 - 8 (i % 8) of word i // 8."""
    words[:] = 0
    for i in range(len(code)):
        words[i // 8] |= np.uint64(code[i]) << np.uint64(56 - 8 * (i % 8))


@njit(cache=True, nogil=True, inline="always")
def _same_code(
    words: np.ndarray, row: int, query: np.ndarray, mask_words: np.ndarray, p: int
) -> bool:
    """Whether stored code `row` (a column of (W, n) `words`) equals `query XOR mask_words[p]`."""
    same = True
    for w in range(len(query)):
        same &= words[w, row] == query[w] ^ mask_words[p, w]
    return same


@njit(cache=True, nogil=True)
def _order_shell(
    values: np.ndarray, bounds: np.ndarray, num_runs: int, scratch: np.ndarray, bitmap: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Put one shell's hits, values[bounds[0]:bounds[num_runs]] (distinct rows sharing one
    distance, in ascending runs), in row order; returns `scratch` and `bitmap`, maybe grown.

    Merging costs about one pass per doubling of the runs; marking the rows in a bitmap and
    reading its set bits back costs two passes plus one step per 64 rows of the rows' span.
    The cheaper is used (the bitmap for the big shells of skewed codes).
    """
    start, stop = bounds[0], bounds[num_runs]
    if num_runs <= 1:
        return scratch, bitmap
    low, high = values[start] & 0xFFFFFFFF, values[start] & 0xFFFFFFFF
    for i in range(start, stop):
        row = values[i] & 0xFFFFFFFF
        low, high = min(low, row), max(high, row)
    merge_passes = 1
    while (1 << merge_passes) < num_runs:
        merge_passes += 1
    size = stop - start
    if (high >> 6) - (low >> 6) + 2 * size >= merge_passes * size:
        return _merge_runs(values, bounds, num_runs, scratch), bitmap
    if len(bitmap) <= high >> 6:
        bitmap = np.zeros((high >> 6) + 1 + len(bitmap), dtype=np.uint64)
    _order_by_bitmap(values, start, stop, low >> 6, high >> 6, bitmap)
    return scratch, bitmap


@njit(cache=True, nogil=True)
def _order_by_bitmap(
    values: np.ndarray, start: int, stop: int, first_word: int, last_word: int, bitmap: np.ndarray
) -> None:
    """Sort values[start:stop] (distinct rows, one shared distance) by marking rows in `bitmap`
    (zero in words first_word..last_word, and left zero again) and reading them back."""
    distance = values[start] & ~np.int64(0xFFFFFFFF)
    for i in range(start, stop):
        row = values[i] & 0xFFFFFFFF
        bitmap[row >> 6] |= np.uint64(1) << np.uint64(row & 63)
    out = start
    for w in range(first_word, last_word + 1):
        word = bitmap[w]
        while word:
            lowest = word & (~word + np.uint64(1))
            values[out] = distance | (w << 6) | np.int64(popcount(lowest - np.uint64(1)))
            out += 1
            word ^= lowest
        bitmap[w] = 0


@njit(cache=True, nogil=True)
def _merge_runs(
    values: np.ndarray, bounds: np.ndarray, num_runs: int, scratch: np.ndarray
) -> np.ndarray:
    """Merge the ascending runs values[bounds[i]:bounds[i + 1]], i < num_runs, into one.

    (Called on one shell's hits, which share a distance: ordering values orders rows.) Adjacent
    runs are merged pairwise, round after round (log2(runs) rounds), each round from one buffer
    into the other; `bounds` is overwritten. Returns `scratch`, grown when it was too small.
    """
    if num_runs <= 1:
        return scratch
    start, stop = bounds[0], bounds[num_runs]
    if len(scratch) < stop - start:
        scratch = _grown(scratch, stop - start)
    source, target = values[start:stop], scratch[: stop - start]
    for i in range(num_runs + 1):
        bounds[i] -= start
    while num_runs > 1:
        merged = 0
        for i in range(0, num_runs, 2):
            if i + 1 < num_runs:
                _merge_two(source, bounds[i], bounds[i + 1], bounds[i + 2], target)
            else:
                target[bounds[i] : bounds[i + 1]] = source[bounds[i] : bounds[i + 1]]
            bounds[merged] = bounds[i]
            merged += 1
        bounds[merged] = bounds[num_runs]
        num_runs = merged
        source, target = target, source
    if source.ctypes.data != values.ctypes.data + start * values.itemsize:
        values[start:stop] = source
    return scratch


@njit(cache=True, nogil=True)
def _merge_two(source: np.ndarray, start: int, middle: int, stop: int, target: np.ndarray) -> None:
    """Merge ascending source[start:middle] and source[middle:stop] into target[start:stop]."""
    if source[middle - 1] <= source[middle]:
        target[start:stop] = source[start:stop]
        return
    left, right, out = start, middle, start
    while left < middle and right < stop:
        if source[left] <= source[right]:
            target[out] = source[left]
            left += 1
        else:
            target[out] = source[right]
            right += 1
        out += 1
    if left < middle:
        target[out:stop] = source[left:middle]
    else:
        target[out:stop] = source[right:stop]


def split_hits(found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows int32, distances uint8) of `probe_balls`'s (distance << 32 | row) values."""
    rows = np.empty(len(found), dtype=np.int32)  # numpy's big arrays get huge pages, numba's not
    distances = np.empty(len(found), dtype=np.uint8)
    split_hits_into(found, rows, distances)
    return rows, distances


@njit(cache=True, nogil=True)
def split_hits_into(found: np.ndarray, rows: np.ndarray, distances: np.ndarray) -> None:
    """`split_hits` into given arrays, in one pass (four numpy passes took ~4 ns per hit)."""
    for i in range(len(found)):
        rows[i] = found[i] & 0xFFFFFFFF
        distances[i] = found[i] >> 32


def pack_masks(keys: np.ndarray, weights: np.ndarray, words: np.ndarray) -> np.ndarray:
    """The (P, 2 + W) uint64 mask array of `probe_balls`: bucket key, weight, then the words."""
    return np.column_stack([keys, weights.astype(np.uint64), words]).astype(np.uint64)
