"""Rescoring: re-rank the nearest codes by a compact continuous form kept per document.

At 32 bits many documents sit at the same Hamming distance from a query, and the codes alone
cannot order them. As Qdrant's binary quantization and FAISS's refine step do, a search takes
`oversample` × k candidates from the codes, scores each by the cosine between its int8 form of
the code layer's logits (one byte per bit, `quantize`) and the query's, and returns the best k.
Cosine beat the plain dot product, the negative L2 distance and the query-weighted ("asymmetric")
Hamming score on every corpus of docs/results/quality-corpora.md. The forms come from the same
compiled encoder as the codes (`Hasher.encode_with_forms`), so a stored document and a query with
the same text get the same form.

The service keeps every document's form in memory beside its code, cut to 4 bits a value and
packed two to a byte (`docbits.index.forms`): half the memory of int8. `rescore` ranks packed
forms, so the evaluation scores what the service serves.

No torch here: the service imports `rescore` on its search path.
"""

from __future__ import annotations

import numpy as np

from docbits.index.forms import FORM_DTYPE, FORM_LEVELS, unpack_forms
from docbits.index.hamming import distance_matrix

DEFAULT_OVERSAMPLE = 4
# |logit| quantile of the training documents that maps to ±127 (larger logits are clipped).
SCALE_QUANTILE = 0.99
# Clip range for models trained before the scale was recorded in config.json.
DEFAULT_FORM_SCALE = 16.0


def form_scale(logits: np.ndarray) -> float:
    """The clip range of the int8 forms: the SCALE_QUANTILE quantile of |logit| over a model's
    training documents (1.0 when they are all zero)."""
    magnitude = float(np.quantile(np.abs(np.asarray(logits, np.float32)), SCALE_QUANTILE))
    return magnitude if magnitude > 0 else 1.0


def quantize(logits: np.ndarray, scale: float) -> np.ndarray:
    """int8 forms (n, bits) of float logits: round(127 · logit / scale), clipped to ±127.

    The sign of a nonzero form always agrees with its bit (logit > 0 ⇔ bit 1); logits smaller
    than scale / 254 in magnitude quantise to 0."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    scaled = np.rint(np.asarray(logits, np.float32) * np.float32(FORM_LEVELS / scale))
    return np.clip(scaled, -FORM_LEVELS, FORM_LEVELS).astype(FORM_DTYPE)


def form_scores(query_form: np.ndarray, candidate_forms: np.ndarray) -> np.ndarray:
    """Cosine similarity (float64 in [-1, 1], higher is closer) of each candidate's form to the
    query's; a form of all zeros scores 0. Dot products and squared norms of int8 vectors of up
    to 128 entries stay below 2^24, so float32 matmuls compute them exactly (and fast); only the
    final division rounds."""
    query = np.asarray(query_form).ravel().astype(np.float32)
    candidates = np.asarray(candidate_forms)
    if candidates.ndim != 2 or candidates.shape[1] != query.shape[0]:
        raise ValueError(f"candidate forms must be (m, {query.shape[0]}), got {candidates.shape}")
    candidates = candidates.astype(np.float32)
    dots = (candidates @ query).astype(np.float64)
    squares = np.einsum("ij,ij->i", candidates, candidates).astype(np.float64)
    norms = np.sqrt(squares * float(query @ query))
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def rescore(
    query_packed: np.ndarray, candidate_packed: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(positions, scores) of the best `k` candidates, best first, by `form_scores` of packed
    forms (`docbits.index.forms.pack_forms`): the query's (bits/2 bytes) and the candidates'
    (m, bits/2).

    Candidates come in the order the codes ranked them (Hamming distance, then the index's own
    order); equal scores keep that order, so the result is deterministic."""
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    query = unpack_forms(np.asarray(query_packed, dtype=np.uint8).reshape(1, -1))[0]
    scores = form_scores(query, unpack_forms(candidate_packed))
    order = np.argsort(-scores, kind="stable")[:k]
    return order, scores[order]


def hamming_candidates(query_code: np.ndarray, db_codes: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` database codes nearest to one packed query code, by Hamming
    distance with ties in database order (the candidates `rescore` re-ranks)."""
    distances = distance_matrix(np.asarray(query_code, dtype=np.uint8)[None, :], db_codes)[0]
    count = min(count, len(distances))
    if count == 0:
        return np.empty(0, dtype=np.int64)
    nearest = np.argpartition(distances, count - 1)[:count] if count < len(distances) else None
    if nearest is None:
        return np.argsort(distances, kind="stable")
    # argpartition does not keep ties at the boundary in database order: take every document
    # within the boundary distance, then sort stably and cut.
    boundary = distances[nearest].max()
    within = np.flatnonzero(distances <= boundary)
    return within[np.argsort(distances[within], kind="stable")][:count]
