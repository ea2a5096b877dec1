"""Document kNN graph and spectral "teacher" codes for self-taught hashing.

The teacher turns a corpus into target bits in four steps: BM25-weighted rows (`bm25_rows`: term
frequency saturated and normalised by document length, times idf, unit length), a symmetric
k-nearest-neighbour graph built a block of rows at a time (never an n × n dense matrix) and
weighted by a locally scaled Gaussian of the cosine distance (`local_scaling`), the top
`TEACHER_DIMS` eigenvectors of its normalised adjacency D^-½ W D^-½ (the trivial first one
skipped) each weighted by its eigenvalue squared (`diffusion_embedding`), and an ITQ rotation of
that embedding so that taking signs loses as little as possible. Codes of `MULTI_GRAPH_MIN_BITS`
or more split their bits between the embeddings of three graphs with different neighbourhood
sizes (`teacher_plan`), which differ more than rotations of one. The student learns soft
versions of these bits (`soft_bits`: each bit's margin, not only its sign) and predicts them
from the text, which is what extends them to documents outside the graph."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh
from scipy.special import expit

ITQ_ITERATIONS = 50
TEACHER_DIMS = 64
# Eigenvector i is weighted by λ_i ** DIFFUSION_TIME: coordinates of a two-step random walk.
DIFFUSION_TIME = 2
# A document's scale is its distance to this neighbour (Zelnik-Manor & Perona's choice).
SCALE_NEIGHBOUR = 7
# Codes of at least this many bits take their blocks from graphs of k/2, k and 2k neighbours.
MULTI_GRAPH_MIN_BITS = 64
GRAPH_K_SCALES = (0.5, 1.0, 2.0)
ROWS_PER_BLOCK_ELEMENTS = 1 << 24
# BM25's usual term-frequency saturation and length normalisation (Robertson and Zaragoza).
BM25_K1 = 1.2
BM25_B = 0.75


def sublinear_tfidf(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """Unit-length rows of (1 + ln count) · idf, float32 CSR; empty rows stay zero."""
    weighted = sp.csr_matrix(counts, dtype=np.float32, copy=True)
    if weighted.shape[1] != len(idf):
        raise ValueError(f"counts have {weighted.shape[1]} columns, idf has {len(idf)}")
    weighted.eliminate_zeros()
    weighted.data = (1.0 + np.log(weighted.data)) * np.asarray(idf, np.float32)[weighted.indices]
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    weighted.data /= np.repeat(norms, np.diff(weighted.indptr)).astype(np.float32)
    return weighted


def bm25_rows(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """Unit-length rows of BM25 weights, idf · tf (k1 + 1) / (tf + k1 (1 − b + b · length / mean
    length)), float32 CSR; empty rows stay zero. The graph's document similarity: a word
    repeated in one message counts less and less, and long messages (headers, quoted replies)
    weigh each word less, so neighbours share topics rather than length or boilerplate."""
    weighted = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    if weighted.shape[1] != len(idf):
        raise ValueError(f"counts have {weighted.shape[1]} columns, idf has {len(idf)}")
    lengths = np.asarray(weighted.sum(axis=1)).ravel()
    mean_length = lengths.mean() if len(lengths) and lengths.mean() > 0 else 1.0
    saturation = BM25_K1 * (1 - BM25_B + BM25_B * lengths / mean_length)
    rows = np.repeat(np.arange(weighted.shape[0]), np.diff(weighted.indptr))
    tf = weighted.data
    weighted.data = (
        tf * (BM25_K1 + 1) / (tf + saturation[rows]) * np.asarray(idf, np.float64)[weighted.indices]
    )
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return (sp.diags(1 / norms) @ weighted).astype(np.float32).tocsr()


def knn_graph(features: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Symmetric kNN graph: w_ij = cosine(i, j) when j is among i's k most similar rows or i
    among j's (max(W, Wᵀ)); rows must be unit length, self-loops and non-positive weights dropped.

    Similarities are computed for a block of rows at a time, so memory is about
    `ROWS_PER_BLOCK_ELEMENTS` floats whatever the corpus size.
    """
    n = features.shape[0]
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(k, n - 1)
    if k < 1:
        return sp.csr_matrix((n, n), dtype=np.float32)
    features = sp.csr_matrix(features, dtype=np.float32)
    transposed = features.T.tocsc()
    block = max(1, ROWS_PER_BLOCK_ELEMENTS // max(n, 1))
    rows, cols, weights = [], [], []
    for start in range(0, n, block):
        stop = min(start + block, n)
        similarity = (features[start:stop] @ transposed).toarray()
        similarity[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        rows.append(np.repeat(np.arange(start, stop), k))
        cols.append(nearest.ravel())
        weights.append(np.take_along_axis(similarity, nearest, axis=1).ravel())
    directed = sp.csr_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    directed.data[~np.isfinite(directed.data) | (directed.data < 0)] = 0.0
    directed.eliminate_zeros()
    return directed.maximum(directed.T).tocsr().astype(np.float32)


def local_scaling(graph: sp.csr_matrix, neighbour: int = SCALE_NEIGHBOUR) -> sp.csr_matrix:
    """Reweight a symmetric kNN cosine graph to exp(−d_ij² / (σ_i σ_j)), d = 1 − cosine and
    σ_i the distance from i to its `neighbour`-th nearest document (self-tuning spectral
    clustering): a dense region's edges are judged on its own scale, so a large k adds weak
    links instead of drowning the nearest ones."""
    graph = sp.csr_matrix(graph, dtype=np.float32, copy=True)
    scale = np.ones(graph.shape[0], dtype=np.float32)
    for row in range(graph.shape[0]):
        weights = graph.data[graph.indptr[row] : graph.indptr[row + 1]]
        if len(weights):
            nth = min(neighbour, len(weights)) - 1
            scale[row] = 1.0 + np.partition(-weights, nth)[nth]  # 1 − nth largest cosine
    scale = np.maximum(scale, 1e-6)
    rows = np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))
    distance = 1.0 - graph.data
    graph.data = np.exp(-(distance**2) / (scale[rows] * scale[graph.indices])).astype(np.float32)
    return graph


