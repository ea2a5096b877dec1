"""Teacher probe: how good are the teacher's codes before any student learns them?

Builds one kNN graph over a corpus's train and test documents together (transductive, no
labels), turns it into teacher codes with the chosen weighting, and prints tie-aware P@100 of
the test codes against the train codes, and of the cosine between the continuous embeddings the
codes are cut from (`embedding_p100`; for one graph, about the best its bits can reach). It
isolates the teacher from the student, so a graph or embedding choice can be checked on every
corpus in seconds to minutes.

Usage: .venv/bin/python bench/teacher_probe.py [--corpora NAME ...] [--bits 32]
       [--variant NAME=k:60,scaling:cosine,dims:32,weight:0 ...]

A variant sets the rows the graph is built over (`features`: `bm25` for
`docbits.model.graph.bm25_rows`, the default `sublinear` for sublinear TF-IDF), the graph's k,
its edge weights (`cosine`, or `local` for
`docbits.model.graph.local_scaling`), how many eigenvectors (`dims`) and the power of the
eigenvalue each is weighted by (`weight`: 0 = unweighted, 2 = the recipe's diffusion time),
`min_eigenvalue` keeps only eigenvectors above it (at least 8), as an earlier recipe did;
`plan:3` splits the bits over graphs of k/2, k and 2k as `teacher_plan` does for long codes.
Without --variant it compares the previous recipe (a locally scaled graph over sublinear TF-IDF)
with the current defaults (over BM25 rows).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.corpora import CORPORA, split_of  # noqa: E402
from docbits.model import graph  # noqa: E402
from docbits.model.featurizer import Featurizer  # noqa: E402
from docbits.model.metrics import precision_at_k, precision_at_k_scores  # noqa: E402
from docbits.model.train import TrainConfig, vocabulary_limits  # noqa: E402

RECIPE = (
    f"k:{TrainConfig().graph_k},scaling:local,dims:{graph.TEACHER_DIMS},"
    f"weight:{graph.DIFFUSION_TIME},plan:3"
)
DEFAULT_VARIANTS = {
    "previous recipe": f"features:sublinear,{RECIPE}",
    "recipe": f"features:bm25,{RECIPE}",
}


def parse_variant(text: str) -> dict[str, str]:
    """'k:60,scaling:local' → {'k': '60', 'scaling': 'local'}."""
    return dict(item.split(":", 1) for item in text.split(",") if item)


def teacher_codes(
    features: sp.csr_matrix, bits: int, variant: dict[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """(n, bits) bool teacher codes of every row of `features` under one variant, and the centred
    continuous embedding they are the signs of a rotation of (blocks side by side)."""
    k = int(variant.get("k", 60))
    if variant.get("plan") == "3" and bits >= graph.MULTI_GRAPH_MIN_BITS:
        blocks = [
            teacher_codes(features, block_bits, {**variant, "k": str(block_k), "plan": "1"})
            for block_k, block_bits in graph.teacher_plan(bits, k)
        ]
        return tuple(np.concatenate(parts, axis=1) for parts in zip(*blocks, strict=True))
    built = graph.knn_graph(features, k)
    if variant.get("scaling", "cosine") == "local":
        built = graph.local_scaling(built)
    dims = min(int(variant.get("dims", 32)), features.shape[0] - 2)
    values, vectors = graph.spectral_decomposition(built, dims)
    if "min_eigenvalue" in variant:  # keep those above it, at least 8
        keep = max(min(8, dims), int((values >= float(variant["min_eigenvalue"])).sum()))
        values, vectors = values[:keep], vectors[:, :keep]
    embedding = vectors * np.maximum(values, 0.0) ** float(variant.get("weight", 0))
    embedding = (embedding - embedding.mean(axis=0)) * np.sqrt(features.shape[0])
    return embedding @ graph.block_rotation(embedding, bits) >= 0, embedding


def probe(name: str, bits: int, variants: dict[str, str]) -> list[dict]:
    """P@100 of each variant's teacher codes on one corpus (test queries, train database)."""
    split = split_of(name)
    texts = split.train_texts + split.test_texts
    min_df, max_df = vocabulary_limits(len(split.train_texts), TrainConfig())
    featurizer = Featurizer.fit(split.train_texts, TrainConfig().max_features, min_df, max_df)
    counts = featurizer.counts(texts)
    weightings = {"sublinear": graph.sublinear_tfidf, "bm25": graph.bm25_rows}
    features: dict[str, sp.csr_matrix] = {}  # each weighting computed once, when a variant asks
    n_train = len(split.train_texts)
    rows = []
    for label, text in variants.items():
        started = time.monotonic()
        variant = parse_variant(text)
        weighting = variant.get("features", "sublinear")
        if weighting not in features:
            features[weighting] = weightings[weighting](counts, featurizer.idf)
        codes, embedding = teacher_codes(features[weighting], bits, variant)
        packed = np.packbits(codes, axis=1)
        score = precision_at_k(
            packed[n_train:], packed[:n_train], split.test_labels, split.train_labels
        )["tie_aware"]
        unit = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
        ceiling = precision_at_k_scores(
            unit[n_train:], unit[:n_train], split.test_labels, split.train_labels
        )["tie_aware"]
        rows.append(
            {
                "corpus": name,
                "bits": bits,
                "variant": label,
                "settings": text,
                "p100": round(float(score), 4),
                "embedding_p100": round(float(ceiling), 4),
                "seconds": round(time.monotonic() - started, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", nargs="+", choices=list(CORPORA), default=list(CORPORA))
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=SETTINGS")
    args = parser.parse_args()
    variants = dict(item.split("=", 1) for item in args.variant) or DEFAULT_VARIANTS
    for name in args.corpora:
        probe(name, args.bits, variants)


if __name__ == "__main__":
    main()
