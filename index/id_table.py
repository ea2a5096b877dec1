"""Compact two-way map between client string ids and dense internal ints (rows).

Ids live UTF-8 encoded in one growing byte buffer with an offsets array (row → id, uint32 until
the buffer passes 4 GiB); an open-addressing table of int32 rows keyed by Python's string hash
gives id → row. About 10 bytes per id plus the id's own bytes, instead of over a hundred for a
dict and a list of str objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

# surrogatepass: any Python str (even one holding a lone surrogate, which JSON allows) round-trips.
ENCODING_ERRORS = "surrogatepass"
EMPTY = -1
TOMBSTONE = -2
MAX_LOAD = 0.75
# A bulk build leaves room for ~7 % more ids before the first rehash (4 B per slot).
BULK_LOAD = 0.7
OFFSET_LIMIT = np.iinfo(np.uint32).max
FEW_ROWS = 8


class IdTable:
    """Rows are handed out in insertion order and never reused; removed rows keep their bytes."""

    def __init__(self, capacity: int = 1024) -> None:
        self._blob = bytearray()
        self._offsets = np.zeros(max(capacity, 16) + 1, dtype=np.uint32)
        self._rows = 0
        self._live = 0
        self._used_slots = 0
        self._slots = np.full(_table_size(capacity, MAX_LOAD), EMPTY, dtype=np.int32)

    def __len__(self) -> int:
        return self._live

    @property
    def rows(self) -> int:
        """Number of rows ever handed out (live or removed)."""
        return self._rows

    @property
    def nbytes(self) -> int:
        """Memory held by the table's arrays and id bytes."""
        return len(self._blob) + self._offsets.nbytes + self._slots.nbytes

    def id_of(self, row: int) -> str:
        """The id stored at `row` (also for removed rows)."""
        return self._blob[self._offsets[row] : self._offsets[row + 1]].decode(
            "utf-8", ENCODING_ERRORS
        )

    def ids_of(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """Ids of many rows, in order (a few one by one: most answers hold a few ids, and numpy's
        gather would cost more than they do)."""
        offsets = self._offsets
        blob = self._blob
        if len(rows) <= FEW_ROWS:
            return [self.id_of(int(row)) for row in rows]
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = offsets[rows].tolist(), offsets[rows + 1].tolist()
        return [
            blob[start:end].decode("utf-8", ENCODING_ERRORS)
            for start, end in zip(starts, ends, strict=True)
        ]

    def find(self, doc_id: str) -> int:
        """Row of `doc_id`, or -1 when it is not present."""
        key = doc_id.encode("utf-8", ENCODING_ERRORS)
        size = len(self._slots)
        slot = hash(doc_id) % size
        slots = self._slots
        offsets = self._offsets
        while True:
            row = int(slots[slot])
            if row == EMPTY:
                return -1
            if row >= 0 and self._blob[offsets[row] : offsets[row + 1]] == key:
                return row
            slot = slot + 1 if slot + 1 < size else 0

    def add(self, doc_id: str) -> int:
        """Append a new id (caller checked it is absent) and return its row."""
        if (self._used_slots + 1) > MAX_LOAD * len(self._slots):
            self._rehash(_table_size(2 * (self._live + 1), MAX_LOAD))
        encoded = doc_id.encode("utf-8", ENCODING_ERRORS)
        dtype = np.int64 if len(self._blob) + len(encoded) > OFFSET_LIMIT else self._offsets.dtype
        if self._rows + 1 >= len(self._offsets) or dtype != self._offsets.dtype:
            grown = np.zeros(max(2 * self._rows + 2, len(self._offsets)), dtype=dtype)
            grown[: self._rows + 1] = self._offsets[: self._rows + 1]
            self._offsets = grown
        row = self._rows
        self._blob += encoded
        self._offsets[row + 1] = len(self._blob)
        self._rows += 1
        self._live += 1
        self._place(hash(doc_id), row)
        return row

    def discard(self, doc_id: str) -> int:
        """Forget `doc_id`; returns its row, or -1 when it was not present."""
        key = doc_id.encode("utf-8", ENCODING_ERRORS)
        size = len(self._slots)
        slot = hash(doc_id) % size
        while True:
            row = int(self._slots[slot])
            if row == EMPTY:
                return -1
            if row >= 0 and self._blob[self._offsets[row] : self._offsets[row + 1]] == key:
                self._slots[slot] = TOMBSTONE
                self._live -= 1
                return row
            slot = slot + 1 if slot + 1 < size else 0

    @classmethod
    def from_ids(cls, ids: Sequence[str]) -> IdTable:
        """Bulk build with rows 0..n-1 in the given order; ValueError on bad or duplicate ids."""
        return cls.from_id_batches([ids])

    @classmethod
    def from_id_batches(cls, batches: Iterable[Sequence[str]]) -> IdTable:
        """`from_ids` of the batches' ids one after the other, holding one batch of id strings
        at a time (a store of millions of documents is read in batches)."""
        blob = bytearray()
        lengths: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
        hashes: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
        for ids in batches:
            encoded, sizes = _encode_all(ids)
            if len(ids) and not sizes.all():
                raise ValueError("document ids must be non-empty strings")
            blob += encoded
            lengths.append(sizes)
            hashes.append(np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids)))
        all_hashes = np.concatenate(hashes)
        count = len(all_hashes)
        table = cls(capacity=count)
        table._slots = np.full(_table_size(count, BULK_LOAD), EMPTY, dtype=np.int32)
        table._blob = blob
        if len(blob) > OFFSET_LIMIT:
            table._offsets = table._offsets.astype(np.int64)
        table._offsets[1 : count + 1] = np.cumsum(np.concatenate(lengths))
        table._rows = table._live = table._used_slots = count
        _bulk_place(table._slots, all_hashes, np.arange(count, dtype=np.int32))
        if table._has_duplicates(all_hashes):
            raise ValueError("ids must be unique")
        return table

    def _has_duplicates(self, hashes: np.ndarray) -> bool:
        """True when an id occurs twice (only ids whose hashes collide are compared)."""
        sorted_hashes = np.sort(hashes)
        repeated = np.unique(sorted_hashes[1:][sorted_hashes[1:] == sorted_hashes[:-1]])
        if not len(repeated):
            return False
        colliding = self.ids_of(np.flatnonzero(np.isin(hashes, repeated)))
        return len(set(colliding)) != len(colliding)

    def _place(self, id_hash: int, row: int) -> None:
        """Put `row` in the first free slot of its probe sequence."""
        size = len(self._slots)
        slot = id_hash % size
        while self._slots[slot] >= 0:
            slot = slot + 1 if slot + 1 < size else 0
        if self._slots[slot] == EMPTY:
            self._used_slots += 1
        self._slots[slot] = row

    def _rehash(self, size: int) -> None:
        """Rebuild the slot table at `size` without tombstones."""
        live_rows = self._slots[self._slots >= 0].astype(np.int32)
        live_rows.sort()
        hashes = np.fromiter(
            (hash(self.id_of(int(row))) for row in live_rows), dtype=np.int64, count=len(live_rows)
        )
        self._slots = np.full(size, EMPTY, dtype=np.int32)
        _bulk_place(self._slots, hashes, live_rows)
        self._used_slots = len(live_rows)


