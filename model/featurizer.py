"""Text to sparse features: tokenizer, fitted vocabulary, term counts and TF-IDF, saved as JSON."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from docbits.model.errors import ArtifactError, read_json_artifact

VOCAB_FILE = "vocab.json"
VOCAB_FORMAT = "docbits-vocab/1"
TOKEN_PATTERN = re.compile(r"\b\w\w+\b")
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS)


def tokenize(text: str) -> list[str]:
    """Lowercase `text` and return its words of 2+ letters/digits, English stop words removed."""
    return [token for token in TOKEN_PATTERN.findall(text.lower()) if token not in STOP_WORDS]


def smooth_idf(document_frequency: np.ndarray, n_documents: int) -> np.ndarray:
    """Smoothed inverse document frequency, as sklearn: ln((1 + n) / (1 + df)) + 1, float32."""
    df = np.asarray(document_frequency, dtype=np.float64)
    return (np.log((1.0 + n_documents) / (1.0 + df)) + 1.0).astype(np.float32)


def max_df_count(max_df: float, n_documents: int) -> int:
    """Largest allowed document frequency: a float is a fraction of documents, an int a count."""
    if isinstance(max_df, int):
        return max_df
    if not 0.0 < max_df <= 1.0:
        raise ValueError(f"max_df must be a fraction in (0, 1] or an int count, got {max_df}")
    return math.floor(max_df * n_documents + 1e-9)


class Featurizer:
    """A vocabulary with idf weights that turns texts into sparse count and TF-IDF rows."""

    def __init__(self, vocabulary: Sequence[str], idf: np.ndarray, params: dict[str, Any]) -> None:
        """Wrap a fitted vocabulary (terms in column order) and its idf; use `fit` or `load`."""
        self.vocabulary: list[str] = list(vocabulary)
        self.idf: np.ndarray = np.asarray(idf, dtype=np.float32)
        self.params: dict[str, Any] = dict(params)
        if self.idf.shape != (len(self.vocabulary),):
            raise ValueError(f"idf has shape {self.idf.shape}, vocabulary {len(self.vocabulary)}")
        self.term_index: dict[str, int] = {term: i for i, term in enumerate(self.vocabulary)}

    def __len__(self) -> int:
        """Vocabulary size V."""
        return len(self.vocabulary)

    @classmethod
    def fit(
        cls,
        texts: Iterable[str],
        max_features: int = 10_000,
        min_df: int = 3,
        max_df: float = 0.8,
    ) -> Featurizer:
        """Keep the `max_features` most frequent terms (total count, ties alphabetical) among those
        in at least `min_df` and at most `max_df` documents; columns are in alphabetical order."""
        if max_features < 1 or min_df < 1:
            raise ValueError("max_features and min_df must be at least 1")
        term_count: Counter[str] = Counter()
        document_frequency: Counter[str] = Counter()
        n_documents = 0
        for text in texts:
            tokens = tokenize(text)
            term_count.update(tokens)
            document_frequency.update(set(tokens))
            n_documents += 1
        ceiling = max_df_count(max_df, n_documents)
        eligible = [t for t, df in document_frequency.items() if min_df <= df <= ceiling]
        eligible.sort(key=lambda term: (-term_count[term], term))
        vocabulary = sorted(eligible[:max_features])
        idf = smooth_idf(np.array([document_frequency[t] for t in vocabulary]), n_documents)
        params = {
            "max_features": max_features,
            "min_df": min_df,
            "max_df": max_df,
            "n_documents": n_documents,
        }
        return cls(vocabulary, idf, params)

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Term counts of each text as a sparse (n, V) float32 matrix; unknown words are ignored."""
        indptr = [0]
        indices: list[int] = []
        values: list[int] = []
        for text in texts:
            row = Counter(self.term_index[t] for t in tokenize(text) if t in self.term_index)
            for column in sorted(row):
                indices.append(column)
                values.append(row[column])
            indptr.append(len(indices))
        return sp.csr_matrix(
            (
                np.asarray(values, dtype=np.float32),
                np.asarray(indices, dtype=np.int32),
                np.asarray(indptr, dtype=np.int64),
            ),
            shape=(len(indptr) - 1, len(self.vocabulary)),
        )

    def tfidf(
        self, texts: Sequence[str] | None = None, counts: sp.csr_matrix | None = None
    ) -> sp.csr_matrix:
        """L2-normalised TF-IDF rows (float32 CSR) from texts or from precomputed counts."""
        if (texts is None) == (counts is None):
            raise ValueError("pass exactly one of texts or counts")
        matrix = self.counts(texts) if counts is None else sp.csr_matrix(counts, dtype=np.float32)
        if matrix.shape[1] != len(self.vocabulary):
            raise ValueError(f"counts have {matrix.shape[1]} columns, vocabulary {len(self)}")
        weighted = matrix.copy()
        weighted.data = weighted.data * self.idf[weighted.indices]
        row_norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
        row_norms[row_norms == 0] = 1.0
        weighted.data /= np.repeat(row_norms, np.diff(weighted.indptr)).astype(np.float32)
        return weighted.astype(np.float32)

    def save(self, directory: Path) -> None:
        """Write `vocab.json` (format tag, params, terms in column order, idf) into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": VOCAB_FORMAT,
            "params": self.params,
            "terms": self.vocabulary,
            "idf": [float(value) for value in self.idf],
        }
        (directory / VOCAB_FILE).write_text(json.dumps(payload, ensure_ascii=False), "utf-8")

    @classmethod
    def load(cls, directory: Path) -> Featurizer:
        """Read `vocab.json` from `directory`; a bad file raises ArtifactError naming it."""
        path = Path(directory) / VOCAB_FILE
        payload = read_json_artifact(path, "vocabulary")
        if not isinstance(payload, dict) or payload.get("format") != VOCAB_FORMAT:
            raise ArtifactError(f"{path}: not a docbits vocabulary (expected {VOCAB_FORMAT})")
        terms, idf, params = payload.get("terms"), payload.get("idf"), payload.get("params")
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise ArtifactError(f"{path}: 'terms' must be a list of strings")
        if not isinstance(idf, list) or len(idf) != len(terms):
            raise ArtifactError(f"{path}: 'idf' must be a list as long as 'terms' ({len(terms)})")
        if len(set(terms)) != len(terms):
            raise ArtifactError(f"{path}: 'terms' contains duplicates")
        try:
            idf_array = np.asarray(idf, dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise ArtifactError(f"{path}: 'idf' must hold numbers ({error})") from error
        return cls(terms, idf_array, params if isinstance(params, dict) else {})
