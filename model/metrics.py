"""Retrieval quality of binary codes: precision@k and Hamming-ball lookup quality.

Codes are uint8 arrays `(n, b/8)` from `np.packbits`. A database document is relevant to a query
when the two share at least one label. Distances are computed a block of queries at a time so that
memory stays bounded (about `BLOCK_ELEMENTS` distances per block) whatever the corpus size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import scipy.sparse as sp

from docbits.index.hamming import distance_matrix

Labels = Sequence[Sequence[str]]
BLOCK_ELEMENTS = 1 << 23


def precision_at_k(
    query_codes: np.ndarray,
    db_codes: np.ndarray,
    query_labels: Labels,
    db_labels: Labels,
    k: int = 100,
) -> dict[str, float]:
    """Mean precision of the k nearest codes, tie-aware and in index order.

    `tie_aware`: documents strictly closer than the k-th neighbour's distance count fully; the
    documents tied at that distance count in proportion (slots left / number tied), so no random
    tie-break is needed. `index_order`: a stable sort by distance, ties broken by database order.
    k is capped at the database size.
    """
    query_matrix, db_matrix = _label_matrices(query_labels, db_labels)
    _check_lengths(query_codes, query_matrix, db_codes, db_matrix)
    totals = np.zeros(2)
    for start, stop in _blocks(len(query_codes), len(db_codes)):
        distances = distance_matrix(query_codes[start:stop], db_codes)
        relevant = _relevance(query_matrix[start:stop], db_matrix)
        totals += _ranked_precision_sums(distances, relevant, k)
    return _precision_dict(totals, len(query_codes))


def precision_at_k_scores(
    query_vectors: np.ndarray | sp.spmatrix,
    db_vectors: np.ndarray | sp.spmatrix,
    query_labels: Labels,
    db_labels: Labels,
    k: int = 100,
) -> dict[str, float]:
    """Precision@k of real-valued retrieval ranked by dot-product score (cosine for unit rows).

    Same definitions as `precision_at_k`, with higher scores ranking first.
    """
    _check_lengths(query_vectors, np.empty(len(query_labels)), db_vectors, np.empty(len(db_labels)))
    db_transposed = db_vectors.T

    def score_rows(start: int, stop: int) -> np.ndarray:
        scores = query_vectors[start:stop] @ db_transposed
        return scores.toarray() if sp.issparse(scores) else np.asarray(scores)

    return precision_at_k_scored(score_rows, query_labels, db_labels, k)


def precision_at_k_scored(
    score_rows: Callable[[int, int], np.ndarray],
    query_labels: Labels,
    db_labels: Labels,
    k: int = 100,
) -> dict[str, float]:
    """Precision@k of any scored retrieval: `score_rows(start, stop)` gives the dense scores
    (stop - start, n_db) of those queries against every database document, higher first.

    Same definitions as `precision_at_k` (tie-aware and index order).
    """
    query_matrix, db_matrix = _label_matrices(query_labels, db_labels)
    totals = np.zeros(2)
    for start, stop in _blocks(len(query_matrix), len(db_matrix)):
        scores = np.asarray(score_rows(start, stop))
        if scores.shape != (stop - start, len(db_matrix)):
            raise ValueError(
                f"score_rows gave {scores.shape}, expected {(stop - start, len(db_matrix))}"
            )
        relevant = _relevance(query_matrix[start:stop], db_matrix)
        totals += _ranked_precision_sums(-scores, relevant, k)
    return _precision_dict(totals, len(query_matrix))


def precision_of_rankings(
    rankings: Sequence[Sequence[int]], query_labels: Labels, db_labels: Labels, k: int = 100
) -> float:
    """Mean precision@k of explicit rankings: row q lists database indices, best first (at most
    k are read; a short list counts its missing slots as misses)."""
    query_matrix, db_matrix = _label_matrices(query_labels, db_labels)
    if len(rankings) != len(query_matrix):
        raise ValueError(f"{len(rankings)} rankings for {len(query_matrix)} queries")
    k = min(k, len(db_matrix))
    hits = [
        float((db_matrix[np.asarray(ranking[:k], dtype=np.int64)] @ query_matrix[q] > 0).sum())
        for q, ranking in enumerate(rankings)
    ]
    return float(np.mean(hits) / k) if hits else float("nan")


def hamming_ball_quality(
    query_codes: np.ndarray,
    db_codes: np.ndarray,
    query_labels: Labels,
    db_labels: Labels,
    radii: Sequence[int] = (0, 1, 2),
) -> dict[int, dict[str, float]]:
    """Quality of hash-table lookup: for each radius, what the Hamming ball around a query holds.

    Per radius: `precision` (mean over all queries, an empty ball counting as precision 0),
    `precision_nonempty` (mean over queries whose ball is not empty; NaN when every ball is empty),
    `recall` (share of the query's relevant documents inside the ball, averaged over queries
    that have any relevant document), `empty_share` and `mean_candidates` (ball size).
    """
    query_matrix, db_matrix = _label_matrices(query_labels, db_labels)
    _check_lengths(query_codes, query_matrix, db_codes, db_matrix)
    n_queries = len(query_codes)
    candidates = np.zeros((len(radii), n_queries))
    hits = np.zeros((len(radii), n_queries))
    relevant_total = np.zeros(n_queries)
    for start, stop in _blocks(n_queries, len(db_codes)):
        distances = distance_matrix(query_codes[start:stop], db_codes)
        relevant = _relevance(query_matrix[start:stop], db_matrix)
        relevant_total[start:stop] = relevant.sum(axis=1)
        for row, radius in enumerate(radii):
            inside = distances <= radius
            candidates[row, start:stop] = inside.sum(axis=1)
            hits[row, start:stop] = (inside & relevant).sum(axis=1)
    has_relevant = relevant_total > 0
    results: dict[int, dict[str, float]] = {}
    for row, radius in enumerate(radii):
        nonempty = candidates[row] > 0
        precision = np.divide(hits[row], candidates[row], out=np.zeros(n_queries), where=nonempty)
        recall = hits[row][has_relevant] / relevant_total[has_relevant]
        results[int(radius)] = {
            "precision": _mean(precision),
            "precision_nonempty": _mean(precision[nonempty]),
            "recall": _mean(recall),
            "empty_share": _mean(~nonempty),
            "mean_candidates": _mean(candidates[row]),
        }
    return results


def _ranked_precision_sums(distances: np.ndarray, relevant: np.ndarray, k: int) -> np.ndarray:
    """Summed tie-aware and index-order precision@k of a block of queries (rows)."""
    k = min(k, distances.shape[1])
    if k < 1:
        raise ValueError("precision@k needs k >= 1 and a non-empty database")
    kth = np.partition(distances, k - 1, axis=1)[:, k - 1 : k]
    closer = distances < kth
    tied = distances == kth
    slots = k - closer.sum(axis=1)
    relevant_closer = (closer & relevant).sum(axis=1)
    relevant_tied = (tied & relevant).sum(axis=1)
    tie_aware = (relevant_closer + relevant_tied * slots / tied.sum(axis=1)) / k
    first_tied = tied & (np.cumsum(tied, axis=1) <= slots[:, None])
    index_order = (relevant_closer + (first_tied & relevant).sum(axis=1)) / k
    return np.array([tie_aware.sum(), index_order.sum()])


def _precision_dict(totals: np.ndarray, n_queries: int) -> dict[str, float]:
    """Turn summed precisions into the public {tie_aware, index_order} means."""
    if n_queries == 0:
        raise ValueError("precision@k needs at least one query")
    return {"tie_aware": float(totals[0] / n_queries), "index_order": float(totals[1] / n_queries)}


def _label_matrices(query_labels: Labels, db_labels: Labels) -> tuple[np.ndarray, np.ndarray]:
    """One-hot label matrices (float32) over the labels seen on either side."""
    if isinstance(query_labels, str) or isinstance(db_labels, str):
        raise ValueError("labels must be a sequence of label sequences, not a string")
    names = sorted({label for labels in (*query_labels, *db_labels) for label in labels})
    column = {name: i for i, name in enumerate(names)}

    def one_hot(label_lists: Labels) -> np.ndarray:
        matrix = np.zeros((len(label_lists), len(names)), dtype=np.float32)
        for row, labels in enumerate(label_lists):
            matrix[row, [column[label] for label in labels]] = 1.0
        return matrix

    return one_hot(query_labels), one_hot(db_labels)


def _relevance(query_label_block: np.ndarray, db_label_matrix: np.ndarray) -> np.ndarray:
    """Boolean (queries, database) matrix: True where the two share a label."""
    return (query_label_block @ db_label_matrix.T) > 0


def _check_lengths(
    queries: object, query_labels: np.ndarray, db: object, db_labels: np.ndarray
) -> None:
    """Refuse label lists that do not line up with the codes or vectors they describe."""
    for name, items, labels in (("query", queries, query_labels), ("database", db, db_labels)):
        n_items = items.shape[0]  # type: ignore[attr-defined]
        if n_items != len(labels):
            raise ValueError(f"{n_items} {name} items but {len(labels)} {name} label lists")


def _blocks(n_rows: int, row_cost: int) -> Iterator[tuple[int, int]]:
    """Split `n_rows` queries into (start, stop) blocks of about BLOCK_ELEMENTS work each."""
    step = max(1, BLOCK_ELEMENTS // max(row_cost, 1))
    for start in range(0, n_rows, step):
        yield start, min(start + step, n_rows)


def _mean(values: np.ndarray) -> float:
    """Mean as a float; NaN for an empty array (no warning)."""
    return float(values.mean()) if values.size else float("nan")
