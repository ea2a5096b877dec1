"""An immutable table of (bucket key, row) pairs sorted by key, with a directory over top key bits.

A code's bucket key is its image under a fixed random GF(2)-linear bijection of uint64 (for
codes over 64 bits the second word's image under another one is XORed in, which makes the key a
hash). Being linear, key(a XOR b) = key(a) XOR key(b), so a probe's key is the query's key XOR
its flip mask's; being random, it spreads even skewed codes evenly over the directory's cells,
so a probe reads one directory entry and bisects a cell of a few keys.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

_WORD_BITS = 64
_BYTES_PER_WORD = 8
_KEY_SEED = 0x5EED_B175
# Cells longer than this (big buckets of skewed codes) are bisected with numpy, not as lists.
LONG_CELL = 64


def _spread_tables(seed: int) -> np.ndarray:
    """Byte tables of a random GF(2)-linear bijection of uint64, shape (8, 256).

    Output bit i (0 = most significant) is input bit i XOR a random subset of the less
    significant input bits: unit-triangular, hence invertible, and every input bit reaches the
    top (directory) bits.
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


# One linear map per code word; a code's key is the XOR of its words' images.
_TABLES = (_spread_tables(_KEY_SEED), _spread_tables(_KEY_SEED + 1))
_TABLE_INTS = tuple(table.tolist() for table in _TABLES)
_BYTE_SHIFTS = tuple(np.uint64(_WORD_BITS - 8 * (byte + 1)) for byte in range(_BYTES_PER_WORD))


def bucket_keys(words: np.ndarray) -> np.ndarray:
    """One uint64 key per code from its (n, W) words; equal codes give equal keys.

    With one word the key is a bijection of the code (equal keys ⇔ equal codes); with two it
    is a hash, so callers compare the codes of candidates.
    """
    keys = np.zeros(len(words), dtype=np.uint64)
    for w in range(min(words.shape[1], len(_TABLES))):
        for byte, shift in enumerate(_BYTE_SHIFTS):
            keys ^= _TABLES[w][byte][(words[:, w] >> shift) & np.uint64(0xFF)]
    return keys


def bucket_key(words: Sequence[int]) -> int:
    """`bucket_keys` of one code given as Python ints (no numpy call for a single query)."""
    key = 0
    for word, tables in zip(words, _TABLE_INTS, strict=False):
        for byte in range(_BYTES_PER_WORD):
            key ^= tables[byte][(word >> (_WORD_BITS - 8 * (byte + 1))) & 0xFF]
    return key


class BucketTable:
    """Rows grouped by bucket key: sorted keys, their rows, and a directory of cell starts."""

    def __init__(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Build from parallel arrays; rows with equal keys keep their given (ascending) order."""
        order = np.argsort(keys, kind="stable")
        self.keys = np.ascontiguousarray(keys[order], dtype=np.uint64)
        self.rows = np.ascontiguousarray(rows[order], dtype=np.int32)
        # About four entries per cell: a probe bisects a few keys after one directory read.
        directory_bits = min(32, max(1, len(order).bit_length() - 2))
        self._shift = _WORD_BITS - directory_bits
        cells = (self.keys >> np.uint64(self._shift)).astype(np.intp)
        counts = np.bincount(cells, minlength=1 << directory_bits)
        self.directory = np.zeros((1 << directory_bits) + 1, dtype=np.int32)
        np.cumsum(counts, out=self.directory[1:])

    @classmethod
    def empty(cls) -> BucketTable:
        """A table with no entries."""
        return cls(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int32))

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        """Memory held by the table's arrays."""
        return self.keys.nbytes + self.rows.nbytes + self.directory.nbytes

    def rows_of(self, key: int) -> list[int]:
        """Rows whose key is `key` (a Python int), in table order: one directory read and a
        bisection of the cell, in plain Python (a single bucket needs no compiled loop)."""
        if not len(self.keys):
            return []
        cell = key >> self._shift
        start, stop = int(self.directory[cell]), int(self.directory[cell + 1])
        if stop - start > LONG_CELL:  # a big bucket of skewed codes: bisect without a list
            cell_keys = self.keys[start:stop]
            first = int(np.searchsorted(cell_keys, np.uint64(key), side="left"))
            last = int(np.searchsorted(cell_keys, np.uint64(key), side="right"))
        else:
            cell_keys = self.keys[start:stop].tolist()
            first = bisect.bisect_left(cell_keys, key)
            last = bisect.bisect_right(cell_keys, key, first)
        return self.rows[start + first : start + last].tolist()

    def kernel_view(self, want: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """The table as `kernels.probe` takes it: (directory, keys, rows, want); an entry counts
        when `where[row] == want`, or always when `want` is negative."""
        return (self.directory, self.keys, self.rows, want)
