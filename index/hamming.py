"""Hamming geometry on uint64 words: popcount distances and the flip masks of a Hamming ball."""

from __future__ import annotations

import itertools
from functools import lru_cache
from math import comb

import numpy as np

from docbits.index.codes import WORD_BITS, validate_bits, words_per_code

SCAN_CHUNK = 1 << 17


def hamming_distances(words: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Distances (uint8) from one query (W,) to every code of word-major `words` (W, n).

    Works through cache-sized chunks with one reused scratch buffer instead of allocating
    (and page-faulting) full-size temporaries.
    """
    num_words, n = words.shape
    distances = np.empty(n, dtype=np.uint8)
    scratch = np.empty(min(n, SCAN_CHUNK), dtype=np.uint64)
    partial = np.empty(min(n, SCAN_CHUNK), dtype=np.uint8) if num_words > 1 else None
    for start in range(0, n, SCAN_CHUNK):
        stop = min(start + SCAN_CHUNK, n)
        size = stop - start
        np.bitwise_xor(words[0, start:stop], query[0], out=scratch[:size])
        np.bitwise_count(scratch[:size], out=distances[start:stop])
        for w in range(1, num_words):
            np.bitwise_xor(words[w, start:stop], query[w], out=scratch[:size])
            np.bitwise_count(scratch[:size], out=partial[:size])
            distances[start:stop] += partial[:size]
    return distances


def pairwise_distances(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Row-wise distances between two (n, W) word arrays of the same shape."""
    return np.bitwise_count(left ^ right).sum(axis=1, dtype=np.int64)


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


def ball_masks(bits: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the whole ball of `radius` (shells 0..radius in order) and each mask's weight."""
    return shell_range_masks(bits, 0, radius)


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
