"""How high can P@100 go on 20 Newsgroups with these features? Three unhashed references.

Usage: .venv/bin/python bench/quality_ceiling.py [--corpus PATH] [--protocols clean raw]
       [--out docs/results/quality-ceiling.md]

For each protocol, on the harness's split and features (`docbits.model.evaluate.prepare_split`):
- TF-IDF cosine (the harness's unhashed reference);
- the spectral teacher's continuous embedding (`docbits.model.graph`: kNN graph of sublinear TF-IDF,
  32 eigenvectors), test documents placed by the similarity-weighted mean of their 60 nearest
  training documents' coordinates, ranked by cosine: what the student's codes try to reproduce;
- a *supervised* linear SVM trained on the train split's labels: its test accuracy, and P@100 when
  queries and database are ranked by cosine of the SVM's 20 decision values. It uses the labels
  the unsupervised methods never see: a yardstick of how separable the groups are, not a rival.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from docbits.model.evaluate import EvalSplit, prepare_split  # noqa: E402
from docbits.model.graph import (  # noqa: E402
    TEACHER_DIMS,
    diffusion_embedding,
    knn_graph,
    local_scaling,
    sublinear_tfidf,
)
from docbits.model.metrics import precision_at_k_scores  # noqa: E402

DEFAULT_CORPUS = Path(
    os.environ.get("DOCBITS_20NEWS", ROOT.parent / "shared" / "data" / "20news-bydate.tar.xz")
)
GRAPH_K = 60
PUBLISHED_SNUH = {16: 0.5775, 32: 0.6387, 64: 0.6646, 128: 0.6731}


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), so dot products are cosines."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


def sublinear_features(split: EvalSplit) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(train, test) sublinear TF-IDF rows, the teacher's and the SVM's input."""
    idf = split.featurizer.idf
    return sublinear_tfidf(split.train_counts, idf), sublinear_tfidf(split.test_counts, idf)


def spectral_reference(split: EvalSplit, train: sp.csr_matrix, test: sp.csr_matrix) -> float:
    """P@100 of the teacher's continuous embedding, test rows placed by their kNN in train."""
    embedding = diffusion_embedding(local_scaling(knn_graph(train, GRAPH_K)), TEACHER_DIMS)
    placed = np.zeros((test.shape[0], embedding.shape[1]))
    for start in range(0, test.shape[0], 1000):
        similarity = (test[start : start + 1000] @ train.T).toarray()
        nearest = np.argpartition(-similarity, GRAPH_K - 1, axis=1)[:, :GRAPH_K]
        weights = np.take_along_axis(similarity, nearest, axis=1)
        weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        placed[start : start + 1000] = np.einsum("qk,qkd->qd", weights, embedding[nearest])
    labels = (split.test_labels, split.train_labels)
    return precision_at_k_scores(unit_rows(placed), unit_rows(embedding), *labels)["tie_aware"]


def supervised_reference(
    split: EvalSplit, train: sp.csr_matrix, test: sp.csr_matrix
) -> tuple[float, float]:
    """(test accuracy, P@100 in decision space) of a linear SVM trained on the train labels."""
    from sklearn.svm import LinearSVC

    y_train = [labels[0] for labels in split.train_labels]
    y_test = [labels[0] for labels in split.test_labels]
    classifier = LinearSVC(C=0.5, random_state=0).fit(train, y_train)
    accuracy = float(np.mean(classifier.predict(test) == np.asarray(y_test)))
    queries = unit_rows(classifier.decision_function(test))
    database = unit_rows(classifier.decision_function(train))
    labels = (split.test_labels, split.train_labels)
    return accuracy, precision_at_k_scores(queries, database, *labels)["tie_aware"]


def main() -> None:
    """Measure every reference per protocol and write the markdown page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--protocols", nargs="+", default=["clean", "raw"])
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/quality-ceiling.md")
    args = parser.parse_args()
    if not args.corpus.exists():
        raise SystemExit(
            f"{args.corpus} not found: download 20news-bydate.tar.xz from "
            "http://qwone.com/~jason/20Newsgroups/ and pass --corpus or set DOCBITS_20NEWS"
        )
    rows = []
    for protocol in args.protocols:
        started = time.monotonic()
        split = prepare_split(args.corpus, protocol)
        labels = (split.test_labels, split.train_labels)
        cosine = precision_at_k_scores(split.test_tfidf, split.train_tfidf, *labels)["tie_aware"]
        train, test = sublinear_features(split)
        spectral = spectral_reference(split, train, test)
        accuracy, supervised = supervised_reference(split, train, test)
        rows.append((protocol, cosine, spectral, supervised, accuracy))
        print(protocol, rows[-1][1:], f"{time.monotonic() - started:.0f} s", flush=True)
    lines = [
        "# Quality ceiling: unhashed references on 20 Newsgroups",
        "",
        f"Command: `.venv/bin/python bench/quality_ceiling.py` (machine: {platform.node() or '?'},"
        f" {os.cpu_count()} CPUs, Python {platform.python_version()}). Same split, filtering and"
        " vocabulary as `docbits eval`; tie-aware P@100, queries = test split, database = train.",
        "",
        "| protocol | TF-IDF cosine | spectral teacher, continuous (32 dims) | supervised linear"
        " SVM: P@100 in its decision space | supervised SVM: test accuracy |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for protocol, cosine, spectral, supervised, accuracy in rows:
        lines.append(
            f"| {protocol} | {cosine:.4f} | {spectral:.4f} | {supervised:.4f} | {accuracy:.4f} |"
        )
    targets = " / ".join(f"{value:.4f}" for value in PUBLISHED_SNUH.values())
    lines += [
        "",
        "The supervised row uses the train split's labels, which no hashing method here sees.",
        "It is not a strict upper bound (a non-linear model could separate the groups better),",
        "but it says how far the newsgroups can be told apart from these bag-of-words features.",
        f"The published unsupervised targets on `clean` ({targets} at 16 / 32 / 64 / 128 bits,",
        "SNUH) come within 0.01-0.10 of what the supervised classifier reaches here, while the",
        "unsupervised teacher our codes learn from reaches the value in the spectral column: we",
        "read this as evidence that those figures come from an easier preparation of the corpus",
        "than this protocol, not as a gap a better unsupervised objective will simply close.",
        "See quality.md for what the codes reach.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
