"""Code conversions, popcount distances and flip masks."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docbits.index.codes import (
    code_to_hex,
    codes_to_words,
    hex_to_code,
    validate_bits,
    words_to_codes,
)
from docbits.index.hamming import distance_matrix, shell_masks, shell_range_masks


@pytest.mark.parametrize("bits", [8, 16, 64, 72, 128])
def test_valid_bits(bits: int) -> None:
    """Multiples of 8 in 8..128 are accepted."""
    assert validate_bits(bits) == bits


@pytest.mark.parametrize("bits", [0, 4, 12, 136, 256, -8, True, 8.0])
def test_invalid_bits(bits: object) -> None:
    """Anything else is a ValueError."""
    with pytest.raises(ValueError, match=r"multiple of 8|integer"):
        validate_bits(bits)


def test_hex_round_trip_and_errors() -> None:
    """Lowercase hex out; wrong length and non-hex characters are named in the error."""
    assert code_to_hex(b"\x0a\xff") == "0aff"
    assert hex_to_code("0AfF", 16) == b"\x0a\xff"
    with pytest.raises(ValueError, match="4 hex characters for a 16-bit code, got 3"):
        hex_to_code("0af", 16)
    with pytest.raises(ValueError, match=r"only hex digits.*'g'"):
        hex_to_code("0agf", 16)
    with pytest.raises(ValueError, match="hex string"):
        hex_to_code(b"0aff", 16)


@settings(max_examples=50, deadline=None)
@given(bits=st.sampled_from([8, 24, 64, 72, 128]), data=st.data())
def test_words_follow_the_packbits_convention(bits: int, data: st.DataObject) -> None:
    """Bit i of np.packbits is bit 63 - i % 64 of word i // 64; conversions invert each other."""
    raw = data.draw(st.lists(st.booleans(), min_size=bits, max_size=bits))
    bit_array = np.array([raw], dtype=np.uint8)
    codes = np.packbits(bit_array, axis=1)
    words = codes_to_words(codes)
    for i, bit in enumerate(raw):
        assert (int(words[0, i // 64]) >> (63 - i % 64)) & 1 == bit
    assert np.array_equal(words_to_codes(words, bits), codes)


@settings(max_examples=50, deadline=None)
@given(bits=st.sampled_from([8, 64, 128]), data=st.data())
def test_distance_matrix_matches_python_popcount(bits: int, data: st.DataObject) -> None:
    """Compiled distances equal int.bit_count of the XOR, for every query and code."""
    values = data.draw(st.lists(st.integers(0, 2**bits - 1), min_size=1, max_size=10))
    queries = data.draw(st.lists(st.integers(0, 2**bits - 1), min_size=1, max_size=3))

    def packed(ints: list[int]) -> np.ndarray:
        return np.array([list(v.to_bytes(bits // 8, "big")) for v in ints], dtype=np.uint8)

    got = distance_matrix(packed(queries), packed(values))
    assert got.tolist() == [[(v ^ q).bit_count() for v in values] for q in queries]


@pytest.mark.parametrize(("bits", "radius"), [(8, 0), (8, 3), (16, 2), (64, 2), (72, 2), (128, 2)])
def test_shell_masks_are_all_distinct_codes_of_that_weight(bits: int, radius: int) -> None:
    """C(bits, r) distinct masks, each with r set bits, none outside the code's bits."""
    masks = shell_masks(bits, radius)
    assert masks.shape == (comb(bits, radius), (bits + 63) // 64)
    assert np.all(np.bitwise_count(masks).sum(axis=1) == radius)
    assert len(np.unique(masks, axis=0)) == len(masks)
    codes = words_to_codes(masks, bits)
    assert np.all(np.bitwise_count(codes).sum(axis=1) == radius)
    all_masks, weights = shell_range_masks(bits, 0, radius)
    assert len(all_masks) == sum(comb(bits, r) for r in range(radius + 1))
    assert np.array_equal(np.bitwise_count(all_masks).sum(axis=1), weights)
