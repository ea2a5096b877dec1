"""Metrics on hand-made codes where the right answer can be worked out on paper, ties included."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from docbits.model.metrics import hamming_ball_quality, precision_at_k, precision_at_k_scores


def codes(*values: int) -> np.ndarray:
    """One-byte codes from small integers."""
    return np.array(values, dtype=np.uint8).reshape(-1, 1)


# Query 0x00 against distances 0, 1, 1, 2; the query's label "a" is held by documents 1 and 3.
QUERY = codes(0x00)
DATABASE = codes(0x00, 0x01, 0x02, 0x03)
QUERY_LABELS = [("a",)]
DB_LABELS = [("b",), ("a",), ("b",), ("a",)]


def test_tie_aware_and_index_order_differ_on_a_tie() -> None:
    # k=2: document 0 is strictly closer (irrelevant); documents 1 and 2 tie for the last slot.
    result = precision_at_k(QUERY, DATABASE, QUERY_LABELS, DB_LABELS, k=2)
    assert result["tie_aware"] == pytest.approx((0 + 1 * 1 / 2) / 2)
    assert result["index_order"] == pytest.approx(1 / 2)
    # The same documents with the two tied ones stored in the other order.
    swapped_labels = [DB_LABELS[i] for i in (0, 2, 1, 3)]
    swapped = precision_at_k(QUERY, DATABASE[[0, 2, 1, 3]], QUERY_LABELS, swapped_labels, k=2)
    assert swapped["tie_aware"] == pytest.approx(0.25)
    assert swapped["index_order"] == pytest.approx(0.0)


def test_tie_aware_is_the_mean_over_every_tie_break() -> None:
    rng = np.random.default_rng(1)
    db = rng.integers(0, 4, (6, 1), dtype=np.uint8)
    labels = [(label,) for label in "abbaab"]
    for k in (1, 2, 3, 5):
        orders = list(itertools.permutations(range(6)))
        index_order = [
            precision_at_k(codes(0), db[list(o)], [("a",)], [labels[i] for i in o], k=k)[
                "index_order"
            ]
            for o in orders
        ]
        tie_aware = precision_at_k(codes(0), db, [("a",)], labels, k=k)["tie_aware"]
        assert tie_aware == pytest.approx(np.mean(index_order))


def test_precision_averages_over_queries_and_caps_k() -> None:
    both = precision_at_k(codes(0x00, 0x03), DATABASE, [("a",), ("b",)], DB_LABELS, k=1)
    # Query 0 -> document 0 ("b", miss); query 0x03 -> document 3 ("a", miss for label "b").
    assert both == {"tie_aware": 0.0, "index_order": 0.0}
    everything = precision_at_k(QUERY, DATABASE, QUERY_LABELS, DB_LABELS, k=100)
    assert everything["tie_aware"] == pytest.approx(0.5)


def test_multi_label_relevance_needs_one_shared_label() -> None:
    result = precision_at_k(codes(0), codes(0, 0), [("x", "y")], [("y", "z"), ("w",)], k=2)
    assert result["tie_aware"] == pytest.approx(0.5)


def test_precision_rejects_labels_that_do_not_line_up() -> None:
    with pytest.raises(ValueError, match="label lists"):
        precision_at_k(QUERY, DATABASE, QUERY_LABELS, DB_LABELS[:3])


def test_precision_from_scores_ranks_high_scores_first() -> None:
    queries = np.array([[1.0, 0.0]])
    db = np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.2], [0.5, 0.5]])
    result = precision_at_k_scores(queries, db, [("a",)], [("a",), ("b",), ("b",), ("a",)], k=2)
    assert result == {"tie_aware": 0.5, "index_order": 0.5}
    tied = precision_at_k_scores(queries, np.ones((3, 2)), [("a",)], [("a",), ("b",), ("b",)], k=1)
    assert tied["tie_aware"] == pytest.approx(1 / 3)
    assert tied["index_order"] == pytest.approx(1.0)


def test_hamming_ball_quality_by_radius() -> None:
    result = hamming_ball_quality(QUERY, DATABASE, QUERY_LABELS, DB_LABELS, radii=(0, 1, 2))
    assert result[0] == pytest.approx(
        {
            "precision": 0.0,
            "precision_nonempty": 0.0,
            "recall": 0.0,
            "empty_share": 0.0,
            "mean_candidates": 1.0,
        }
    )
    assert result[1]["precision"] == pytest.approx(1 / 3)
    assert result[1]["recall"] == pytest.approx(1 / 2)
    assert result[1]["mean_candidates"] == 3.0
    assert result[2]["precision"] == pytest.approx(1 / 2)
    assert result[2]["recall"] == pytest.approx(1.0)


def test_empty_ball_counts_as_zero_precision_but_not_in_nonempty_mean() -> None:
    # Query 0xFF finds nothing within radius 1; query 0x01 finds documents 0x00, 0x01, 0x03.
    result = hamming_ball_quality(codes(0xFF, 0x01), DATABASE, [("a",), ("a",)], DB_LABELS, (1,))
    assert result[1]["empty_share"] == 0.5
    assert result[1]["precision_nonempty"] == pytest.approx(2 / 3)
    assert result[1]["precision"] == pytest.approx((0 + 2 / 3) / 2)
    assert result[1]["mean_candidates"] == pytest.approx(1.5)
