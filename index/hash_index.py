"""`HashIndex`: exact in-memory semantic-hashing table from codes to client ids.

Layout: codes live word-major in `_words` (W, capacity) uint64, indexed by dense internal rows that
are handed out in insertion order of the ids (an upsert that changes a code keeps the row). Buckets
are two `BucketTable`s: a large `main` rebuilt now and then, and a small `delta` holding the rows
written since; `_where[row]` says which table holds a row's current entry (or none once removed),
so stale entries are skipped without rewriting the big table. Results are ordered by (Hamming
distance, row). A readers-writer lock makes every batch write atomic for concurrent readers.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

from index.bucket_table import BucketTable, bucket_key, bucket_keys
from index.codes import (
    WORD_BITS,
    as_code_array,
    codes_to_words,
    validate_bits,
    words_per_code,
    words_to_codes,
)
from index.hamming import ball_masks, ball_size, hamming_distances, shell_range_masks
from index.id_table import IdTable
from index.rwlock import ReadWriteLock

Hit = tuple[str, int]
Keep = Callable[[str], bool]

REMOVED = 0
IN_MAIN = 1
IN_DELTA = 2
DEAD_DISTANCE = 255
# Probing one key costs about as much as scanning this many codes (measured at 1 M codes);
# nearest() grows the radius only while the ball's probes cost under 1/PROBE_BUDGET_FRACTION of one
# scan of every code, so a fruitless probe adds at most that fraction to the scan that follows.
PROBE_COST_IN_CODES = 128
PROBE_BUDGET_FRACTION = 4
# nearest() never probes a ball larger than this, whatever the index size.
MAX_NEAREST_PROBES = 1 << 16
MIN_DELTA_BEFORE_MERGE = 4096
MERGE_FRACTION = 32
MAX_PROBES_PER_CHUNK = 1 << 21


class HashIndex:
    """Code → ids hash table with exact bucket, Hamming-ball and k-nearest queries."""

    def __init__(self, bits: int) -> None:
        self.bits = validate_bits(bits)
        self._num_words = words_per_code(bits)
        # Bucket tables hold 32 key bits below their directory bits: exact only for codes of at
        # most 32 bits, so longer codes are confirmed against `_words`.
        self._confirm_codes = self.bits > 32
        self._ids = IdTable()
        self._words = np.zeros((self._num_words, 1024), dtype=np.uint64)
        self._where = np.zeros(1024, dtype=np.uint8)
        self._main = BucketTable.empty()
        self._delta = BucketTable.empty()
        self._removed_rows = np.zeros(0, dtype=np.intp)
        self._main_is_current = True
        self._lock = ReadWriteLock()

    # ---- size and membership -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, doc_id: object) -> bool:
        if not isinstance(doc_id, str):
            return False
        with self._lock.reading():
            return self._ids.find(doc_id) >= 0

    @property
    def nbytes(self) -> int:
        """Memory held by the index (codes, bucket tables, id map), excluding Python overhead."""
        return (
            self._words.nbytes
            + self._where.nbytes
            + self._main.nbytes
            + self._delta.nbytes
            + self._removed_rows.nbytes
            + self._ids.nbytes
        )

    def code_of(self, doc_id: str) -> bytes | None:
        """The stored code of `doc_id`, or None when it is not indexed."""
        with self._lock.reading():
            row = self._ids.find(doc_id)
            if row < 0:
                return None
            return words_to_codes(self._words[:, row][None, :], self.bits)[0].tobytes()

    # ---- writes --------------------------------------------------------------------------
    def upsert(self, ids: Sequence[str], codes: np.ndarray) -> None:
        """Insert or move documents; new ids get the next rows, known ids keep theirs."""
        codes = as_code_array(codes, self.bits)
        if len(ids) != len(codes):
            raise ValueError(f"got {len(ids)} ids but {len(codes)} codes")
        _check_ids(ids)
        if not len(ids):
            return
        words = codes_to_words(codes)
        with self._lock.writing():
            rows = np.fromiter(map(self._row_for, ids), dtype=np.intp, count=len(ids))
            self._ensure_capacity(self._ids.rows)
            last = _last_occurrences(rows)
            rows, words = rows[last], words[last]
            changed = (self._where[rows] != IN_MAIN) | np.any(
                words != self._words[:, rows].T, axis=1
            )
            rows, words = rows[changed], words[changed]
            if np.any(self._where[rows] == IN_MAIN):
                self._main_is_current = False
            self._words[:, rows] = words.T
            self._where[rows] = IN_DELTA
            self._rebuild_delta(extra_rows=rows)

    def remove(self, ids: Sequence[str]) -> int:
        """Forget documents; returns how many of `ids` were indexed."""
        _check_ids(ids)
        with self._lock.writing():
            rows = [row for row in map(self._ids.discard, ids) if row >= 0]
            if rows:
                self._main_is_current = False
                self._where[rows] = REMOVED
                self._removed_rows = np.union1d(self._removed_rows, rows).astype(np.intp)
            return len(rows)

    @classmethod
    def from_arrays(cls, bits: int, ids: Sequence[str], codes: np.ndarray) -> HashIndex:
        """Bulk build (rows in the given order); ValueError on duplicate ids."""
        index = cls(bits)
        codes = as_code_array(codes, index.bits)
        if len(ids) != len(codes):
            raise ValueError(f"got {len(ids)} ids but {len(codes)} codes")
        index._ids = IdTable.from_ids(ids)
        words = codes_to_words(codes)
        index._words = np.ascontiguousarray(words.T)
        index._where = np.full(len(ids), IN_MAIN, dtype=np.uint8)
        index._main = BucketTable(bucket_keys(words), np.arange(len(ids), dtype=np.int32))
        return index

    def to_arrays(self) -> tuple[list[str], np.ndarray]:
        """Every indexed (id, code), in row order: ids and (n, bits/8) uint8 codes."""
        with self._lock.reading():
            rows = self._live_rows()
            return self._ids.ids_of(rows), words_to_codes(self._words[:, rows].T, self.bits)

    # ---- queries -------------------------------------------------------------------------
    def bucket(self, code: bytes, keep: Keep | None = None) -> list[str]:
        """Ids whose code equals `code`, in insertion order."""
        query = self._query_ints(code)
        with self._lock.reading():
            rows = self._exact_rows(query)
            ids = self._ids.ids_of(rows)
        return ids if keep is None else [doc_id for doc_id in ids if keep(doc_id)]

    def ball(self, code: bytes, radius: int, keep: Keep | None = None) -> list[Hit]:
        """Ids within Hamming distance `radius` of `code`, by (distance, insertion order)."""
        radius = _check_radius(radius, self.bits)
        query = self._query_ints(code)
        with self._lock.reading():
            distances, rows = self._probe(query, 0, radius)
            hits = self._hits(distances, rows)
        return hits if keep is None else [hit for hit in hits if keep(hit[0])]

    def nearest(self, code: bytes, k: int, keep: Keep | None = None) -> list[Hit]:
        """The k ids closest to `code` (passing `keep`), by (distance, insertion order)."""
        k = _check_k(k)
        query = np.array(self._query_ints(code), dtype=np.uint64)
        with self._lock.reading():
            return self._nearest(query, k, keep)

    def bucket_many(self, codes: np.ndarray) -> list[list[str]]:
        """`bucket` for each row of a (n, bits/8) uint8 array."""
        return [[doc_id for doc_id, _ in hits] for hits in self.ball_many(codes, 0)]

    def ball_many(self, codes: np.ndarray, radius: int) -> list[list[Hit]]:
        """`ball` for each row of a (n, bits/8) uint8 array, probing all queries together."""
        radius = _check_radius(radius, self.bits)
        queries = codes_to_words(as_code_array(codes, self.bits))
        masks, weights = ball_masks(self.bits, radius)
        mask_keys = _mask_keys(self.bits, 0, radius)
        chunk = max(1, MAX_PROBES_PER_CHUNK // len(masks))
        results: list[list[Hit]] = []
        with self._lock.reading():
            for start in range(0, len(queries), chunk):
                chunk_queries = queries[start : start + chunk]
                results.extend(self._ball_chunk(chunk_queries, masks, mask_keys, weights))
        return results

    def nearest_many(self, codes: np.ndarray, k: int) -> list[list[Hit]]:
        """`nearest` for each row of a (n, bits/8) uint8 array; scans run on several threads."""
        k = _check_k(k)
        queries = codes_to_words(as_code_array(codes, self.bits))
        workers = min(os.cpu_count() or 1, len(queries))
        with self._lock.reading():
            if workers <= 1:
                return [self._nearest(query, k, None) for query in queries]
            with ThreadPoolExecutor(max_workers=workers) as pool:
                return list(pool.map(lambda query: self._nearest(query, k, None), queries))

    # ---- statistics ----------------------------------------------------------------------
    def num_buckets(self) -> int:
        """Number of distinct codes among indexed documents."""
        return sum(self.bucket_size_histogram().values())

    def bucket_size_histogram(self) -> dict[int, int]:
        """Bucket size → number of buckets of that size."""
        with self._lock.reading():
            codes = np.ascontiguousarray(self._words[:, self._live_rows()].T)
        if not len(codes):
            return {}
        # One opaque item per code (raw bytes) so np.unique sorts a 1-D array.
        _, sizes = np.unique(
            codes.view(np.dtype((np.void, 8 * self._num_words))), return_counts=True
        )
        size_values, bucket_counts = np.unique(sizes, return_counts=True)
        return dict(zip(size_values.tolist(), bucket_counts.tolist(), strict=True))

    # ---- internals (callers hold the lock) ----------------------------------------------
    def _query_ints(self, code: bytes) -> list[int]:
        """One code as its W words (Python ints); ValueError when its length is wrong."""
        if not isinstance(code, bytes | bytearray | memoryview):
            raise ValueError(f"code must be bytes, got {type(code).__name__}")
        if len(code) != self.bits // 8:
            raise ValueError(
                f"code must be {self.bits // 8} bytes for a {self.bits}-bit code, got {len(code)}"
            )
        padded = int.from_bytes(code, "big") << (self._num_words * WORD_BITS - self.bits)
        word_mask = (1 << WORD_BITS) - 1
        return [
            (padded >> (WORD_BITS * (self._num_words - 1 - w))) & word_mask
            for w in range(self._num_words)
        ]

    def _row_for(self, doc_id: str) -> int:
        """Existing row of `doc_id`, or a newly appended one."""
        row = self._ids.find(doc_id)
        return row if row >= 0 else self._ids.add(doc_id)

    def _ensure_capacity(self, rows: int) -> None:
        """Grow the row arrays (doubling) so `rows` rows fit."""
        capacity = len(self._where)
        if rows <= capacity:
            return
        capacity = max(capacity, 1024)
        while capacity < rows:
            capacity *= 2
        words = np.zeros((self._num_words, capacity), dtype=np.uint64)
        words[:, : len(self._where)] = self._words
        where = np.zeros(capacity, dtype=np.uint8)
        where[: len(self._where)] = self._where
        self._words, self._where = words, where

    def _live_rows(self) -> np.ndarray:
        """Rows of indexed documents, ascending."""
        return np.flatnonzero(self._where[: self._ids.rows] != REMOVED)

    def _rebuild_delta(self, extra_rows: np.ndarray) -> None:
        """Rebuild the delta table from its still-current rows plus `extra_rows`; merge if big."""
        old = self._delta.entry_rows
        old = old[self._where[old] == IN_DELTA].astype(np.intp)
        rows = np.union1d(old, extra_rows).astype(np.intp)
        if len(rows) > max(MIN_DELTA_BEFORE_MERGE, self._ids.rows // MERGE_FRACTION):
            self._merge()
            return
        self._delta = BucketTable(bucket_keys(self._words[:, rows].T), rows)

    def _merge(self) -> None:
        """Rebuild the main table from every live row and empty the delta."""
        rows = self._live_rows()
        self._main = BucketTable(bucket_keys(self._words[:, rows].T), rows)
        self._main_is_current = True
        self._where[rows] = IN_MAIN
        self._delta = BucketTable.empty()
        self._removed_rows = np.flatnonzero(self._where[: self._ids.rows] == REMOVED)

    def _exact_rows(self, query: list[int]) -> list[int]:
        """Rows whose code equals `query` (W Python ints), ascending, using scalar operations."""
        key = bucket_key(query)
        rows = self._main.lookup_one(key)
        if not self._main_is_current:
            rows = [row for row in rows if self._where[row] == IN_MAIN]
        if len(self._delta):
            rows += [row for row in self._delta.lookup_one(key) if self._where[row] == IN_DELTA]
            rows.sort()
        if self._confirm_codes:
            rows = [row for row in rows if self._words[:, row].tolist() == query]
        return rows

    def _probe(self, query: list[int], first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
        """(distance, row) of every document within shells first..last of `query` (W ints)."""
        _, weights = shell_range_masks(self.bits, first, last)
        mask_keys = _mask_keys(self.bits, first, last)
        query_key = bucket_key(query)
        found_probes, found_rows = [], []
        for table, tag in ((self._main, IN_MAIN), (self._delta, IN_DELTA)):
            if not len(table):
                continue
            probe_index, rows = table.lookup_xor(query_key, mask_keys, (self.bits, first, last))
            if tag == IN_MAIN and self._main_is_current and not self._confirm_codes:
                found_probes.append(probe_index)
                found_rows.append(rows)
                continue
            if tag == IN_MAIN and self._main_is_current:
                current = np.ones(len(rows), dtype=bool)
            else:
                current = self._where[rows] == tag
            if self._confirm_codes:
                for w, mask_words in enumerate(_mask_words(self.bits, first, last)):
                    current &= self._words[w, rows] == (mask_words[probe_index] ^ query[w])
            found_probes.append(probe_index[current])
            found_rows.append(rows[current])
        if len(found_rows) == 1:
            return weights[found_probes[0]], found_rows[0]
        if not found_rows:
            return np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int32)
        return weights[np.concatenate(found_probes)], np.concatenate(found_rows)

    def _lookup(self, probes: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probe index, row) of every current entry whose code equals one of the (m, W) probes.

        `keys` are the probes' bucket keys.
        """
        found_probes, found_rows = [], []
        for table, tag in ((self._main, IN_MAIN), (self._delta, IN_DELTA)):
            if not len(table):
                continue
            probe_index, rows = table.lookup(keys)
            if tag == IN_MAIN and self._main_is_current and not self._confirm_codes:
                found_probes.append(probe_index)
                found_rows.append(rows)
                continue
            current = self._where[rows] == tag
            if self._confirm_codes:
                current &= self._words[0, rows] == probes[probe_index, 0]
                for w in range(1, self._num_words):
                    current &= self._words[w, rows] == probes[probe_index, w]
            found_probes.append(probe_index[current])
            found_rows.append(rows[current])
        if len(found_rows) == 1:
            return found_probes[0], found_rows[0]
        if not found_rows:
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.int32)
        return np.concatenate(found_probes), np.concatenate(found_rows)

    def _hits(self, distances: np.ndarray, rows: np.ndarray) -> list[Hit]:
        """(id, distance) pairs ordered by (distance, row)."""
        if len(rows) <= 1:
            return list(zip(self._ids.ids_of(rows), distances.tolist(), strict=True))
        order = np.lexsort((rows, distances))
        ids = self._ids.ids_of(rows[order])
        return list(zip(ids, distances[order].tolist(), strict=True))

    def _ball_chunk(
        self, queries: np.ndarray, masks: np.ndarray, mask_keys: np.ndarray, weights: np.ndarray
    ) -> list[list[Hit]]:
        """Ball results of several (q, W) queries from one vectorised lookup."""
        probes = (queries[:, None, :] ^ masks[None, :, :]).reshape(-1, self._num_words)
        # Keys are linear: a probe's key is its query's key XOR its mask's key.
        keys = (bucket_keys(queries)[:, None] ^ mask_keys[None, :]).ravel()
        probe_index, rows = self._lookup(probes, keys)
        query_of = probe_index // len(masks)
        distances = weights[probe_index % len(masks)]
        order = np.lexsort((rows, distances, query_of))
        ids = self._ids.ids_of(rows[order])
        distance_list = distances[order].tolist()
        bounds = np.searchsorted(query_of[order], np.arange(len(queries) + 1)).tolist()
        return [
            list(zip(ids[lo:hi], distance_list[lo:hi], strict=True))
            for lo, hi in itertools.pairwise(bounds)
        ]

    def _nearest(self, query: np.ndarray, k: int, keep: Keep | None) -> list[Hit]:
        """Probe the bucket, then the widest ball worth probing; scan when that is not enough."""
        live = len(self._ids)
        radius = 0
        while radius < self.bits:
            probes = ball_size(self.bits, radius + 1)
            probe_cost = probes * PROBE_COST_IN_CODES * PROBE_BUDGET_FRACTION
            if probe_cost > live or probes > MAX_NEAREST_PROBES:
                break
            radius += 1
        if ball_size(self.bits, 0) * PROBE_COST_IN_CODES * PROBE_BUDGET_FRACTION > live:
            return self._scan(query, k, keep, [], -1)
        hits: list[Hit] = []
        probed = -1
        query_ints = query.tolist()
        for shells in ((0, 0), (1, radius)):
            if shells[0] > shells[1]:
                break
            distances, rows = self._probe(query_ints, *shells)
            hits.extend(self._best_hits(distances, rows, k - len(hits), keep))
            probed = shells[1]
            if len(hits) >= k:
                return hits[:k]
        return self._scan(query, k, keep, hits, probed)

    def _best_hits(
        self, distances: np.ndarray, rows: np.ndarray, k: int, keep: Keep | None
    ) -> list[Hit]:
        """Up to k (id, distance) by (distance, row) passing `keep`, mapping only needed ids."""
        order = np.lexsort((rows, distances))
        if keep is None:
            order = order[:k]
            return list(zip(self._ids.ids_of(rows[order]), distances[order].tolist(), strict=True))
        hits: list[Hit] = []
        step = max(4 * k, 256)
        for start in range(0, len(order), step):
            chunk = order[start : start + step]
            for doc_id, dist in zip(
                self._ids.ids_of(rows[chunk]), distances[chunk].tolist(), strict=True
            ):
                if keep(doc_id):
                    hits.append((doc_id, dist))
                    if len(hits) == k:
                        return hits
        return hits

    def _scan(
        self, query: np.ndarray, k: int, keep: Keep | None, found: list[Hit], radius: int
    ) -> list[Hit]:
        """Exact k nearest by computing every distance; `found` holds the hits within `radius`."""
        distances = hamming_distances(self._words[:, : self._ids.rows], query)
        distances[self._removed_rows] = DEAD_DISTANCE
        if keep is None:
            rows = _smallest_rows(distances, min(k, len(self._ids)))
            return self._hits(distances[rows], rows)
        hits = list(found)
        order = np.argsort(distances, kind="stable")
        start = int(np.count_nonzero(distances <= radius))
        step = max(4 * k, 256)
        while len(hits) < k and start < len(order):
            rows = order[start : start + step]
            rows = rows[distances[rows] != DEAD_DISTANCE]
            for doc_id, dist in zip(self._ids.ids_of(rows), distances[rows].tolist(), strict=True):
                if keep(doc_id):
                    hits.append((doc_id, dist))
                    if len(hits) == k:
                        break
            start += step
        return hits


