"""The probe kernel of one query, called with the index's arrays as one block of addresses.

A small ball's whole answer takes a few microseconds of probing, but calling a numba kernel costs
about a microsecond per array argument once the caches are cold (each is checked and wrapped),
and the hash index's tables are eleven arrays. Here they travel as one int64 array of addresses
and lengths (`layout_of`), rebuilt by every write, and the kernel is called through an entry
point bound once (`bound_probe_one`), so numba does not type the arguments per call either.

The addresses are only valid while the arrays they point to are alive and unchanged in size:
`HashIndex` rebuilds the layout under its write lock whenever it replaces an array, and reads it
only under its read lock.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
from numba import carray, njit, types
from numba.extending import intrinsic

from docbits.index.kernels import CONFIRM_EACH, entry_point, probe_words

# Field positions in a layout: per table (main, delta) its directory, tags, rows and mixed runs
# addresses, directory length, entry count, mixed runs count and `want`; then `where`, `words`.
_TABLE_FIELDS = 8
_WHERE = 2 * _TABLE_FIELDS
_WORDS = _WHERE + 2
LAYOUT_SIZE = _WORDS + 3


def layout_of(tables: tuple, where: np.ndarray, words: np.ndarray) -> np.ndarray:
    """The int64 address block of two `BucketTable.kernel_view`s, `where` and (W, n) `words`."""
    layout = np.zeros(LAYOUT_SIZE, dtype=np.int64)
    for t, (directory, tags, rows, mixed, want) in enumerate(tables):
        for array in (directory, tags, rows, mixed):
            if not array.flags.c_contiguous:
                raise ValueError("kernel arrays must be C-contiguous")
        base = t * _TABLE_FIELDS
        layout[base : base + _TABLE_FIELDS] = (
            directory.ctypes.data,
            tags.ctypes.data,
            rows.ctypes.data,
            mixed.ctypes.data,
            len(directory),
            len(rows),
            len(mixed),
            want,
        )
    layout[_WHERE : _WHERE + 2] = (where.ctypes.data, len(where))
    layout[_WORDS : _WORDS + 3] = (words.ctypes.data, *words.shape)
    return layout


@intrinsic
def _pointer(typingctx: object, address: types.Integer) -> tuple:
    """An integer address as a void pointer, for `numba.carray`."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))

    return types.voidptr(address), codegen


@njit(cache=True, nogil=True)
def _table(layout: np.ndarray, t: int) -> tuple:
    """Table t of a layout as (directory, tags, rows, mixed runs, want)."""
    base = t * _TABLE_FIELDS
    directory = carray(_pointer(layout[base]), layout[base + 4], np.int32)
    tags = carray(_pointer(layout[base + 1]), layout[base + 5], np.uint32)
    rows = carray(_pointer(layout[base + 2]), layout[base + 5], np.int32)
    mixed = carray(_pointer(layout[base + 3]), layout[base + 6], np.int32)
    return directory, tags, rows, mixed, layout[base + 7]


@njit(cache=True, nogil=True)
def probe_one(
    first_word: np.uint64,
    second_word: np.uint64,
    masks: np.ndarray,
    layout: np.ndarray,
    word_dtype: type,
    confirm: int,
    found: np.ndarray,
) -> tuple[int, np.ndarray]:
    """The (distance << 32 | row) hits of one query given as its first two code words (the
    second ignored for one-word codes): (count, array holding them first).

    The hits go to the caller's `found` (int64), returned as is unless it was too small:
    boxing a new result array costs more than the probing of a small ball.
    """
    tables = (_table(layout, 0), _table(layout, 1))
    where = carray(_pointer(layout[_WHERE]), layout[_WHERE + 1], np.uint8)
    words = carray(_pointer(layout[_WORDS]), (layout[_WORDS + 1], layout[_WORDS + 2]), word_dtype)
    query_words = np.empty((1, masks.shape[1] - 2), dtype=np.uint64)
    query_words[0, 0] = first_word
    if query_words.shape[1] > 1:
        query_words[0, 1] = second_word
    offsets, found = probe_words(query_words, masks, tables, where, words, confirm, found)
    return offsets[1], found


@lru_cache(maxsize=2)
def bound_probe_one(word_dtype: type) -> Callable:
    """`probe_one`'s entry point for codes stored as `word_dtype`; the masks must be read-only
    C-contiguous (P, 2 + W) uint64 arrays, and every other argument's type is as in `probe_one`."""
    masks = np.zeros((1, 3), dtype=np.uint64)
    masks.setflags(write=False)
    return entry_point(
        probe_one,
        np.uint64(0),
        np.uint64(0),
        masks,
        np.zeros(LAYOUT_SIZE, dtype=np.int64),
        word_dtype,
        CONFIRM_EACH,
        np.zeros(1, dtype=np.int64),
    )