def normalized_adjacency(graph: sp.csr_matrix) -> sp.csr_matrix:
    """D^-½ W D^-½ of a symmetric weighted graph; isolated nodes keep an all-zero row."""
    degree = np.asarray(graph.sum(axis=1)).ravel()
    inverse_root = np.zeros_like(degree)
    inverse_root[degree > 0] = 1.0 / np.sqrt(degree[degree > 0])
    scaling = sp.diags(inverse_root)
    return (scaling @ graph @ scaling).tocsr()


def spectral_decomposition(
    graph: sp.csr_matrix, dims: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvalues (dims,), eigenvectors (n, dims)) of the `dims` leading non-trivial
    eigenpairs of the normalised adjacency, in decreasing eigenvalue order (the top one,
    ∝ √degree, carries no cluster information and is skipped)."""
    n = graph.shape[0]
    if not 1 <= dims <= n - 2:
        raise ValueError(f"dims must be in 1..{n - 2} for {n} nodes, got {dims}")
    start_vector = np.random.default_rng(seed).standard_normal(n)
    values, vectors = eigsh(normalized_adjacency(graph), k=dims + 1, which="LA", v0=start_vector)
    order = np.argsort(-values)
    return values[order[1:]], vectors[:, order[1:]]


def diffusion_embedding(graph: sp.csr_matrix, dims: int, seed: int = 0) -> np.ndarray:
    """(n, dims) √n-scaled leading eigenvectors, each times max(λ, 0) ** DIFFUSION_TIME.

    Weighting replaces a hard cut-off: strong cluster directions (λ near 1) dominate, later
    ones (within-cluster noise) fade smoothly, whatever the corpus's spectrum looks like."""
    values, vectors = spectral_decomposition(graph, dims, seed)
    weights = np.maximum(values, 0.0) ** DIFFUSION_TIME
    return vectors * weights * np.sqrt(graph.shape[0])


