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

# Longer cells (big buckets of skewed codes) are searched by bisection on their sorted tags.
LONG_CELL = 32
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
# The same tables as one read-only (2, 8, 256) array, for the compiled probe loop.
KEY_TABLES = np.stack(_TABLES)
KEY_TABLES.setflags(write=False)
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
    """Rows grouped by bucket key; a key's candidates are the rows in its cell with an equal tag."""

    def __init__(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Build from parallel arrays; rows with equal keys keep their given (ascending) order."""
        order = np.argsort(keys, kind="stable")
        self._size = len(order)
        # About four entries per cell: a probe reads a few tags, and the directory costs 1 B/entry.
        directory_bits = min(32, max(1, self._size.bit_length() - 2))
        self._shift = np.uint64(64 - directory_bits)
        sorted_keys = keys[order]
        self.tags = (sorted_keys >> np.uint64(32)).astype(np.uint32)
        # Positions (ascending) of the first entry of each run of equal tags that holds more
        # than one key: rare (two of n keys share their top 32 bits), but then a run's entries
        # are not all one code.
        mixed = np.flatnonzero(
            (self.tags[1:] == self.tags[:-1]) & (sorted_keys[1:] != sorted_keys[:-1])
        )
        run_starts = np.flatnonzero(np.r_[True, self.tags[1:] != self.tags[:-1]])
        first_of_run = run_starts[np.searchsorted(run_starts, mixed + 1, side="right") - 1]
        self.mixed_runs = np.unique(first_of_run).astype(np.int32)
        self.rows = np.ascontiguousarray(rows[order], dtype=np.int32)
        cells = (sorted_keys >> self._shift).astype(np.intp)
        counts = np.bincount(cells, minlength=1 << directory_bits)
        self._directory = np.zeros((1 << directory_bits) + 1, dtype=np.int32)
        np.cumsum(counts, out=self._directory[1:])

    @classmethod
    def empty(cls) -> BucketTable:
        """A table with no entries."""
        return cls(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int32))

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Memory held by the table's arrays."""
        return self.tags.nbytes + self.rows.nbytes + self._directory.nbytes + self.mixed_runs.nbytes

    def kernel_view(self, want: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """The table as `kernels.probe_balls` takes it: (directory, tags, rows, mixed runs, want);
        an entry counts when `where[row] == want`, or always when `want` is negative."""
        return (self._directory, self.tags, self.rows, self.mixed_runs, want)

    def lookup_one(self, key: int) -> list[int]:
        """Rows whose cell and tag equal those of `key` (a Python int), in table order."""
        cell = key >> int(self._shift)
        tag = key >> 32
        start, stop = int(self._directory[cell]), int(self._directory[cell + 1])
        if stop - start > LONG_CELL:
            tags = self.tags[start:stop]
            first = start + int(np.searchsorted(tags, np.uint32(tag), side="left"))
            last = start + int(np.searchsorted(tags, np.uint32(tag), side="right"))
            return self.rows[first:last].tolist()
        tags = self.tags[start:stop].tolist()
        rows = self.rows[start:stop].tolist()
        return [row for row, other in zip(rows, tags, strict=True) if other == tag]
