"""The compiled term counter against the featurizer's regex path, on arbitrary texts."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from docbits.model.autoencoders import build_autoencoder
from docbits.model.featurizer import Featurizer
from docbits.model.graph import sublinear_tfidf
from docbits.model.inference import FastEncoder
from docbits.model.term_counts import TermTable

VOCABULARY = [
    "ab",
    "abc",
    "shuttle",
    "launch",
    "x11",
    "snake_case",
    "the",
    "caf\u00e9",
    "2024",
    "zz",
]
# Words of the vocabulary in several cases, near-misses, stop words, separators of every kind,
# digits, underscores and non-ASCII letters (which send a text down the Python path).
PIECES = st.sampled_from(
    [
        "ab",
        "AB",
        "Abc",
        "abcd",
        "a",
        "shuttle",
        "SHUTTLE",
        "Launch",
        "x11",
        "X11",
        "snake_case",
        "snake",
        "_",
        "__",
        "the",
        "The",
        "2024",
        "zz",
        "ZZ",
        "caf\u00e9",
        "CAF\u00c9",
        "\u00e9",
        "\u212a",  # KELVIN SIGN: lower-cases to ASCII "k" in Python
        "\u2019",
        " ",
        "  ",
        "\n",
        "\t",
        ",",
        ".",
        "-",
        "'",
        "@",
        "\x00",
        "\x7f",
    ]
)
TEXTS = st.lists(PIECES, max_size=40).map("".join)


def featurizer() -> Featurizer:
    """A featurizer over VOCABULARY with distinct idf values (stop word "the" included)."""
    idf = np.linspace(1.0, 3.0, len(VOCABULARY)).astype(np.float32)
    return Featurizer(VOCABULARY, idf, {})


def fast_encoder(weighting: str) -> FastEncoder:
    model = build_autoencoder("undercomplete", len(VOCABULARY), 8, hidden_sizes=(4,))
    encoder = FastEncoder.build(featurizer(), model, weighting)
    assert encoder is not None
    return encoder


ENCODERS = {weighting: fast_encoder(weighting) for weighting in ("tfidf", "sublinear")}


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXTS, max_size=6))
def test_counts_equal_the_featurizers_counts(texts: list[str]) -> None:
    expected = featurizer().counts(texts)
    expected.sort_indices()
    indptr, columns, counts = ENCODERS["tfidf"].term_counts(texts)
    np.testing.assert_array_equal(indptr, expected.indptr)
    np.testing.assert_array_equal(columns, expected.indices)
    np.testing.assert_array_equal(counts, expected.data)


@settings(max_examples=200, deadline=None)
@given(st.lists(TEXTS, max_size=6), st.sampled_from(["tfidf", "sublinear"]))
def test_tfidf_rows_equal_the_featurizers_bit_for_bit(texts: list[str], weighting: str) -> None:
    fitted = featurizer()
    counts = fitted.counts(texts)
    if weighting == "sublinear":
        expected = sublinear_tfidf(counts, fitted.idf)
    else:
        expected = fitted.tfidf(counts=counts)
    expected.sort_indices()
    indptr, columns, weights = ENCODERS[weighting].tfidf_rows(texts)
    np.testing.assert_array_equal(indptr, expected.indptr)
    np.testing.assert_array_equal(columns, expected.indices)
    assert weights.dtype == np.float32
    assert weights.tobytes() == expected.data.astype(np.float32).tobytes()


def test_table_finds_every_ascii_term_and_nothing_else() -> None:
    terms = {f"t{number}": number for number in range(5000)}
    table = TermTable(terms)
    text = " ".join(f"T{number}" for number in range(0, 5000, 7)) + " t5000 tt t 7t0"
    indptr, columns, counts = table.count([text, "", "t1 t1 t1"])
    found = len(range(0, 5000, 7))
    assert indptr.tolist() == [0, found, found, found + 1]
    assert columns[: indptr[1]].tolist() == list(range(0, 5000, 7))
    assert columns[indptr[2] :].tolist() == [1] and counts[indptr[2] :].tolist() == [3]
