"""Rescoring forms as the index holds them: 4 bits a value, two values a byte.

A form is the code layer's logits as int8, one value per code bit (`docbits.model.rescore`).
In memory each value is cut to ±7 and stored as a 4-bit two's complement nibble, halving the
bytes a document costs the serving process.
"""

from __future__ import annotations

import numpy as np

FORM_DTYPE = np.int8
FORM_LEVELS = 127  # an int8 form's values lie in ±127
PACKED_LEVELS = 7  # a packed form's values lie in ±7


def coarse_forms(forms: np.ndarray) -> np.ndarray:
    """int8 forms cut to ±PACKED_LEVELS (what a packed form holds), same shape, int8."""
    scaled = np.rint(np.asarray(forms, np.float32) * np.float32(PACKED_LEVELS / FORM_LEVELS))
    return scaled.astype(np.int8)


def pack_forms(forms: np.ndarray) -> np.ndarray:
    """(n, bits) int8 forms → (n, bits/2) uint8: the coarse values as 4-bit two's complement,
    two to a byte (even position in the high half). An all-zero form packs to zero bytes."""
    forms = np.asarray(forms)
    if forms.dtype != FORM_DTYPE or forms.ndim != 2 or forms.shape[1] % 2:
        raise ValueError(f"forms must be int8 (n, even bits), got {forms.dtype} {forms.shape}")
    nibbles = coarse_forms(forms).view(np.uint8) & 0x0F
    return (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]


def unpack_forms(packed: np.ndarray) -> np.ndarray:
    """(n, bits/2) packed forms → (n, bits) int8 values in ±PACKED_LEVELS."""
    packed = np.asarray(packed, dtype=np.uint8)
    return np.take(_BYTE_VALUES, packed, axis=0).reshape(packed.shape[0], 2 * packed.shape[1])


def _signed_nibble(nibble: int) -> int:
    return nibble - 16 if nibble > PACKED_LEVELS else nibble


# The two values of every possible byte: unpacking is one table lookup.
_BYTE_VALUES = np.array(
    [[_signed_nibble(byte >> 4), _signed_nibble(byte & 0x0F)] for byte in range(256)],
    dtype=np.int8,
)