def itq_rotation(
    embedding: np.ndarray, bits: int | None = None, iterations: int = ITQ_ITERATIONS, seed: int = 0
) -> np.ndarray:
    """(dims, bits) projection with orthonormal columns minimising ‖sign(V R) − V R‖ for centred
    rows V (Gong & Lazebnik's ITQ; bits < dims keeps the best-quantised `bits` directions)."""
    dims = embedding.shape[1]
    bits = dims if bits is None else bits
    if not 1 <= bits <= dims:
        raise ValueError(f"bits must be in 1..{dims}, got {bits}")
    rng = np.random.default_rng(seed)
    rotation = np.linalg.qr(rng.standard_normal((dims, dims)))[0][:, :bits]
    for _ in range(iterations):
        signs = np.where(embedding @ rotation >= 0, 1.0, -1.0)
        left, _, right = np.linalg.svd(embedding.T @ signs, full_matrices=False)
        rotation = left @ right
    return rotation


def block_rotation(embedding: np.ndarray, bits: int, seed: int = 0) -> np.ndarray:
    """(dims, bits) projection: ITQ on min(bits, dims) directions, then random orthogonal blocks
    until `bits` columns."""
    dims = embedding.shape[1]
    blocks = [itq_rotation(embedding, min(bits, dims), seed=seed)]
    rng = np.random.default_rng(seed + 1)
    while dims * len(blocks) < bits:
        blocks.append(np.linalg.qr(rng.standard_normal((dims, dims)))[0])
    return np.concatenate(blocks, axis=1)[:, :bits]


@dataclass(frozen=True)
class SpectralTeacher:
    """Target bits of the graph's documents, and the projection that produced them."""

    embedding: np.ndarray  # (n, dims) the diffusion embedding
    mean: np.ndarray  # (dims,) mean subtracted before projecting
    rotation: np.ndarray  # (dims, bits) ITQ rotation plus random rotation blocks
    bits_matrix: np.ndarray  # (n, bits) bool teacher codes: sign of embedding @ rotation

    def quantize(self, embedding: np.ndarray) -> np.ndarray:
        """Bool codes of (possibly out-of-sample) embedding rows, with the teacher's rotation."""
        return (embedding - self.mean) @ self.rotation >= 0

    def projection(self) -> np.ndarray:
        """(n, bits) float32: each document's centred embedding projected on each bit."""
        return ((self.embedding - self.mean) @ self.rotation).astype(np.float32)

    def soft_bits(self, sharpness: float) -> np.ndarray:
        """(n, bits) float32 targets in (0, 1): sigmoid(sharpness · projection / its std per bit).

        Each target keeps the sign of the hard bit but also how far the document sits from the
        bit's boundary, so the student is not pushed as hard on documents the teacher is unsure of.
        """
        projection = self.projection()
        spread = projection.std(axis=0, keepdims=True)
        spread[spread == 0] = 1.0
        return expit(sharpness * projection / spread).astype(np.float32)


def fit_spectral_teacher(
    features: sp.csr_matrix, bits: int, k: int = 60, seed: int = 0
) -> SpectralTeacher:
    """Locally scaled kNN graph of unit-length `features`, its diffusion embedding of
    `TEACHER_DIMS` dims (fewer on tiny corpora), ITQ projection to `bits` (plus random rotation
    blocks when bits exceed the dims), signs."""
    dims = min(TEACHER_DIMS, features.shape[0] - 2)
    raw = diffusion_embedding(local_scaling(knn_graph(features, k)), dims, seed)
    mean = raw.mean(axis=0)
    rotation = block_rotation(raw - mean, bits, seed=seed)
    return SpectralTeacher(raw, mean, rotation, (raw - mean) @ rotation >= 0)


def teacher_plan(bits: int, k: int) -> list[tuple[int, int]]:
    """(graph k, bits) per teacher block: one graph for short codes, three for long ones.

    Long codes gain from embeddings of differently sized neighbourhoods, while 16 and 32 bits
    lose from the split (docs/model.md).
    """
    if bits < MULTI_GRAPH_MIN_BITS:
        return [(k, bits)]
    ks = [max(1, round(k * scale)) for scale in GRAPH_K_SCALES]
    sizes = [bits // len(ks)] * len(ks)
    sizes[0] += bits - sum(sizes)
    return list(zip(ks, sizes, strict=True))
