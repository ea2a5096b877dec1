"""Featurizer: tokenization, vocabulary limits, sparse counts and TF-IDF, JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from docbits.model.errors import ArtifactError
from docbits.model.featurizer import Featurizer, tokenize

CORPUS = [
    "The cat sat on the mat with another cat.",
    "A dog chased the cat; the dog barked.",
    "Dogs and cats: 42 pets, 7 owners and a parrot.",
    "The parrot talked to the dog all day long.",
    "Mat, mat, mat: the cat's favourite mat.",
]


def test_tokenize_lowercases_drops_short_words_and_stop_words() -> None:
    assert tokenize("The Cat sat ON a mat, x 42 times!") == ["cat", "sat", "mat", "42", "times"]


def test_tokenize_keeps_unicode_word_characters_and_underscores() -> None:
    assert tokenize("Café_au lait naïve") == ["café_au", "lait", "naïve"]


def test_min_df_max_df_and_max_features_select_terms() -> None:
    texts = ["alpha beta gamma", "alpha beta", "alpha delta", "alpha beta epsilon"]
    assert Featurizer.fit(texts, min_df=1, max_df=1.0).vocabulary == [
        "alpha", "beta", "delta", "epsilon", "gamma"
    ]  # fmt: skip
    assert Featurizer.fit(texts, min_df=2, max_df=1.0).vocabulary == ["alpha", "beta"]
    assert Featurizer.fit(texts, min_df=1, max_df=0.8).vocabulary == [
        "beta", "delta", "epsilon", "gamma"
    ]  # fmt: skip
    # Most frequent by total count, ties broken alphabetically: beta (3), then delta/epsilon/gamma.
    assert Featurizer.fit(texts, max_features=2, min_df=1, max_df=0.8).vocabulary == [
        "beta", "delta"
    ]  # fmt: skip


def test_max_features_ranks_by_total_count_not_document_frequency() -> None:
    texts = ["rare rare rare rare common", "common other", "common other"]
    vocab = Featurizer.fit(texts, max_features=1, min_df=1, max_df=1.0).vocabulary
    assert vocab == ["rare"]


def test_counts_are_sparse_float32_term_counts() -> None:
    featurizer = Featurizer.fit(CORPUS, min_df=1, max_df=1.0)
    counts = featurizer.counts(["cat cat mat unknownword", ""])
    assert isinstance(counts, sp.csr_matrix)
    assert counts.dtype == np.float32
    assert counts.shape == (2, len(featurizer))
    index = featurizer.vocabulary.index
    assert counts[0, index("cat")] == 2 and counts[0, index("mat")] == 1
    assert counts[0].nnz == 2 and counts[1].nnz == 0


def test_tfidf_matches_sklearn_smooth_idf_and_l2_rows() -> None:
    featurizer = Featurizer.fit(CORPUS, min_df=1, max_df=1.0)
    reference = TfidfVectorizer(
        token_pattern=r"(?u)\b\w\w+\b", stop_words="english", vocabulary=featurizer.vocabulary
    ).fit(CORPUS)
    np.testing.assert_allclose(featurizer.idf, reference.idf_, rtol=1e-6)
    ours = featurizer.tfidf(CORPUS)
    assert isinstance(ours, sp.csr_matrix) and ours.dtype == np.float32
    np.testing.assert_allclose(ours.toarray(), reference.transform(CORPUS).toarray(), atol=1e-6)
    from_counts = featurizer.tfidf(counts=featurizer.counts(CORPUS))
    np.testing.assert_array_equal(ours.toarray(), from_counts.toarray())


def test_tfidf_requires_exactly_one_input() -> None:
    featurizer = Featurizer.fit(CORPUS, min_df=1, max_df=1.0)
    with pytest.raises(ValueError):
        featurizer.tfidf()
    with pytest.raises(ValueError):
        featurizer.tfidf(CORPUS, counts=featurizer.counts(CORPUS))


def test_fit_is_deterministic_under_document_order() -> None:
    a = Featurizer.fit(CORPUS, max_features=6, min_df=1, max_df=1.0)
    b = Featurizer.fit(list(reversed(CORPUS)), max_features=6, min_df=1, max_df=1.0)
    assert a.vocabulary == b.vocabulary
    np.testing.assert_array_equal(a.idf, b.idf)


def test_json_round_trip_is_exact(tmp_path: Path) -> None:
    featurizer = Featurizer.fit(CORPUS, min_df=1, max_df=1.0)
    featurizer.save(tmp_path)
    payload = json.loads((tmp_path / "vocab.json").read_text())
    assert payload["terms"] == featurizer.vocabulary
    loaded = Featurizer.load(tmp_path)
    assert loaded.vocabulary == featurizer.vocabulary
    np.testing.assert_array_equal(loaded.idf, featurizer.idf)
    assert loaded.params == featurizer.params
    np.testing.assert_array_equal(
        loaded.tfidf(CORPUS).toarray(), featurizer.tfidf(CORPUS).toarray()
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "something-else"}', "not a docbits vocabulary"),
        ('{"format": "docbits-vocab/1", "terms": ["a", "b"], "idf": [1.0]}', "'idf'"),
        ('{"format": "docbits-vocab/1", "terms": ["a", "a"], "idf": [1.0, 1.0]}', "duplicates"),
    ],
)
def test_bad_vocab_files_raise_artifact_error(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / "vocab.json").write_text(content)
    with pytest.raises(ArtifactError, match=problem) as caught:
        Featurizer.load(tmp_path)
    assert "vocab.json" in str(caught.value)


def test_missing_vocab_file_raises_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"vocab\.json: vocabulary file is missing"):
        Featurizer.load(tmp_path)
