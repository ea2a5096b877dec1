"""Code conversions: packed bytes ↔ lowercase hex ↔ big-endian uint64 words."""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_BITS = 8
MAX_BITS = 128
WORD_BITS = 64


def validate_bits(bits: int) -> int:
    """Return `bits` when it is a multiple of 8 in 8..128, else raise ValueError."""
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer):
        raise ValueError(f"code length must be an integer number of bits, got {bits!r}")
    if bits < MIN_BITS or bits > MAX_BITS or bits % 8:
        raise ValueError(
            f"code length must be a multiple of 8 in {MIN_BITS}..{MAX_BITS}, got {bits}"
        )
    return int(bits)


def words_per_code(bits: int) -> int:
    """Number of uint64 words that hold one code of `bits` bits."""
    return (validate_bits(bits) + WORD_BITS - 1) // WORD_BITS


def code_to_hex(code: bytes) -> str:
    """Canonical API form of a code: lowercase hex, two characters per byte."""
    return bytes(code).hex()


def hex_to_code(text: str, bits: int) -> bytes:
    """Parse the API hex form of a `bits`-bit code; ValueError naming what is wrong."""
    validate_bits(bits)
    if not isinstance(text, str):
        raise ValueError(f"code must be a hex string, got {type(text).__name__}")
    expected = bits // 4
    if len(text) != expected:
        raise ValueError(
            f"code must be {expected} hex characters for a {bits}-bit code, got {len(text)}"
        )
    try:
        return bytes.fromhex(text)
    except ValueError:
        bad = next((ch for ch in text if ch not in "0123456789abcdefABCDEF"), "?")
        raise ValueError(f"code must contain only hex digits 0-9a-f, found {bad!r}") from None


def as_code_array(codes: np.ndarray, bits: int) -> np.ndarray:
    """Check a batch of packed codes: uint8 of shape (n, bits/8); returns it C-contiguous."""
    array = np.asarray(codes)
    if array.dtype != np.uint8 or array.ndim != 2 or array.shape[1] != bits // 8:
        raise ValueError(
            f"codes must be a uint8 array of shape (n, {bits // 8}) for {bits}-bit codes, "
            f"got {array.dtype} {array.shape}"
        )
    return np.ascontiguousarray(array)


def codes_to_words(codes: np.ndarray) -> np.ndarray:
    """Pack (n, b/8) uint8 codes into (n, ceil(b/64)) uint64 words, big-endian, zero-padded.

    Word w holds bytes 8w..8w+7 with the first byte most significant, so numeric order of words is
    the byte order of the codes and bit i of the code is bit 63 - i % 64 of word i // 64.
    """
    array = np.asarray(codes, dtype=np.uint8)
    if array.ndim != 2:
        raise ValueError(f"codes must be a 2-D uint8 array, got shape {array.shape}")
    n, width = array.shape
    num_words = max(1, (width + 7) // 8)
    padded = np.zeros((n, num_words * 8), dtype=np.uint8)
    padded[:, :width] = array
    return padded.view(">u8").astype(np.uint64)


def words_to_codes(words: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of `codes_to_words`: (n, W) uint64 words back to (n, bits/8) uint8 codes."""
    array = np.ascontiguousarray(np.asarray(words, dtype=np.uint64))
    if array.ndim != 2:
        raise ValueError(f"words must be a 2-D uint64 array, got shape {array.shape}")
    big_endian = array.astype(">u8").view(np.uint8).reshape(len(array), array.shape[1] * 8)
    return big_endian[:, : bits // 8].copy()


def bucket_statistics(codes: np.ndarray) -> dict[str, Any]:
    """How packed (n, b/8) codes spread over buckets (one per distinct code) and how balanced
    their bits are: is the hash table usable? `histogram` maps bucket size → bucket count;
    `entropy_bits` is the entropy of the code distribution, at most `max_entropy_bits`."""
    codes = np.asarray(codes)
    if codes.dtype != np.uint8 or codes.ndim != 2:
        raise ValueError(f"codes must be a uint8 array (n, b/8), got {codes.dtype} {codes.shape}")
    n = len(codes)
    sizes = np.unique(codes, axis=0, return_counts=True)[1] if n else np.zeros(0, np.int64)
    shares = sizes / max(n, 1)
    bit_means = np.unpackbits(codes, axis=1).mean(axis=0) if n else np.zeros(codes.shape[1] * 8)
    size_values, bucket_counts = np.unique(sizes, return_counts=True)
    return {
        "documents": n,
        "distinct_codes": len(sizes),
        "largest_bucket": int(sizes.max(initial=0)),
        "singleton_buckets": int((sizes == 1).sum()),
        "mean_bucket_size": float(n / len(sizes)) if n else 0.0,
        "entropy_bits": float(-(shares * np.log2(shares)).sum()),
        "max_entropy_bits": float(np.log2(n)) if n else 0.0,
        "mean_bit_on_rate": float(bit_means.mean()) if n else 0.0,
        "bit_mean_min": float(bit_means.min(initial=1.0)),
        "bit_mean_max": float(bit_means.max(initial=0.0)),
        "constant_bits": int(((bit_means == 0) | (bit_means == 1)).sum()) if n else 0,
        "histogram": dict(zip(size_values.tolist(), bucket_counts.tolist(), strict=True)),
    }
