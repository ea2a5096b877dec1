"""`HashIndex`: exact in-memory semantic-hashing table from codes to client ids.

Layout: codes live word-major in `_words` (W, capacity) uint64 (uint32 for codes of at most 32
bits), indexed by dense internal rows that are handed out in insertion order of the ids (an upsert
that changes a code keeps the row). Buckets are two `BucketTable`s: a large `main` rebuilt now and
then, and a small `delta` holding the rows written since; `_where[row]` says which table holds a
row's current entry (or none once removed), so stale entries are skipped without rewriting the big
table. Results are ordered by (Hamming
distance, row). Probes and scans run in compiled loops (`kernels`); batch answers come as arrays
(`BatchHits`) or as lists. A readers-writer lock makes every batch write atomic for readers.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from docbits.index.bucket_table import BucketTable, bucket_key, bucket_keys
from docbits.index.codes import (
    WORD_BITS,
    as_code_array,
    codes_to_words,
    validate_bits,
    words_per_code,
    words_to_codes,
)
from docbits.index.hamming import ball_size, shell_range_masks
from docbits.index.id_table import SMALL_LOOKUP, IdTable
from docbits.index.kernels import (
    CONFIRM_EACH,
    CONFIRM_NONE,
    CONFIRM_RUN,
    DEAD_DISTANCE,
    pack_masks,
    probe_balls,
    scan_distances,
    smallest_rows,
    split_hits,
    split_hits_into,
)
from docbits.index.rwlock import ReadWriteLock
from docbits.index.scratch import SCRATCH
from docbits.index.single_query import bound_probe_one, layout_of
from docbits.index.substring_scan import scan_balls, substrings

Hit = tuple[str, int]
Keep = Callable[[str], bool]

REMOVED = 0
IN_MAIN = 1
IN_DELTA = 2
ANY_ROW = -1  # a table whose every entry is current: `where` need not be read
# Probing one key costs about as much as scanning this many codes (measured at 1 M codes);
# nearest() grows the radius only while the ball's probes cost under 1/PROBE_BUDGET_FRACTION of one
# scan of every code, so a fruitless probe adds at most that fraction to the scan that follows.
PROBE_COST_IN_CODES = 128
PROBE_BUDGET_FRACTION = 4
# nearest() never probes a ball larger than this, whatever the index size.
MAX_NEAREST_PROBES = 1 << 16
MIN_DELTA_BEFORE_MERGE = 4096
MERGE_FRACTION = 32
# Batch probes split into per-thread chunks of at least this many probes (handing a chunk to
# a pooled thread and waiting for it costs ~50-100 µs on a busy machine, ~1,000 probes).
MIN_PROBES_PER_THREAD = 4096
# A batch ball by substring scan (`substring_scan`) costs, in scanned codes, this much per stored
# code and substring, plus this much per candidate pair (measured at 1 M codes).
SUBSTRING_COST_IN_CODES = 3
CANDIDATE_COST_IN_CODES = 10
# Batch probes cut the queries into this many chunks per thread, claimed in turn.
CHUNKS_PER_WORKER = 8
# Substring scans split the rows into per-thread chunks of at least this many rows.
MIN_ROWS_PER_THREAD = 1 << 16
# Room for a single query's hits passed to the kernel (it returns a bigger array if needed).
SINGLE_QUERY_HITS = 64


class HashIndex:
    """Code → ids hash table with exact bucket, Hamming-ball and k-nearest queries."""

    def __init__(self, bits: int) -> None:
        self.bits = validate_bits(bits)
        self._num_words = words_per_code(bits)
        # Bucket tables hold 32 key bits below their directory bits: exact only for codes of at
        # most 32 bits, so longer codes are confirmed against `_words` (see `_confirm_mode`).
        self._confirm_codes = self.bits > 32
        # Codes of at most 32 bits are stored as uint32 (the top half of their only word).
        self._word_dtype = np.uint32 if self.bits <= 32 else np.uint64
        self._ids = IdTable()
        self._words = np.zeros((self._num_words, 1024), dtype=self._word_dtype)
        self._where = np.zeros(1024, dtype=np.uint8)
        self._main = BucketTable.empty()
        self._delta = BucketTable.empty()
        self._removed_rows = np.zeros(0, dtype=np.intp)
        self._main_is_current = True
        self._refresh_kernel_views()
        # A single query's code as Python ints: value << pad is its W words side by side.
        self._query_pad = self._num_words * WORD_BITS - self.bits
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
            return words_to_codes(self._words64([row]), self.bits)[0].tobytes()

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
            try:
                self._upsert_locked(ids, words)
            finally:
                self._refresh_kernel_views()

    def _upsert_locked(self, ids: Sequence[str], words: np.ndarray) -> None:
        """`upsert` of validated ids and their (n, W) uint64 words, under the write lock."""
        rows = np.fromiter(map(self._row_for, ids), dtype=np.intp, count=len(ids))
        self._ensure_capacity(self._ids.rows)
        last = _last_occurrences(rows)
        rows, words = rows[last], words[last]
        stored = self._stored(words)
        changed = (self._where[rows] != IN_MAIN) | np.any(stored != self._words[:, rows].T, axis=1)
        rows, stored = rows[changed], stored[changed]
        if np.any(self._where[rows] == IN_MAIN):
            self._main_is_current = False
        self._words[:, rows] = stored.T
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
                self._refresh_kernel_views()
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
        index._words = np.ascontiguousarray(index._stored(words).T)
        index._where = np.full(len(ids), IN_MAIN, dtype=np.uint8)
        index._main = BucketTable(bucket_keys(words), np.arange(len(ids), dtype=np.int32))
        index._refresh_kernel_views()
        return index

    def to_arrays(self) -> tuple[list[str], np.ndarray]:
        """Every indexed (id, code), in row order: ids and (n, bits/8) uint8 codes."""
        with self._lock.reading():
            rows = self._live_rows()
            return self._ids.ids_of(rows), words_to_codes(self._words64(rows), self.bits)

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
        first_word, second_word = self._query_words(code)
        masks = _probe_masks(self.bits, 0, radius)
        found = np.empty(SINGLE_QUERY_HITS, dtype=np.int64)
        with self._lock.reading():
            count, found = bound_probe_one(self._word_dtype)(
                first_word,
                second_word,
                masks,
                self._layout,
                self._word_dtype,
                self._confirm,
                found,
            )
            if not count:
                return []
            if count <= SINGLE_QUERY_HITS:  # Python ints beat numpy's per-call cost here
                values = found[:count].tolist()
                ids = self._ids.ids_of([value & 0xFFFFFFFF for value in values])
                distances = [value >> 32 for value in values]
            else:
                ids = self._ids.ids_of(found[:count] & 0xFFFFFFFF)
                distances = (found[:count] >> 32).tolist()
        hits = list(zip(ids, distances, strict=True))
        return hits if keep is None else [hit for hit in hits if keep(hit[0])]

    def nearest(self, code: bytes, k: int, keep: Keep | None = None) -> list[Hit]:
        """The k ids closest to `code` (passing `keep`), by (distance, insertion order)."""
        k = _check_k(k)
        query = self._query_codes(code)
        with self._lock.reading():
            return self._hits(*self._nearest(query, k, keep))

    def bucket_many(self, codes: np.ndarray) -> list[list[str]]:
        """`bucket` for each row of a (n, bits/8) uint8 array."""
        return [[doc_id for doc_id, _ in hits] for hits in self.ball_many(codes, 0)]

    def ball_many(self, codes: np.ndarray, radius: int) -> list[list[Hit]]:
        """`ball` for each row of a (n, bits/8) uint8 array."""
        return self.ball_many_arrays(codes, radius).to_lists()

    def nearest_many(self, codes: np.ndarray, k: int) -> list[list[Hit]]:
        """`nearest` for each row of a (n, bits/8) uint8 array."""
        return self.nearest_many_arrays(codes, k).to_lists()

    def bucket_many_arrays(self, codes: np.ndarray) -> BatchHits:
        """`bucket_many` as arrays (every distance 0); ids are resolved only when asked for."""
        return self.ball_many_arrays(codes, 0)

    def ball_many_arrays(self, codes: np.ndarray, radius: int) -> BatchHits:
        """`ball_many` as arrays; query chunks are probed on several threads."""
        radius = _check_radius(radius, self.bits)
        queries = as_code_array(codes, self.bits)
        with self._lock.reading():
            if self._scan_is_cheaper(len(queries), radius):
                offsets, rows, distances = self._scan_balls(queries, radius)
                return BatchHits(offsets, rows, distances, self._ids_of_locked)
            offsets, rows, distances = self._probe_balls(queries, radius)
        return BatchHits(offsets, rows, distances, self._ids_of_locked)

    def nearest_many_arrays(self, codes: np.ndarray, k: int) -> BatchHits:
        """`nearest_many` as arrays; queries run on several threads (kernels release the GIL)."""
        k = _check_k(k)
        codes = as_code_array(codes, self.bits)
        queries = [codes[i : i + 1] for i in range(len(codes))]
        with self._lock.reading():
            answers = _map_threads(
                lambda query: self._nearest(query, k, None), queries, _workers(len(queries), 1)
            )
        sizes = [len(rows) for _, rows in answers]
        offsets = np.zeros(len(answers) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        distances = np.concatenate([d for d, _ in answers] or [np.zeros(0, np.uint8)])
        rows = np.concatenate([r for _, r in answers] or [np.zeros(0, np.int32)])
        return BatchHits(
            offsets, rows.astype(np.int32), distances.astype(np.uint8), self._ids_of_locked
        )

    def warm_up(self) -> None:
        """Compile, or load from numba's disk cache, the kernels of this code length's queries.

        Start-up calls it so the first query does not pay that (~1 s cached, ~10 s compiled).
        """
        spare = HashIndex(self.bits)
        spare.upsert(["warm-up"], np.zeros((1, self.bits // 8), dtype=np.uint8))
        spare.ball(bytes(self.bits // 8), 1)
        queries = np.zeros((1, self.bits // 8), dtype=np.uint8)
        split_hits(spare._probe(queries, 0, 1)[1])  # batches may probe or scan: warm both
        if self._num_words == 1:
            spare._scan_balls(queries, 1)
        spare.nearest(bytes(self.bits // 8), 1)
        spare._ids.ids_of(np.zeros(SMALL_LOOKUP + 1, dtype=np.int64))  # many ids: one gather

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
            codes.view(np.dtype((np.void, codes.itemsize * self._num_words))), return_counts=True
        )
        size_values, bucket_counts = np.unique(sizes, return_counts=True)
        return dict(zip(size_values.tolist(), bucket_counts.tolist(), strict=True))

    # ---- internals (callers hold the lock) ----------------------------------------------
    def _query_ints(self, code: bytes) -> list[int]:
        """One code as its W words (Python ints); ValueError when its length is wrong."""
        if not isinstance(code, _CODE_TYPES):
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

    def _query_words(self, code: bytes) -> tuple[int, int]:
        """One code's first two words as Python ints (the second 0 for one-word codes);
        ValueError when its length is wrong."""
        if not isinstance(code, _CODE_TYPES) or len(code) != self.bits // 8:
            self._query_codes(code)  # raises the precise error
        value = int.from_bytes(code, "big") << self._query_pad
        if self._num_words == 1:
            return value, 0
        return value >> WORD_BITS, value & _WORD_MASK

    def _query_codes(self, code: bytes) -> np.ndarray:
        """One code as a (1, bits/8) uint8 array; ValueError when its length is wrong."""
        if not isinstance(code, _CODE_TYPES):
            raise ValueError(f"code must be bytes, got {type(code).__name__}")
        if len(code) != self.bits // 8:
            raise ValueError(
                f"code must be {self.bits // 8} bytes for a {self.bits}-bit code, got {len(code)}"
            )
        # A writable copy: read-only arrays would make numba compile a second kernel version.
        return np.frombuffer(bytearray(code), dtype=np.uint8).reshape(1, -1)

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
        words = np.zeros((self._num_words, capacity), dtype=self._word_dtype)
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
        old = old[self._where[old] == IN_DELTA].astype(np.intp)
        rows = np.union1d(old, extra_rows).astype(np.intp)
        if len(rows) > max(MIN_DELTA_BEFORE_MERGE, self._ids.rows // MERGE_FRACTION):
            self._merge()
            return
        self._delta = BucketTable(bucket_keys(self._words64(rows)), rows)

    def _merge(self) -> None:
        """Rebuild the main table from every live row and empty the delta."""
        rows = self._live_rows()
        self._main = BucketTable(bucket_keys(self._words64(rows)), rows)
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

    def _probe(
        self, queries: np.ndarray, first: int, last: int, found: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """CSR offsets and (distance << 32 | row) of the documents within shells first..last of
        each (q, bits/8) uint8 query, ordered by (distance, row) per query; written to `found`
        (int64) while it has room."""
        return probe_balls(
            queries,
            _probe_masks(self.bits, first, last),
            self._tables,
            self._where,
            self._words,
            self._confirm,
            np.empty(256, dtype=np.int64) if found is None else found,
        )

    def _probe_balls(
        self, queries: np.ndarray, radius: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(offsets, rows, distances) of a batch of balls by probing, on several threads.

        The queries are cut into CHUNKS_PER_WORKER chunks per thread, which the threads claim
        one after the other (a batch's costly queries often come together: contiguous halves
        left one thread with nearly all the hits), appending each chunk's hits to their own
        scratch buffer.
        """
        probes = ball_size(self.bits, radius)
        workers = _workers(len(queries), -(-MIN_PROBES_PER_THREAD // probes))
        chunks = _chunks(len(queries), min(len(queries), workers * CHUNKS_PER_WORKER))
        parts: list = [None] * len(chunks)  # (offsets, found) per chunk
        claims = itertools.count()  # next() is atomic under the GIL

        with SCRATCH.lend(workers) as scratch:

            def work(worker: int) -> None:
                free = scratch[worker].view(np.int64)
                while (chunk := next(claims)) < len(chunks):
                    offsets, found = self._probe(queries[chunks[chunk]], 0, radius, free)
                    parts[chunk] = (offsets, found)
                    if found.ctypes.data == free.ctypes.data:  # not moved to a grown array
                        free = free[len(found) :]

            _map_threads(work, range(workers), workers)
            return _split_parts(parts)

    def _scan_is_cheaper(self, num_queries: int, radius: int) -> bool:
        """Whether one substring scan of every code beats probing each query's ball.

        Candidates are estimated for uniform codes (skewed codes have more, but then most of
        them are hits, which probing pays for too).
        """
        if self._num_words != 1 or not num_queries:
            return False
        widths = substrings(self.bits, radius)[2]
        rows = self._ids.rows
        candidates = rows * num_queries * sum(2.0**-width for width in widths)
        scan = rows * len(widths) * SUBSTRING_COST_IN_CODES + candidates * CANDIDATE_COST_IN_CODES
        return scan < num_queries * ball_size(self.bits, radius) * PROBE_COST_IN_CODES

    def _scan_balls(
        self, queries: np.ndarray, radius: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(offsets, rows, distances) of a batch of balls by one substring scan of every code."""
        spans = _chunks(self._ids.rows, _workers(self._ids.rows, MIN_ROWS_PER_THREAD))
        return scan_balls(
            self._words[0],
            32 if self._word_dtype == np.uint32 else 0,
            self._where,
            [(span.start, span.stop) for span in spans],
            np.ascontiguousarray(codes_to_words(queries)[:, 0]),
            self.bits,
            radius,
            lambda function, parts: _map_threads(function, parts, len(parts)),
        )

    def _refresh_kernel_views(self) -> None:
        """Rebuild what the kernels are given after a write: both bucket tables as
        `kernel_view`s, and the address block of every array for single queries (which must
        never outlive the arrays it points to, so writers call this even when they fail)."""
        self._tables = (
            self._main.kernel_view(ANY_ROW if self._main_is_current else IN_MAIN),
            self._delta.kernel_view(IN_DELTA),
        )
        self._layout = layout_of(self._tables, self._where, self._words)
        self._confirm = self._confirm_mode()

    def _confirm_mode(self) -> int:
        """How probes check candidates' codes (`kernels.CONFIRM_*`): not at all when tags hold
        the whole code, once per run of equal tags for one-word codes (keys are a bijection of
        them, so a run not listed as mixed holds one code), else every candidate."""
        if not self._confirm_codes:
            return CONFIRM_NONE
        return CONFIRM_RUN if self._num_words == 1 else CONFIRM_EACH

    def _hits(self, distances: np.ndarray, rows: np.ndarray) -> list[Hit]:
        """(id, distance) pairs of rows already ordered by (distance, row)."""
        return list(zip(self._ids.ids_of(rows), distances.tolist(), strict=True))

    def _ids_of_locked(self, rows: np.ndarray) -> list[str]:
        """Ids of `rows`, under the read lock (for `BatchHits`, read after the query returned)."""
        with self._lock.reading():
            return self._ids.ids_of(rows)

    def _nearest(
        self, query: np.ndarray, k: int, keep: Keep | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(distances, rows) of the k nearest rows to a (1, bits/8) uint8 query passing `keep`,
        by (distance, row).

        Probe the bucket, then the widest ball worth probing; scan when that is not enough.
        """
        live = len(self._ids)
        if live < PROBE_COST_IN_CODES * PROBE_BUDGET_FRACTION:
            return self._scan(query, k, keep, _NO_DISTANCES, _NO_ROWS, -1)
        radius = 0
        while radius < self.bits:
            probes = ball_size(self.bits, radius + 1)
            probe_cost = probes * PROBE_COST_IN_CODES * PROBE_BUDGET_FRACTION
            if probe_cost > live or probes > MAX_NEAREST_PROBES:
                break
            radius += 1
        found_distances, found_rows = [], []
        have, probed = 0, -1
        for shells in ((0, 0), (1, radius)):
            if shells[0] > shells[1]:
                break
            rows, distances = split_hits(self._probe(query, *shells)[1])
            if keep is not None:
                distances, rows = self._passing(distances, rows, keep, k - have)
            found_distances.append(distances[: k - have])
            found_rows.append(rows[: k - have])
            have += len(found_rows[-1])
            probed = shells[1]
            if have >= k:
                break
        distances, rows = np.concatenate(found_distances), np.concatenate(found_rows)
        if have >= k:
            return distances, rows
        return self._scan(query, k, keep, distances, rows, probed)

    def _passing(
        self, distances: np.ndarray, rows: np.ndarray, keep: Keep, limit: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The first `limit` (distance, row) pairs whose id passes `keep` (ids read in chunks)."""
        kept: list[int] = []
        step = max(4 * limit, 256)
        for start in range(0, len(rows), step):
            chunk = np.arange(start, min(start + step, len(rows)))
            for position, doc_id in zip(chunk.tolist(), self._ids.ids_of(rows[chunk]), strict=True):
                if keep(doc_id):
                    kept.append(position)
                    if len(kept) == limit:
                        return distances[kept], rows[kept]
        return distances[kept], rows[kept]

    def _scan(
        self,
        query: np.ndarray,
        k: int,
        keep: Keep | None,
        found_distances: np.ndarray,
        found_rows: np.ndarray,
        radius: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest by computing every distance; `found_*` hold the hits within `radius`."""
        stored_query = self._stored(codes_to_words(query))[0]
        distances = scan_distances(
            self._words[:, : self._ids.rows], stored_query, self._removed_rows
        )
        if keep is None:
            rows = smallest_rows(distances, min(k, len(self._ids)))
            return distances[rows], rows.astype(np.int32)
        kept_distances, kept_rows = [found_distances], [found_rows]
        have = len(found_rows)
        order = np.argsort(distances, kind="stable")
        start = int(np.count_nonzero(distances <= radius))
        step = max(4 * k, 256)
        while have < k and start < len(order):
            rows = order[start : start + step]
            rows = rows[distances[rows] != DEAD_DISTANCE]
            chunk_distances, chunk_rows = self._passing(distances[rows], rows, keep, k - have)
            kept_distances.append(chunk_distances)
            kept_rows.append(chunk_rows.astype(np.int32))
            have += len(chunk_rows)
            start += step
        return np.concatenate(kept_distances), np.concatenate(kept_rows)

    def _stored(self, words: np.ndarray) -> np.ndarray:
        """(n, W) uint64 code words in the stored dtype (the top 32 bits for short codes)."""
        if self._word_dtype == np.uint64:
            return words
        return (words >> np.uint64(32)).astype(np.uint32)

    def _words64(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """(len(rows), W) uint64 code words of stored rows."""
        stored = self._words[:, rows].T
        if self._word_dtype == np.uint64:
            return np.ascontiguousarray(stored)
        return stored.astype(np.uint64) << np.uint64(32)


@dataclass(frozen=True)
class BatchHits:
    """Answers to a batch of queries as arrays (the form FAISS returns); ids resolved on demand.

    Query i's hits are `rows[offsets[i]:offsets[i + 1]]` (internal int32 rows) with `distances`
    (uint8) at the same positions, ordered by (distance, row). Rows are never reused, so they
    resolve to their ids even after those documents were removed.
    """

    offsets: np.ndarray
    rows: np.ndarray
    distances: np.ndarray
    resolve: Callable[[np.ndarray], list[str]] = field(repr=False)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def ids(self, query: int) -> list[str]:
        """Ids of query `query`'s hits, in order."""
        return self.resolve(self.rows[self.offsets[query] : self.offsets[query + 1]])

    def hits(self, query: int) -> list[Hit]:
        """(id, distance) of query `query`'s hits, in order."""
        lo, hi = self.offsets[query], self.offsets[query + 1]
        return list(
            zip(self.resolve(self.rows[lo:hi]), self.distances[lo:hi].tolist(), strict=True)
        )

    def to_lists(self) -> list[list[Hit]]:
        """Every query's (id, distance) list (one Python tuple per hit: slow for many hits)."""
        hits = list(zip(self.resolve(self.rows), self.distances.tolist(), strict=True))
        bounds = self.offsets.tolist()
        return [hits[lo:hi] for lo, hi in itertools.pairwise(bounds)]


# Tuples, not `a | b` unions: a union written in a check is built anew on every call.
_CODE_TYPES = (bytes, bytearray, memoryview)
_INTEGER_TYPES = (int, np.integer)
_NO_DISTANCES = np.zeros(0, dtype=np.uint8)
_NO_ROWS = np.zeros(0, dtype=np.int32)


_WORD_MASK = (1 << WORD_BITS) - 1
_CPUS = os.cpu_count() or 1  # (asking costs ~15 µs per call)


def _workers(tasks: int, min_per_worker: int) -> int:
    """Threads worth using for `tasks` tasks of which each thread should get `min_per_worker`."""
    return max(1, min(_CPUS, tasks // max(1, min_per_worker)))


def _chunks(count: int, parts: int) -> list[slice]:
    """`parts` contiguous slices covering range(count)."""
    bounds = [count * part // parts for part in range(parts + 1)]
    return [slice(lo, hi) for lo, hi in itertools.pairwise(bounds)]


def _map_threads(function: Callable, items: Sequence, workers: int | None = None) -> list:
    """`function` over `items` in order: in this thread when `workers` (default: one per item)
    is at most 1, else on the shared pool of one thread per CPU."""
    workers = len(items) if workers is None else workers
    if workers <= 1:
        return [function(item) for item in items]
    return list(_shared_pool().map(function, items))


@lru_cache(maxsize=1)
def _shared_pool() -> ThreadPoolExecutor:
    """One thread per CPU, started once: starting threads per batch cost ~0.1 ms each."""
    return ThreadPoolExecutor(max_workers=_CPUS, thread_name_prefix="hash-index")


def _split_parts(
    parts: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One CSR answer (offsets, rows, distances) from per-chunk (offsets, distance << 32 | row)
    pieces, each split straight into its place in the new arrays (no joined copy first)."""
    offsets, shift = [np.zeros(1, dtype=np.int64)], 0
    for part_offsets, values in parts:
        offsets.append(part_offsets[1:] + shift)
        shift += len(values)
    rows = np.empty(shift, dtype=np.int32)
    distances = np.empty(shift, dtype=np.uint8)
    start = 0
    for _, values in parts:
        split_hits_into(
            values, rows[start : start + len(values)], distances[start : start + len(values)]
        )
        start += len(values)
    return np.concatenate(offsets), rows, distances


@lru_cache(maxsize=64)
def _probe_masks(bits: int, first: int, last: int) -> np.ndarray:
    """`kernels.pack_masks` of the masks of shells first..last (read-only).

    Keys are linear, so a probe's key is its query's XOR its mask's.
    """
    masks, weights = shell_range_masks(bits, first, last)
    packed = pack_masks(bucket_keys(masks), weights, masks)
    packed.setflags(write=False)
    return packed


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
    if isinstance(radius, bool) or not isinstance(radius, _INTEGER_TYPES) or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    return min(int(radius), bits)


def _check_k(k: int) -> int:
    """ValueError unless k is a positive integer."""
    if isinstance(k, bool) or not isinstance(k, _INTEGER_TYPES) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)
