"""`HashIndex`: exact in-memory semantic-hashing table from codes to client ids.

Layout: codes live word-major in `_words` (W, capacity) uint64, indexed by dense rows that are
handed out in insertion order of the ids (`IdTable`; an upsert that changes a code keeps the row).
Buckets are two `BucketTable`s: a large `main` rebuilt now and then, and a small `delta` holding
the rows written since; `_where[row]` says which table holds a row's current entry (or none once
removed), so stale entries are skipped without rewriting the big table. Results are ordered by
(Hamming distance, row). Beside each code, `_forms` holds the document's packed rescoring form
(`docbits.index.forms.pack_forms`, bits/2 bytes; zeros when it has none), so a rescored search
reads nothing else. A readers-writer lock makes every batch write atomic for readers.
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
        self._forms = np.zeros((1024, self.form_bytes), dtype=np.uint8)
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
    def form_bytes(self) -> int:
        """Bytes of one packed rescoring form: 4 bits a code bit."""
        return self.bits // 2

    @property
    def nbytes(self) -> int:
        """Memory held by the index (codes, forms, bucket tables, id map), excluding Python
        overhead."""
        return (
            self._words.nbytes
            + self._forms.nbytes
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
    def upsert(
        self, ids: Sequence[str], codes: np.ndarray, forms: np.ndarray | None = None
    ) -> None:
        """Insert or move documents, with their packed forms (zeros when None); new ids get the
        next rows, known ids keep theirs."""
        codes = as_code_array(codes, self.bits)
        if len(ids) != len(codes):
            raise ValueError(f"got {len(ids)} ids but {len(codes)} codes")
        forms = self._form_array(forms, len(codes))
        _check_ids(ids)
        if not len(ids):
            return
        words = codes_to_words(codes)
        with self._lock.writing():
            rows = np.fromiter(map(self._row_for, ids), dtype=np.int64, count=len(ids))
            self._ensure_capacity(self._ids.rows)
            last = _last_occurrences(rows)
            rows, words = rows[last], words[last]
            self._forms[rows] = forms[last]
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
    def from_arrays(
        cls, bits: int, ids: Sequence[str], codes: np.ndarray, forms: np.ndarray | None = None
    ) -> HashIndex:
        """Bulk build (rows in the given order); ValueError on duplicate ids."""
        return cls.from_batches(bits, [(ids, codes, forms)])

    @classmethod
    def from_batches(
        cls, bits: int, batches: Iterable[tuple[Sequence[str], np.ndarray, np.ndarray | None]]
    ) -> HashIndex:
        """`from_arrays` of (ids, codes, packed forms or None) batches one after the other,
        holding one batch of id strings at a time."""
        index = cls(bits)
        parts: list[np.ndarray] = [np.zeros((0, index.bits // 8), dtype=np.uint8)]
        form_parts: list[np.ndarray] = [np.zeros((0, index.form_bytes), dtype=np.uint8)]

        def ids_of_batches() -> Iterator[Sequence[str]]:
            for ids, codes, forms in batches:
                parts.append(as_code_array(codes, index.bits))
                if len(ids) != len(codes):
                    raise ValueError(f"got {len(ids)} ids but {len(codes)} codes")
                form_parts.append(index._form_array(forms, len(ids)))
                yield ids

        index._ids = IdTable.from_id_batches(ids_of_batches())
        words = codes_to_words(np.concatenate(parts))
        index._words = np.ascontiguousarray(words.T)
        index._forms = np.concatenate(form_parts)
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
        """The k ids closest to `code` (passing `keep`), by (distance, insertion order)."""
        k = _check_k(k)
        query = self._query_ints(code)
        with self._lock.reading():
            return self._nearest(query, k, keep)[0]

    def nearest_with_forms(
        self, code: bytes, k: int, keep: Keep | None = None
    ) -> tuple[list[Hit], np.ndarray]:
        """`nearest`, and the hits' packed forms ((len(hits), bits/2) uint8) read under the same
        lock."""
        k = _check_k(k)
        query = self._query_ints(code)
        with self._lock.reading():
            hits, rows = self._nearest(query, k, keep)
            return hits, self._forms[rows]

    def form_of(self, doc_id: str) -> np.ndarray | None:
        """The packed form of `doc_id` ((1, bits/2) uint8, zeros if it has none), or None when
        it is not indexed."""
        with self._lock.reading():
            row = self._ids.find(doc_id)
            return None if row < 0 else self._forms[[row]]

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
    def _nearest(self, query: list[int], k: int, keep: Keep | None) -> tuple[list[Hit], list[int]]:
        """The k nearest hits and their rows: probe the widest ball worth probing, and scan
        every code when that is not enough."""
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
            hits, rows = self._passing(found & 0xFFFFFFFF, found >> 32, keep, k)
            if len(hits) >= k:
                return hits, rows
        return self._scan(query, k, keep)

    def _form_array(self, forms: np.ndarray | None, count: int) -> np.ndarray:
        """Packed forms as a (count, bits/2) uint8 array (zeros for None); ValueError if the
        shape or type is wrong."""
        if forms is None:
            return np.zeros((count, self.form_bytes), dtype=np.uint8)
        forms = np.asarray(forms)
        if forms.dtype != np.uint8 or forms.shape != (count, self.form_bytes):
            raise ValueError(
                f"packed forms must be uint8 of shape ({count}, {self.form_bytes}), got "
                f"{forms.dtype} {forms.shape}"
            )
        return forms

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

    def _scan(self, query: list[int], k: int, keep: Keep | None) -> tuple[list[Hit], list[int]]:
        """Exact k nearest (hits and rows) by computing every distance."""
        dists = distances(
            self._words[:, : self._ids.rows], np.array(query, dtype=np.uint64), self._removed_rows
        )
        if keep is None:
            rows = smallest_rows(dists, min(k, len(self._ids)))
            hits = list(zip(self._ids.ids_of(rows), dists[rows].tolist(), strict=True))
            return hits, rows.tolist()
        order = np.argsort(dists, kind="stable")
        order = order[: len(order) - len(self._removed_rows)]  # removed rows sort last
        return self._passing(order, dists[order], keep, k)

    def _passing(
        self, rows: np.ndarray, dists: np.ndarray, keep: Keep | None, k: int
    ) -> tuple[list[Hit], list[int]]:
        """The first k (id, distance) of ordered rows whose id passes `keep`, and their rows."""
        if keep is None:
            hits = list(zip(self._ids.ids_of(rows[:k]), dists[:k].tolist(), strict=True))
            return hits, rows[:k].tolist()
        hits: list[Hit] = []
        kept_rows: list[int] = []
        step = max(4 * k, 256)
        for start in range(0, len(rows), step):
            chunk_rows = rows[start : start + step].tolist()
            ids = self._ids.ids_of(chunk_rows)
            chunk_dists = dists[start : start + step].tolist()
            for row, doc_id, dist, ok in zip(chunk_rows, ids, chunk_dists, keep(ids), strict=True):
                if ok:
                    hits.append((doc_id, dist))
                    kept_rows.append(row)
                    if len(hits) == k:
                        return hits, kept_rows
        return hits, kept_rows

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
        forms = np.zeros((capacity, self.form_bytes), dtype=np.uint8)
        forms[: len(self._where)] = self._forms
        where = np.zeros(capacity, dtype=np.uint8)
        where[: len(self._where)] = self._where
        self._words, self._forms, self._where = words, forms, where

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
