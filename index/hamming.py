"""Hamming geometry: distances between packed codes, and the flip masks of a Hamming ball."""

from __future__ import annotations

import itertools
from functools import lru_cache
from math import comb

import numpy as np

from docbits.index.codes import WORD_BITS, codes_to_words, validate_bits, words_per_code
from docbits.index.kernels import distances

_NO_ROWS = np.zeros(0, dtype=np.int64)


def distance_matrix(query_codes: np.ndarray, db_codes: np.ndarray) -> np.ndarray:
    """Hamming distances (nq, ndb) int32 between packed uint8 codes (n, b/8) of equal length.

    One compiled scan of the database per query (`kernels.distances`, the index's own).
    """
    query_codes, db_codes = np.asarray(query_codes), np.asarray(db_codes)
    for name, codes in (("query_codes", query_codes), ("db_codes", db_codes)):
        if codes.dtype != np.uint8 or codes.ndim != 2:
            raise ValueError(
                f"{name} must be a uint8 array (n, b/8), got {codes.dtype} {codes.shape}"
            )
    if query_codes.shape[1] != db_codes.shape[1]:
        raise ValueError(
            f"query codes have {8 * query_codes.shape[1]} bits, database codes "
            f"{8 * db_codes.shape[1]}"
        )
    db_words = np.ascontiguousarray(codes_to_words(db_codes).T)
    query_words = codes_to_words(query_codes)
    result = np.empty((len(query_words), len(db_codes)), dtype=np.int32)
    for row, query in enumerate(query_words):
        result[row] = distances(db_words, query, _NO_ROWS)
    return result


def ball_size(bits: int, radius: int) -> int:
    """Number of codes within Hamming distance `radius` of a `bits`-bit code."""
    return sum(comb(bits, r) for r in range(min(radius, bits) + 1))


@lru_cache(maxsize=64)
def shell_masks(bits: int, radius: int) -> np.ndarray:
    """All (C(bits, radius), W) uint64 masks with exactly `radius` of the `bits` code bits set.

    Cached per (bits, radius) and read-only; masks come in lexicographic order of flipped positions.
    """
    validate_bits(bits)
    num_words = words_per_code(bits)
    if radius < 0 or radius > bits:
        masks = np.zeros((0, num_words), dtype=np.uint64)
    elif radius == 0:
        masks = np.zeros((1, num_words), dtype=np.uint64)
    else:
        flat = itertools.chain.from_iterable(itertools.combinations(range(bits), radius))
        positions = np.fromiter(flat, dtype=np.int64, count=comb(bits, radius) * radius)
        positions = positions.reshape(-1, radius)
        masks = np.zeros((len(positions), num_words), dtype=np.uint64)
        single = np.left_shift(
            np.uint64(1), (WORD_BITS - 1 - positions % WORD_BITS).astype(np.uint64)
        )
        word_of = positions // WORD_BITS
        for w in range(num_words):
            masks[:, w] = np.bitwise_or.reduce(np.where(word_of == w, single, np.uint64(0)), axis=1)
    masks.setflags(write=False)
    return masks


@lru_cache(maxsize=64)
def shell_range_masks(bits: int, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of shells first..last (in order) and each mask's weight; cached, read-only."""
    shells = [shell_masks(bits, r) for r in range(first, min(last, bits) + 1)]
    masks = np.concatenate(shells)
    weights = np.repeat(
        np.arange(first, first + len(shells), dtype=np.uint8), [len(s) for s in shells]
    )
    masks.setflags(write=False)
    weights.setflags(write=False)
    return masks, weights
