"""An immutable table of (bucket key, row) pairs sorted by key, with a directory over top key bits.

A probe key's candidates are the rows in its directory cell whose key is equal. Keys are mixed
codes, so cells stay evenly filled even when codes are skewed; only true duplicates share a run.
"""

from __future__ import annotations

import numpy as np

LONG_CELL = 32
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def mix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a bijection of uint64 that spreads nearby codes apart."""
    mixed = values ^ (values >> np.uint64(30))
    mixed *= _MIX_1
    mixed ^= mixed >> np.uint64(27)
    mixed *= _MIX_2
    mixed ^= mixed >> np.uint64(31)
    return mixed


def bucket_keys(words: np.ndarray) -> np.ndarray:
    """One uint64 key per code from its (n, W) words; equal codes give equal keys.

    With one word the key is a bijection of the code (equal keys ⇔ equal codes); with two it is a
    hash, so callers compare the words of candidates.
    """
    words = np.asarray(words, dtype=np.uint64)
    keys = mix64(words[:, 0].copy())
    for w in range(1, words.shape[1]):
        keys ^= mix64(words[:, w] + np.uint64(w))
        keys = mix64(keys)
    return keys


class BucketTable:
    """Rows grouped by bucket key; `lookup` finds every row whose key equals a probe key."""

    def __init__(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Build from parallel arrays; rows with equal keys keep their given (ascending) order."""
        order = np.argsort(keys, kind="stable")
        self.keys = np.ascontiguousarray(keys[order], dtype=np.uint64)
        self.rows = np.ascontiguousarray(rows[order], dtype=np.int32)
        directory_bits = max(1, len(self.keys).bit_length() - 1)
        self._shift = np.uint64(64 - directory_bits)
        cells = (self.keys >> self._shift).astype(np.intp)
        counts = np.bincount(cells, minlength=1 << directory_bits)
        self._directory = np.zeros((1 << directory_bits) + 1, dtype=np.int32)
        np.cumsum(counts, out=self._directory[1:])

    @classmethod
    def empty(cls) -> BucketTable:
        """A table with no entries."""
        return cls(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int32))

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        """Memory held by the table's arrays."""
        return self.keys.nbytes + self.rows.nbytes + self._directory.nbytes

    def lookup_one(self, key: np.uint64) -> np.ndarray:
        """Rows whose key equals `key` (in table order)."""
        cell = int(key >> self._shift)
        start, stop = int(self._directory[cell]), int(self._directory[cell + 1])
        if stop - start > LONG_CELL:
            keys = self.keys[start:stop]
            stop = start + int(np.searchsorted(keys, key, side="right"))
            start = start + int(np.searchsorted(keys, key, side="left"))
            return self.rows[start:stop]
        return self.rows[start:stop][self.keys[start:stop] == key]

    def lookup(self, probe_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probe index, row) of every entry whose key equals one of `probe_keys`."""
        if not len(self.keys) or not len(probe_keys):
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.int32)
        cells = (probe_keys >> self._shift).astype(np.intp)
        starts = self._directory[cells].astype(np.intp)
        lengths = self._directory[cells + 1] - starts
        long_cells = np.flatnonzero(lengths > LONG_CELL)
        if len(long_cells):
            probes = probe_keys[long_cells]
            starts[long_cells] = np.searchsorted(self.keys, probes, side="left")
            lengths[long_cells] = (
                np.searchsorted(self.keys, probes, side="right") - starts[long_cells]
            )
        probe_index = np.repeat(np.arange(len(probe_keys)), lengths)
        ends = np.cumsum(lengths)
        positions = np.arange(len(probe_index)) + np.repeat(starts - ends + lengths, lengths)
        match = self.keys[positions] == probe_keys[probe_index]
        return probe_index[match], self.rows[positions[match]]
