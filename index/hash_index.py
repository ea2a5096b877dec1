"""`HashIndex`: exact in-memory semantic-hashing table from codes to client ids.

Layout: codes live word-major in `_words` (W, capacity) uint64, indexed by dense rows that are
handed out in insertion order of the ids (`IdTable`; an upsert that changes a code keeps the row).
Buckets are two `BucketTable`s: a large `main` rebuilt now and then, and a small `delta` holding
the rows written since; `_where[row]` says which table holds a row's current entry (or none once
removed), so stale entries are skipped without rewriting the big table. Results are ordered by
(Hamming distance, row). A readers-writer lock makes every batch write atomic for readers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache

import numpy as np

from docbits.index.bucket_table import BucketTable, bucket_key, bucket_keys
from docbits.index.codes import (
    WORD_BITS,
    as_code_array,
    bucket_statistics,
    codes_to_words,
    validate_bits,
    words_per_code,
    words_to_codes,
)
from docbits.index.hamming import ball_size, shell_range_masks
from docbits.index.id_table import IdTable
from docbits.index.kernels import distances, probe, smallest_rows
from docbits.index.rwlock import ReadWriteLock

Hit = tuple[str, int]
# A filter over a batch of ids: one bool per id, True to keep it.
Keep = Callable[[list[str]], list[bool]]

REMOVED = 0
IN_MAIN = 1
IN_DELTA = 2
ANY_ROW = -1  # a table whose every entry is current: `where` need not be read
# Probing one key costs about as much as scanning this many codes; nearest() probes a ball only
# while its probes cost under 1/PROBE_BUDGET_FRACTION of a scan of every code, so a fruitless
# probe adds at most that fraction to the scan that follows.
PROBE_COST_IN_CODES = 128
PROBE_BUDGET_FRACTION = 4
MAX_NEAREST_PROBES = 1 << 16
# The delta is merged into main once it holds max(MIN_DELTA_BEFORE_MERGE, rows / MERGE_FRACTION).
MIN_DELTA_BEFORE_MERGE = 4096
MERGE_FRACTION = 32


class HashIndex:
    """Code → ids hash table with exact bucket, Hamming-ball and k-nearest queries."""

    def __init__(self, bits: int) -> None:
        self.bits = validate_bits(bits)
        self._num_words = words_per_code(bits)
        # Keys are a bijection of one-word codes; two-word codes share keys, so probes confirm.
        self._confirm = self._num_words > 1
        self._ids = IdTable()
        self._words = np.zeros((self._num_words, 1024), dtype=np.uint64)
        self._where = np.zeros(1024, dtype=np.uint8)
        self._main = BucketTable.empty()
        self._delta = BucketTable.empty()
        self._removed_rows = np.zeros(0, dtype=np.int64)
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
            return words_to_codes(self._words[:, [row]].T, self.bits)[0].tobytes()

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
            rows = np.fromiter(map(self._row_for, ids), dtype=np.int64, count=len(ids))
            self._ensure_capacity(self._ids.rows)
            last = _last_occurrences(rows)
            rows, words = rows[last], words[last]
            unchanged = (self._where[rows] == IN_MAIN) & np.all(
                words == self._words[:, rows].T, axis=1
            )
            rows, words = rows[~unchanged], words[~unchanged]
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
                self._removed_rows = np.union1d(self._removed_rows, rows).astype(np.int64)
            return len(rows)

    @classmethod
    def from_arrays(cls, bits: int, ids: Sequence[str], codes: np.ndarray) -> HashIndex:
        """Bulk build (rows in the given order); ValueError on duplicate ids."""
        return cls.from_batches(bits, [(ids, codes)])

    @classmethod
    def from_batches(
        cls, bits: int, batches: Iterable[tuple[Sequence[str], np.ndarray]]
    ) -> HashIndex:
        """`from_arrays` of (ids, codes) batches one after the other, holding one batch of id
        strings at a time."""
        index = cls(bits)
        parts: list[np.ndarray] = [np.zeros((0, index.bits // 8), dtype=np.uint8)]

        def ids_of_batches() -> Iterator[Sequence[str]]:
            for ids, codes in batches:
                parts.append(as_code_array(codes, index.bits))
                if len(ids) != len(codes):
                    raise ValueError(f"got {len(ids)} ids but {len(codes)} codes")
                yield ids

        index._ids = IdTable.from_id_batches(ids_of_batches())
        words = codes_to_words(np.concatenate(parts))
        index._words = np.ascontiguousarray(words.T)
        index._where = np.full(len(words), IN_MAIN, dtype=np.uint8)
        index._main = BucketTable(bucket_keys(words), np.arange(len(words), dtype=np.int32))
        return index

    def to_arrays(self) -> tuple[list[str], np.ndarray]:
        """Every indexed (id, code), in row order: ids and (n, bits/8) uint8 codes."""
        with self._lock.reading():
            rows = self._live_rows()
            return self._ids.ids_of(rows), words_to_codes(self._words[:, rows].T, self.bits)

    # ---- queries -------------------------------------------------------------------------
    def bucket(self, code: bytes, keep: Keep | None = None) -> list[str]:
        """Ids whose code equals `code`, in insertion order.

        Read in plain Python: for one bucket that is much faster than a kernel call when the
        caches are cold (the A/B on docs/results/index.md), and it is the service's default
        search.
        """
        query = self._query_ints(code)
        key = bucket_key(query)
        with self._lock.reading():
            rows = self._main.rows_of(key)
            if not self._main_is_current:
                rows = [row for row in rows if self._where[row] == IN_MAIN]
            if len(self._delta):
                rows += [row for row in self._delta.rows_of(key) if self._where[row] == IN_DELTA]
                rows.sort()
            if self._confirm:
                rows = [row for row in rows if self._words[:, row].tolist() == query]
            ids = self._ids.ids_of(rows)
        return ids if keep is None else [i for i, ok in zip(ids, keep(ids), strict=True) if ok]

    def ball(self, code: bytes, radius: int, keep: Keep | None = None) -> list[Hit]:
        """Ids within Hamming distance `radius` of `code`, by (distance, insertion order)."""
        radius = _check_radius(radius, self.bits)
        query = self._query_ints(code)
        with self._lock.reading():
            found = self._probe(query, radius).tolist()
            ids = self._ids.ids_of([value & 0xFFFFFFFF for value in found])
        hits = list(zip(ids, [value >> 32 for value in found], strict=True))
        if keep is None:
            return hits
        return [hit for hit, ok in zip(hits, keep(ids), strict=True) if ok]

    def nearest(self, code: bytes, k: int, keep: Keep | None = None) -> list[Hit]:
        """The k ids closest to `code` (passing `keep`), by (distance, insertion order).

        Probe the widest ball worth probing; scan every code when that is not enough.
        """
        k = _check_k(k)
        query = self._query_ints(code)
        with self._lock.reading():
            live = len(self._ids)
            radius = 0
            while radius < self.bits:
                probes = ball_size(self.bits, radius + 1)
                if probes * PROBE_COST_IN_CODES * PROBE_BUDGET_FRACTION > live:
                    break
                if probes > MAX_NEAREST_PROBES:
                    break
                radius += 1
            if live >= PROBE_COST_IN_CODES * PROBE_BUDGET_FRACTION:
                found = self._probe(query, radius)
                hits = self._passing(found & 0xFFFFFFFF, found >> 32, keep, k)
                if len(hits) >= k:
                    return hits
            return self._scan(query, k, keep)

    def warm_up(self) -> None:
        """Compile, or load from numba's disk cache, the kernels of this code length's queries,
        so the first query after start-up does not pay for it."""
        spare = HashIndex(self.bits)
        zero = bytes(self.bits // 8)
        spare.upsert(["warm-up"], np.zeros((1, self.bits // 8), dtype=np.uint8))
        spare.ball(zero, 1)
        spare._scan(spare._query_ints(zero), 1, None)

    # ---- statistics ----------------------------------------------------------------------
    def num_buckets(self) -> int:
        """Number of distinct codes among indexed documents."""
        return sum(self.bucket_size_histogram().values())

    def bucket_size_histogram(self) -> dict[int, int]:
        """Bucket size → number of buckets of that size."""
        with self._lock.reading():
            codes = words_to_codes(self._words[:, self._live_rows()].T, self.bits)
        return bucket_statistics(codes)["histogram"]

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

    def _probe(self, query: list[int], radius: int) -> np.ndarray:
        """`kernels.probe` over both tables: `distance << 32 | row` of the ball's hits."""
        mask_keys, mask_weights, mask_words = _ball_masks(self.bits, radius)
        return probe(
            np.uint64(bucket_key(query)),
            np.array(query, dtype=np.uint64),
            mask_keys,
            mask_weights,
            mask_words,
            *self._main.kernel_view(ANY_ROW if self._main_is_current else IN_MAIN),
            *self._delta.kernel_view(IN_DELTA),
            self._where,
            self._words,
            self._confirm,
        )

    def _scan(self, query: list[int], k: int, keep: Keep | None) -> list[Hit]:
        """Exact k nearest by computing every distance."""
        dists = distances(
            self._words[:, : self._ids.rows], np.array(query, dtype=np.uint64), self._removed_rows
        )
        if keep is None:
            rows = smallest_rows(dists, min(k, len(self._ids)))
            return list(zip(self._ids.ids_of(rows), dists[rows].tolist(), strict=True))
        order = np.argsort(dists, kind="stable")
        order = order[: len(order) - len(self._removed_rows)]  # removed rows sort last
        return self._passing(order, dists[order], keep, k)

    def _passing(self, rows: np.ndarray, dists: np.ndarray, keep: Keep | None, k: int) -> list[Hit]:
        """The first k (id, distance) of ordered rows whose id passes `keep`."""
        if keep is None:
            return list(zip(self._ids.ids_of(rows[:k]), dists[:k].tolist(), strict=True))
        hits: list[Hit] = []
        step = max(4 * k, 256)
        for start in range(0, len(rows), step):
            ids = self._ids.ids_of(rows[start : start + step])
            chunk_dists = dists[start : start + step].tolist()
            for hit, ok in zip(zip(ids, chunk_dists, strict=True), keep(ids), strict=True):
                if ok:
                    hits.append(hit)
                    if len(hits) == k:
                        return hits
        return hits

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
        old = self._delta.rows
        old = old[self._where[old] == IN_DELTA]
        rows = np.union1d(old, extra_rows).astype(np.int64)
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


@lru_cache(maxsize=64)
def _ball_masks(bits: int, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bucket keys, weights (uint8) and words (P, W) of the flip masks of a ball, read-only."""
    masks, weights = shell_range_masks(bits, 0, radius)
    keys = bucket_keys(masks)
    keys.setflags(write=False)
    return keys, weights, masks


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