@lru_cache(maxsize=64)
def _mask_keys(bits: int, first: int, last: int) -> np.ndarray:
    """Bucket keys of the masks of shells first..last; a probe's key is the query's XOR these."""
    masks, _ = shell_range_masks(bits, first, last)
    keys = bucket_keys(masks)
    keys.setflags(write=False)
    return keys


@lru_cache(maxsize=64)
def _mask_words(bits: int, first: int, last: int) -> tuple[np.ndarray, ...]:
    """Word w of every mask of shells first..last, one contiguous array per word (read-only)."""
    masks, _ = shell_range_masks(bits, first, last)
    words = tuple(np.ascontiguousarray(masks[:, w]) for w in range(masks.shape[1]))
    for word in words:
        word.setflags(write=False)
    return words


def _smallest_rows(distances: np.ndarray, k: int) -> np.ndarray:
    """Rows of the k smallest distances (k at most the number of live rows), by (distance, row).

    The k-th distance is estimated from a sample, then one pass keeps every row at or below a
    threshold one above it; if that misses some of the k, the threshold grows and it repeats.
    """
    if k == 0:
        return np.zeros(0, dtype=np.intp)
    sample = distances[:: max(1, len(distances) // 16384)]
    cumulative = np.cumsum(np.bincount(sample, minlength=256)) * (len(distances) / len(sample))
    threshold = min(int(np.searchsorted(cumulative, k)) + 1, DEAD_DISTANCE - 1)
    while True:
        rows = np.flatnonzero(distances <= threshold)
        if len(rows) >= k:
            return rows[np.argsort(distances[rows], kind="stable")][:k]
        threshold = min(threshold + 2, DEAD_DISTANCE - 1)


def _last_occurrences(rows: np.ndarray) -> np.ndarray:
    """Positions of the last occurrence of each distinct row, in first-seen order of rows."""
    reversed_rows = rows[::-1]
    _, first_in_reversed = np.unique(reversed_rows, return_index=True)
    return np.sort(len(rows) - 1 - first_in_reversed)


def _check_ids(ids: Sequence[str]) -> None:
    """ValueError unless every id is a non-empty string."""
    for doc_id in ids:
        if not isinstance(doc_id, str) or not doc_id:
            raise ValueError(f"document ids must be non-empty strings, got {doc_id!r}")


def _check_radius(radius: int, bits: int) -> int:
    """ValueError unless 0 <= radius <= bits."""
    if isinstance(radius, bool) or not isinstance(radius, int | np.integer) or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    return min(int(radius), bits)


def _check_k(k: int) -> int:
    """ValueError unless k is a positive integer."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)
