"""The evaluation harness: the train/test split every method is scored on, and the scoring itself.

Database = the train split, queries = the test split; a database document is relevant to a query
when they share a label. Corpora without a train/test split get a seeded 80/20 split (`SPLIT_SEED`).
Documents with fewer than `MIN_VOCAB_TOKENS` tokens of the reference vocabulary (a `Featurizer`
fitted on the train split with its defaults) are dropped from both sides, so every method is
scored on exactly the same documents.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from docbits.index.codes import bucket_statistics
from docbits.index.forms import pack_forms
from docbits.model.corpus import Document, load_corpus
from docbits.model.errors import CorpusError
from docbits.model.featurizer import Featurizer
from docbits.model.metrics import (
    hamming_ball_quality,
    precision_at_k,
    precision_at_k_scores,
    precision_of_rankings,
)
from docbits.model.rescore import DEFAULT_OVERSAMPLE, hamming_candidates, rescore

K = 100
RADII = (0, 1, 2)
MIN_VOCAB_TOKENS = 5
SPLIT_SEED = 0
TRAIN_SHARE = 0.8


class TextHasher(Protocol):
    """Anything that turns texts into packed codes (a trained `Hasher`, say)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Packed uint8 codes (n, b/8)."""
        ...


class FormHasher(Protocol):
    """A hasher that also gives each text's int8 rescoring form (a trained `Hasher`)."""

    def encode_with_forms(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(packed uint8 codes (n, b/8), int8 forms (n, b))."""
        ...


@dataclass(frozen=True)
class EvalSplit:
    """The filtered train (database) and test (query) sides, with the reference features."""

    corpus: str
    protocol: str
    split_rule: str
    train_ids: list[str]
    train_texts: list[str]
    train_labels: list[tuple[str, ...]]
    test_ids: list[str]
    test_texts: list[str]
    test_labels: list[tuple[str, ...]]
    featurizer: Featurizer
    train_counts: sp.csr_matrix
    test_counts: sp.csr_matrix
    train_tfidf: sp.csr_matrix
    test_tfidf: sp.csr_matrix
    dropped: dict[str, int]


def prepare_split(path: str | Path, protocol: str = "clean") -> EvalSplit:
    """Load, split and filter a corpus for evaluation (cached per path, protocol and mtime)."""
    resolved = Path(path).resolve()
    modified = resolved.stat().st_mtime_ns if resolved.exists() else 0
    return _prepare_split_cached(str(resolved), protocol, modified)


def split_documents(documents: Sequence[Document]) -> tuple[list[Document], list[Document], str]:
    """(train, test, rule): the corpus's own split when every document has train/test, else 80/20.

    The fallback shuffles with `numpy.random.default_rng(SPLIT_SEED)` and gives the first 80%
    (rounded down) to train, so the same corpus always splits the same way.
    """
    splits = {document.split for document in documents}
    if splits == {"train", "test"}:
        train = [document for document in documents if document.split == "train"]
        test = [document for document in documents if document.split == "test"]
        return train, test, "corpus train/test split"
    order = np.random.default_rng(SPLIT_SEED).permutation(len(documents))
    n_train = math.floor(TRAIN_SHARE * len(documents))
    train = [documents[i] for i in sorted(order[:n_train])]
    test = [documents[i] for i in sorted(order[n_train:])]
    return train, test, f"seeded {TRAIN_SHARE:.0%}/{1 - TRAIN_SHARE:.0%} split (seed {SPLIT_SEED})"


def evaluate_codes(db_codes: np.ndarray, query_codes: np.ndarray, split: EvalSplit) -> dict:
    """Every code metric for database (train) and query (test) codes aligned with `split`."""
    _check_alignment(db_codes, len(split.train_texts), "database (train)")
    _check_alignment(query_codes, len(split.test_texts), "query (test)")
    labels = (split.test_labels, split.train_labels)
    ball = hamming_ball_quality(query_codes, db_codes, *labels, radii=RADII)
    return {
        "bits": int(db_codes.shape[1] * 8),
        "n_db": len(db_codes),
        "n_queries": len(query_codes),
        "precision_at_100": precision_at_k(query_codes, db_codes, *labels, k=K),
        "hamming_ball": {str(radius): values for radius, values in ball.items()},
        "bucket_occupancy": bucket_statistics(db_codes),
    }


def evaluate_hasher(hasher: TextHasher, split: EvalSplit) -> dict:
    """Encode both sides of `split` with `hasher` and score the codes."""
    return evaluate_codes(hasher.encode(split.train_texts), hasher.encode(split.test_texts), split)


def evaluate_rescoring(
    db_codes: np.ndarray,
    db_forms: np.ndarray,
    query_codes: np.ndarray,
    query_forms: np.ndarray,
    split: EvalSplit,
    oversample: int = DEFAULT_OVERSAMPLE,
) -> dict:
    """P@100 of codes + rescoring: per query the `oversample` × 100 nearest codes (Hamming,
    ties in database order), re-ranked by `docbits.model.rescore.rescore` over the int8 forms
    packed as the service holds them, the best 100 kept; also the mean seconds per query spent
    in `rescore` alone."""
    _check_alignment(db_codes, len(split.train_texts), "database (train)")
    _check_alignment(query_codes, len(split.test_texts), "query (test)")
    rankings, rescore_seconds = [], 0.0
    db_packed, query_packed = pack_forms(db_forms), pack_forms(query_forms)  # as served
    for query_code, query_form in zip(query_codes, query_packed, strict=True):
        candidates = hamming_candidates(query_code, db_codes, oversample * K)
        started = time.perf_counter()
        positions, _scores = rescore(query_form, db_packed[candidates], K)
        rescore_seconds += time.perf_counter() - started
        rankings.append(candidates[positions])
    return {
        "oversample": oversample,
        "precision_at_100": precision_of_rankings(
            rankings, split.test_labels, split.train_labels, k=K
        ),
        "rescore_seconds_per_query": rescore_seconds / max(len(rankings), 1),
    }


def evaluate_hasher_with_rescoring(
    hasher: FormHasher, split: EvalSplit, oversample: int = DEFAULT_OVERSAMPLE
) -> dict:
    """Codes-only metrics (`evaluate_codes`) plus the rescored P@100 under "rescoring"."""
    db_codes, db_forms = hasher.encode_with_forms(split.train_texts)
    query_codes, query_forms = hasher.encode_with_forms(split.test_texts)
    result = evaluate_codes(db_codes, query_codes, split)
    result["rescoring"] = evaluate_rescoring(
        db_codes, db_forms, query_codes, query_forms, split, oversample
    )
    return result


def evaluate_tfidf_cosine(split: EvalSplit) -> dict:
    """The unhashed reference: rank the database by TF-IDF cosine similarity to each query."""
    labels = (split.test_labels, split.train_labels)
    return {
        "bits": None,
        "n_db": split.train_tfidf.shape[0],
        "n_queries": split.test_tfidf.shape[0],
        "precision_at_100": precision_at_k_scores(
            split.test_tfidf, split.train_tfidf, *labels, k=K
        ),
    }


def format_table(
    results: Mapping[str, Any] | Sequence[Mapping[str, Any]], markdown: bool = False
) -> str:
    """Two tables (ranking, then hash-table lookup by radius) as aligned text or markdown.

    Each result is a dict from `evaluate_codes`/`evaluate_tfidf_cosine`, optionally with
    "method" and "protocol" keys naming its row.
    """
    rows = [results] if isinstance(results, Mapping) else list(results)
    ranking = [
        [
            _row_name(result),
            _text(result.get("bits")),
            _text(result["precision_at_100"]["tie_aware"]),
            _text(result["precision_at_100"]["index_order"]),
            *_occupancy_cells(result.get("bucket_occupancy")),
        ]
        for result in rows
    ]
    lookup = [
        [
            _row_name(result),
            _text(result.get("bits")),
            radius,
            _text(values["precision"]),
            _text(values["precision_nonempty"]),
            _text(values["recall"]),
            _text(values["empty_share"]),
            _text(values["mean_candidates"], digits=1),
        ]
        for result in rows
        for radius, values in result.get("hamming_ball", {}).items()
    ]
    ranking_header = [
        "method",
        "bits",
        "P@100 (tie-aware)",
        "P@100 (index order)",
        "distinct codes",
        "largest bucket",
        "entropy (bits)",
    ]
    lookup_header = [
        "method",
        "bits",
        "radius",
        "precision",
        "precision (non-empty)",
        "recall",
        "empty share",
        "mean candidates",
    ]
    render = _markdown_table if markdown else _text_table
    parts = [render(ranking_header, ranking)]
    if lookup:
        parts.append(render(lookup_header, lookup))
    return "\n\n".join(parts)


def json_ready(value: Any) -> Any:
    """A copy of nested results that `json.dumps` writes as strict JSON: NaN/inf become None."""
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


@functools.lru_cache(maxsize=4)
def _prepare_split_cached(path: str, protocol: str, _modified_ns: int) -> EvalSplit:
    """Build the EvalSplit of one corpus file as it was at `_modified_ns`."""
    return split_from_documents(load_corpus(path, protocol), path, protocol)


def split_from_documents(documents: Sequence[Document], corpus: str, protocol: str) -> EvalSplit:
    """Split (the documents' own train/test, else seeded 80/20), fit the reference featurizer on
    the train side and drop the short documents: the EvalSplit every method is scored on.
    `corpus` and `protocol` only name it."""
    path = corpus
    train, test, rule = split_documents(documents)
    if not train or not test:
        raise CorpusError(f"{path}: need documents on both the train and the test side")
    if not any(document.labels for document in test):
        raise CorpusError(
            f"{path}: no test document has a label, so relevance (a shared label) is undefined"
        )
    featurizer = Featurizer.fit([document.text for document in train])
    train_counts = featurizer.counts([document.text for document in train])
    test_counts = featurizer.counts([document.text for document in test])
    keep_train = _long_enough(train_counts)
    keep_test = _long_enough(test_counts)
    kept_train = [document for document, keep in zip(train, keep_train, strict=True) if keep]
    kept_test = [document for document, keep in zip(test, keep_test, strict=True) if keep]
    if not kept_train or not kept_test:
        raise CorpusError(f"{path}: no documents left after dropping the short ones")
    train_counts, test_counts = train_counts[keep_train], test_counts[keep_test]
    return EvalSplit(
        corpus=path,
        protocol=protocol,
        split_rule=rule,
        train_ids=[document.id for document in kept_train],
        train_texts=[document.text for document in kept_train],
        train_labels=[document.labels for document in kept_train],
        test_ids=[document.id for document in kept_test],
        test_texts=[document.text for document in kept_test],
        test_labels=[document.labels for document in kept_test],
        featurizer=featurizer,
        train_counts=train_counts,
        test_counts=test_counts,
        train_tfidf=featurizer.tfidf(counts=train_counts),
        test_tfidf=featurizer.tfidf(counts=test_counts),
        dropped={"train": len(train) - len(kept_train), "test": len(test) - len(kept_test)},
    )


def _long_enough(counts: sp.csr_matrix) -> np.ndarray:
    """Rows holding at least MIN_VOCAB_TOKENS vocabulary tokens."""
    return np.asarray(counts.sum(axis=1)).ravel() >= MIN_VOCAB_TOKENS


def _check_alignment(codes: np.ndarray, n_expected: int, side: str) -> None:
    """Refuse codes that are not packed uint8 rows, one per document of that side."""
    if not isinstance(codes, np.ndarray) or codes.dtype != np.uint8 or codes.ndim != 2:
        raise ValueError(f"{side} codes must be a uint8 array (n, b/8)")
    if len(codes) != n_expected:
        raise ValueError(f"{side} codes: {len(codes)} rows for {n_expected} documents")


def _row_name(result: Mapping[str, Any]) -> str:
    """`method` (and `protocol` when present) of a result row."""
    name = str(result.get("method", "codes"))
    return f"{name} [{result['protocol']}]" if "protocol" in result else name


def _occupancy_cells(occupancy: Mapping[str, Any] | None) -> list[str]:
    """Distinct codes, largest bucket and entropy cells; dashes for unhashed methods."""
    if occupancy is None:
        return ["—", "—", "—"]
    return [
        str(occupancy["distinct_codes"]),
        str(occupancy["largest_bucket"]),
        _text(occupancy["entropy_bits"], digits=2),
    ]


def _text(value: Any, digits: int = 4) -> str:
    """Format one cell: floats to `digits` decimals, None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned first column, right-aligned numbers, two spaces between columns."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for cells in [header, *rows]:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        lines.append("  ".join([first, *rest]).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table with numeric columns right-aligned."""
    lines = [
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * (len(header) - 1),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)
