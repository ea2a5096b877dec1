"""An immutable table of (bucket key, row) pairs sorted by key, with a directory over top key bits.

A key's top `d` bits pick its directory cell; the table stores only the next 32 bits (its "tag")
and the row, 8 bytes per entry. A probe's candidates are the rows in its cell with an equal tag.
Keys are spread codes (multiplied by an odd constant), so cells stay evenly filled even when codes
are skewed. Cell plus tag cover all 64 key bits only when the key's low 32 bits are zero (codes of
at most 32 bits); otherwise callers confirm candidates against the stored codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LONG_CELL = 32
# Up to this many probes, lookup compares a fixed-width window of every probed cell.
WINDOW_PROBES = 4096
# Odd multipliers: multiplying by one is a bijection of uint64 that moves every bit of the code
# into the top bits, which index the directory.
_SPREAD = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F))
_SPREAD_INTS = tuple(int(value) for value in _SPREAD)
_WORD_MASK = (1 << 64) - 1


def bucket_keys(words: np.ndarray) -> np.ndarray:
    """One uint64 key per code from its (n, W) words; equal codes give equal keys.

    With one word the key is a bijection of the code (equal keys ⇔ equal codes); with two it is a
    hash, so callers compare the words of candidates.
    """
    keys = words[:, 0] * _SPREAD[0]
    if words.shape[1] > 1:
        keys ^= words[:, 1] * _SPREAD[1]
    return keys


def bucket_key(words: Sequence[int]) -> int:
    """`bucket_keys` of one code given as Python ints, without numpy call overhead."""
    key = (words[0] * _SPREAD_INTS[0]) & _WORD_MASK
    if len(words) > 1:
        key ^= (words[1] * _SPREAD_INTS[1]) & _WORD_MASK
    return key


class BucketTable:
    """Rows grouped by bucket key; `lookup` finds every row whose cell and tag equal a probe's."""

    def __init__(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Build from parallel arrays; rows with equal keys keep their given (ascending) order."""
        order = np.argsort(keys, kind="stable")
        self._size = len(order)
        directory_bits = min(32, max(1, self._size.bit_length() - 1))
        self._shift = np.uint64(64 - directory_bits)
        self._tag_shift = np.uint64(32 - directory_bits)
        sorted_keys = keys[order]
        # Padded by LONG_CELL entries so a window of that width never reads past the end.
        self.tags = np.zeros(self._size + LONG_CELL, dtype=np.uint32)
        self.tags[: self._size] = self._tags_of(sorted_keys)
        self.rows = np.zeros(self._size + LONG_CELL, dtype=np.int32)
        self.rows[: self._size] = rows[order]
        cells = (sorted_keys >> self._shift).astype(np.intp)
        counts = np.bincount(cells, minlength=1 << directory_bits)
        self._directory = np.zeros((1 << directory_bits) + 1, dtype=np.int32)
        np.cumsum(counts, out=self._directory[1:])

    def _tags_of(self, keys: np.ndarray) -> np.ndarray:
        """The 32 key bits just below the directory bits."""
        return ((keys >> self._tag_shift) & np.uint64(0xFFFFFFFF)).astype(np.uint32)

    @classmethod
    def empty(cls) -> BucketTable:
        """A table with no entries."""
        return cls(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int32))

    def __len__(self) -> int:
        return self._size

    @property
    def entry_rows(self) -> np.ndarray:
        """The rows held, in table order (without the padding)."""
        return self.rows[: self._size]

    @property
    def nbytes(self) -> int:
        """Memory held by the table's arrays."""
        return self.tags.nbytes + self.rows.nbytes + self._directory.nbytes

    def lookup_one(self, key: int) -> list[int]:
        """Rows whose cell and tag equal those of `key` (a Python int), in table order."""
        cell = key >> int(self._shift)
        tag = (key >> int(self._tag_shift)) & 0xFFFFFFFF
        start, stop = int(self._directory[cell]), int(self._directory[cell + 1])
        if stop - start > LONG_CELL:
            start, stop = self._narrow(start, stop, tag)
            return self.rows[start:stop].tolist()
        tags = self.tags[start:stop].tolist()
        rows = self.rows[start:stop].tolist()
        return [row for row, other in zip(rows, tags, strict=True) if other == tag]

    def _narrow(self, start: int, stop: int, tag: int) -> tuple[int, int]:
        """The run of `tag` inside a long cell (tags are sorted within a cell)."""
        tags = self.tags[start:stop]
        return (
            start + int(np.searchsorted(tags, np.uint32(tag), side="left")),
            start + int(np.searchsorted(tags, np.uint32(tag), side="right")),
        )

    def lookup(self, probe_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probe index, row) of every entry whose cell and tag equal a probe's, probe-major."""
        if not self._size or not len(probe_keys):
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.int32)
        cells = (probe_keys >> self._shift).astype(np.intp)
        probe_tags = self._tags_of(probe_keys)
        starts = self._directory[cells]
        lengths = self._directory[cells + 1] - starts
        width = int(lengths.max())
        if len(probe_keys) > WINDOW_PROBES or width > LONG_CELL:
            return self._lookup_expanded(probe_tags, starts.astype(np.intp), lengths)
        # Few probes: compare a fixed-width window of every cell (fewest numpy calls).
        offsets = np.arange(width, dtype=np.int32)
        positions = starts[:, None] + offsets
        match = (self.tags[positions] == probe_tags[:, None]) & (offsets < lengths[:, None])
        probe_index, column = np.nonzero(match)
        return probe_index, self.rows[positions[probe_index, column]]

    def _lookup_expanded(
        self, probe_tags: np.ndarray, starts: np.ndarray, lengths: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """`lookup` for many probes or long cells: compare exactly each probed cell's entries.

        Long cells (big buckets of skewed codes) are narrowed to the probe's run by binary search.
        """
        for probe in np.flatnonzero(lengths > LONG_CELL).tolist():
            start, stop = int(starts[probe]), int(starts[probe] + lengths[probe])
            start, stop = self._narrow(start, stop, int(probe_tags[probe]))
            starts[probe], lengths[probe] = start, stop - start
        probe_index = np.repeat(np.arange(len(probe_tags)), lengths)
        ends = np.cumsum(lengths)
        positions = np.arange(len(probe_index)) + np.repeat(starts - ends + lengths, lengths)
        match = self.tags[positions] == probe_tags[probe_index]
        return probe_index[match], self.rows[positions[match]]
