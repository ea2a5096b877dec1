"""An immutable table of (bucket key, row) pairs sorted by key, with a directory over top key bits.

A key's top `d` bits pick its directory cell; the table stores only the top 32 bits (its "tag",
which includes the cell bits) and the row, 8 bytes per entry. A probe's candidates are the rows in
its cell with an equal tag.
Keys are spread codes (a random GF(2)-linear bijection of each word), so cells stay evenly filled
even when codes are skewed, and a probe's cell and tag are the query's XOR its mask's. The tag
covers all 64 key bits only when the key's low 32 bits are zero (codes of at most 32 bits);
otherwise callers confirm candidates against the stored codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LONG_CELL = 32
# Up to this many probes, lookup compares a fixed-width window of every probed cell.
WINDOW_PROBES = 4096
_WORD_BITS = 64
_BYTES_PER_WORD = 8
_KEY_SEED = 0x5EED_B175


def _spread_tables(seed: int) -> np.ndarray:
    """Byte tables of a random GF(2)-linear bijection of uint64, shape (8, 256).

    Output bit i (0 = most significant) is input bit i XOR a random subset of the less significant
    input bits: unit-triangular, hence invertible, and a code whose low 32 bits are zero keeps them
    zero. Every input bit reaches the top (directory) bits, so skewed codes still fill cells evenly.
    """
    rng = np.random.default_rng(seed)
    below = np.triu(rng.integers(0, 2, size=(_WORD_BITS, _WORD_BITS), dtype=np.uint64), k=1)
    matrix = below | np.eye(_WORD_BITS, dtype=np.uint64)  # matrix[i, j]: input j feeds output i
    weights = np.uint64(1) << np.arange(_WORD_BITS - 1, -1, -1, dtype=np.uint64)
    columns = np.bitwise_or.reduce(matrix * weights[:, None], axis=0)  # image of input bit j
    tables = np.zeros((_BYTES_PER_WORD, 256), dtype=np.uint64)
    values = np.arange(256, dtype=np.uint64)
    for byte in range(_BYTES_PER_WORD):
        for bit in range(8):
            has_bit = (values >> np.uint64(7 - bit)) & np.uint64(1)
            tables[byte] ^= has_bit * columns[8 * byte + bit]
    return tables


# One linear map per code word: the key of a code is the XOR of its words' images, so
# key(a XOR b) = key(a) XOR key(b) and a probe's key is the query's key XOR its mask's key.
_TABLES = (_spread_tables(_KEY_SEED), _spread_tables(_KEY_SEED + 1))
_TABLE_INTS = tuple(table.tolist() for table in _TABLES)
_BYTE_SHIFTS = tuple(np.uint64(_WORD_BITS - 8 * (byte + 1)) for byte in range(_BYTES_PER_WORD))


def bucket_keys(words: np.ndarray) -> np.ndarray:
    """One uint64 key per code from its (n, W) words; equal codes give equal keys.

    The key is GF(2)-linear in the code. With one word it is a bijection of the code (equal keys ⇔
    equal codes); with two it is a hash, so callers compare the words of candidates.
    """
    keys = np.zeros(len(words), dtype=np.uint64)
    for w in range(min(words.shape[1], len(_TABLES))):
        for byte, shift in enumerate(_BYTE_SHIFTS):
            keys ^= _TABLES[w][byte][(words[:, w] >> shift) & np.uint64(0xFF)]
    return keys


def bucket_key(words: Sequence[int]) -> int:
    """`bucket_keys` of one code given as Python ints, without numpy call overhead."""
    key = 0
    for word, tables in zip(words, _TABLE_INTS, strict=False):
        for byte in range(_BYTES_PER_WORD):
            key ^= tables[byte][(word >> (_WORD_BITS - 8 * (byte + 1))) & 0xFF]
    return key


class BucketTable:
    """Rows grouped by bucket key; `lookup` finds every row whose cell and tag equal a probe's."""

    def __init__(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Build from parallel arrays; rows with equal keys keep their given (ascending) order."""
        order = np.argsort(keys, kind="stable")
        self._size = len(order)
        directory_bits = min(32, max(1, self._size.bit_length() - 1))
        self._shift = np.uint64(64 - directory_bits)
        self._tag_shift = np.uint64(32)
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
        # (cell, 2) view of (start, stop) per cell: one gather reads both bounds.
        self._bounds = np.lib.stride_tricks.as_strided(
            self._directory,
            shape=(1 << directory_bits, 2),
            strides=(self._directory.itemsize, self._directory.itemsize),
            writeable=False,
        )
        self._max_cell = int(counts.max()) if self._size else 0
        self._window = np.arange(self._max_cell, dtype=np.int32)
        self._mask_parts: dict[object, tuple[np.ndarray, np.ndarray]] = {}

    def _tags_of(self, keys: np.ndarray) -> np.ndarray:
        """The top 32 key bits (they include the directory bits, so equal tags imply one cell)."""
        return (keys >> self._tag_shift).astype(np.uint32)

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

    def lookup_xor(
        self, query_key: int, mask_keys: np.ndarray, masks_name: object
    ) -> tuple[np.ndarray, np.ndarray]:
        """`lookup` of the probe keys `query_key` XOR `mask_keys`, with fewer numpy calls.

        Keys are linear, so a probe's cell and tag are the query's XOR the mask's; those of the
        masks are computed once per table and `masks_name` (a hashable name of `mask_keys`).
        """
        if self._max_cell > LONG_CELL or len(mask_keys) > WINDOW_PROBES:
            return self.lookup(mask_keys ^ np.uint64(query_key))
        if not self._size:
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.int32)
        parts = self._mask_parts.get(masks_name)
        if parts is None:
            parts = ((mask_keys >> self._shift).astype(np.intp), self._tags_of(mask_keys))
            self._mask_parts[masks_name] = parts
        cells = parts[0] ^ (query_key >> int(self._shift))
        probe_tags = parts[1] ^ (query_key >> int(self._tag_shift))
        # A window as wide as the longest cell of the table: no per-probe width to compute. An
        # entry past the probe's cell never matches, since its tag holds a different cell.
        positions = self._directory[cells][:, None] + self._window
        matches = np.flatnonzero(self.tags[positions] == probe_tags[:, None])
        return matches // len(self._window), self.rows[positions.ravel()[matches]]

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
