"""Packed rescoring forms: int8 values cut to ±7, two 4-bit values a byte."""

from __future__ import annotations

import numpy as np
import pytest

from docbits.index.forms import PACKED_LEVELS, coarse_forms, pack_forms, unpack_forms


def test_coarse_forms_round_to_the_nearest_of_fifteen_levels() -> None:
    forms = np.array([[0, 9, 10, -10, 127, -127, 64, -64]], dtype=np.int8)
    assert coarse_forms(forms).tolist() == [[0, 0, 1, -1, 7, -7, 4, -4]]


def test_pack_then_unpack_gives_the_coarse_values_back() -> None:
    rng = np.random.default_rng(0)
    forms = rng.integers(-127, 128, size=(50, 64)).astype(np.int8)
    packed = pack_forms(forms)
    assert packed.dtype == np.uint8 and packed.shape == (50, 32)
    np.testing.assert_array_equal(unpack_forms(packed), coarse_forms(forms))
    assert np.abs(unpack_forms(packed)).max() == PACKED_LEVELS
    assert not pack_forms(np.zeros((2, 8), np.int8)).any()  # no form packs to zeros


def test_each_byte_holds_the_even_value_high_and_the_odd_value_low() -> None:
    assert pack_forms(np.array([[127, -127]], dtype=np.int8)).tolist() == [[0x79]]


def test_pack_refuses_other_types_and_odd_widths() -> None:
    with pytest.raises(ValueError, match="int8"):
        pack_forms(np.zeros((1, 8), np.uint8))
    with pytest.raises(ValueError, match="even"):
        pack_forms(np.zeros((1, 7), np.int8))
