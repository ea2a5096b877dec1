"""`TermTable`: vocabulary lookups and term counting for ASCII texts in compiled code.

Featurizing a query in Python (regex, a dict lookup per token, `np.unique`) holds the GIL, while
the service's event loop needs the GIL to answer other requests. For ASCII texts
(most queries) this does the same work in one numba call that releases the GIL: lower-case,
split into tokens exactly as `featurizer.TOKEN_PATTERN` does (on ASCII, `\\w` is `[A-Za-z0-9_]`
and lower-casing changes only A-Z), look each token up in an open-addressing table of the
vocabulary's ASCII terms (FNV-1a hashes), and count the columns. Texts with other characters
take the Python path, whose Unicode rules the table does not try to copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
EMPTY = -1


@njit(cache=True, nogil=True, inline="always")
def _fnv1a(data: np.ndarray, start: int, end: int) -> np.uint64:
    """64-bit FNV-1a hash of data[start:end] (bytes already lower-cased)."""
    value = _FNV_OFFSET
    for position in range(start, end):
        value = (value ^ np.uint64(data[position])) * _FNV_PRIME
    return value


@njit(cache=True, nogil=True)
def _fill_slots(chars: np.ndarray, starts: np.ndarray, slots: np.ndarray) -> None:
    """Place term i (chars[starts[i]:starts[i+1]]) in the first free slot of its probe run."""
    mask = np.uint64(slots.shape[0] - 1)
    for term in range(starts.shape[0] - 1):
        slot = _fnv1a(chars, starts[term], starts[term + 1]) & mask
        while slots[slot] != EMPTY:
            slot = (slot + np.uint64(1)) & mask
        slots[slot] = term


@njit(cache=True, nogil=True, inline="always")
def _find(
    data: np.ndarray,
    start: int,
    end: int,
    chars: np.ndarray,
    starts: np.ndarray,
    slots: np.ndarray,
) -> int:
    """The term index of data[start:end], or EMPTY when it is not in the table."""
    mask = np.uint64(slots.shape[0] - 1)
    slot = _fnv1a(data, start, end) & mask
    length = end - start
    while True:
        term = slots[slot]
        if term == EMPTY:
            return EMPTY
        term_start = starts[term]
        if starts[term + 1] - term_start == length:
            same = True
            for offset in range(length):
                if chars[term_start + offset] != data[start + offset]:
                    same = False
                    break
            if same:
                return term
        slot = (slot + np.uint64(1)) & mask


@njit(cache=True, nogil=True)
def count_terms(
    data: np.ndarray,
    text_starts: np.ndarray,
    chars: np.ndarray,
    starts: np.ndarray,
    columns: np.ndarray,
    slots: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, sorted columns, counts) of the ASCII texts data[text_starts[i]:text_starts[i+1]].

    `data` is modified: A-Z become a-z. A token is a maximal run of [a-z0-9_] of 2+ bytes.
    """
    texts = text_starts.shape[0] - 1
    for position in range(data.shape[0]):
        byte = data[position]
        if 65 <= byte <= 90:
            data[position] = byte + 32
    found = np.empty(data.shape[0] // 3 + texts + 1, dtype=np.int64)
    indptr = np.zeros(texts + 1, dtype=np.int64)
    counts = np.empty_like(found)
    written = 0
    for text in range(texts):
        first_found = written
        position = text_starts[text]
        end = text_starts[text + 1]
        while position < end:
            byte = data[position]
            if not (97 <= byte <= 122 or 48 <= byte <= 57 or byte == 95):
                position += 1
                continue
            token_start = position
            while position < end:
                byte = data[position]
                if not (97 <= byte <= 122 or 48 <= byte <= 57 or byte == 95):
                    break
                position += 1
            if position - token_start >= 2:
                term = _find(data, token_start, position, chars, starts, slots)
                if term != EMPTY:
                    found[written] = columns[term]
                    written += 1
        found[first_found:written].sort()
        distinct = first_found
        for index in range(first_found, written):
            if distinct > first_found and found[distinct - 1] == found[index]:
                counts[distinct - 1] += 1
            else:
                found[distinct] = found[index]
                counts[distinct] = 1
                distinct += 1
        written = distinct
        indptr[text + 1] = written
    return indptr, found[:written].copy(), counts[:written].copy()


class TermTable:
    """The vocabulary's ASCII terms in flat arrays, probed by `count_terms`."""

    def __init__(self, term_index: dict[str, int]) -> None:
        """Build the table from term → column (terms with non-ASCII characters are left out:
        only texts routed here, all ASCII, are looked up in it)."""
        terms = [term for term in term_index if term.isascii()]
        encoded = [term.encode("ascii") for term in terms]
        self.starts = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(term) for term in encoded], out=self.starts[1:])
        self.chars = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        self.columns = np.array([term_index[term] for term in terms], dtype=np.int64)
        size = 1 << max(4, (2 * len(terms)).bit_length())  # at most half full
        self.slots = np.full(size, EMPTY, dtype=np.int64)
        _fill_slots(self.chars, self.starts, self.slots)

    def count(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indptr, sorted columns, counts) of ASCII `texts`, as CSR rows."""
        encoded = [text.encode("ascii") for text in texts]
        text_starts = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(text) for text in encoded], out=text_starts[1:])
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        return count_terms(data, text_starts, self.chars, self.starts, self.columns, self.slots)


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels now rather than on the first search."""
    TermTable({"ab": 0}).count(["AB ab x"])