def _table_size(count: int, load: float) -> int:
    """Slots needed to hold `count` entries at `load` (at least 16)."""
    return max(16, int(count / load) + 1)


def _encode_all(ids: Sequence[str]) -> tuple[bytes, np.ndarray]:
    """All ids UTF-8 encoded back to back, and each one's byte length; ValueError on non-strings.

    ASCII ids (the common case) are joined and encoded in one call, their lengths read off as
    character counts; others are encoded one by one.
    """
    try:
        joined = "".join(ids)
    except TypeError:
        raise ValueError("document ids must be non-empty strings") from None
    if joined.isascii():
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        return joined.encode("ascii"), lengths
    encoded = [doc_id.encode("utf-8", ENCODING_ERRORS) for doc_id in ids]
    return b"".join(encoded), np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))


def _bulk_place(slots: np.ndarray, hashes: np.ndarray, rows: np.ndarray) -> None:
    """Vectorised linear-probing insert of `rows` (with their id hashes) into an empty table.

    Each round every pending row bids for its current slot; when several bid for one empty slot,
    the scatter keeps one of them, and the rest move one slot on.
    """
    size = len(slots)
    position = hashes % size
    pending = np.arange(len(rows))
    while len(pending):
        targets = position[pending]
        free = slots[targets] == EMPTY
        bidders = pending[free]
        slots[targets[free]] = rows[bidders]
        placed = np.zeros(len(pending), dtype=bool)
        placed[free] = slots[targets[free]] == rows[bidders]
        pending = pending[~placed]
        position[pending] = (position[pending] + 1) % size
