"""Classic hashing baselines on TF-IDF rows: LSH, LSA + median, ITQ and spectral hashing.

Each baseline is a function `fit(train_tfidf, bits, seed) -> encoder`; the encoder's
`encode(tfidf)` returns packed uint8 codes `(n, bits/8)` like a trained model's. The unhashed
TF-IDF cosine reference lives in `docbits.model.evaluate.evaluate_tfidf_cosine`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA, TruncatedSVD

from docbits.model.graph import itq_rotation

Features = sp.spmatrix | np.ndarray


@dataclass(frozen=True)
class LinearThresholdEncoder:
    """Bit j is on when the row's projection on column j of `projection` exceeds `thresholds[j]`."""

    projection: np.ndarray
    thresholds: np.ndarray

    @property
    def bits(self) -> int:
        """Code length."""
        return self.projection.shape[1]

    def encode(self, tfidf: Features) -> np.ndarray:
        """Packed codes of TF-IDF rows."""
        return np.packbits(_project(tfidf, self.projection) > self.thresholds, axis=1)


@dataclass(frozen=True)
class SpectralEncoder:
    """Spectral hashing: bit j thresholds a sinusoid of one PCA coordinate (Weiss et al., 2008)."""

    pca: PCA
    minimum: np.ndarray
    dimension: np.ndarray
    frequency: np.ndarray

    @property
    def bits(self) -> int:
        """Code length."""
        return len(self.dimension)

    def encode(self, tfidf: Features) -> np.ndarray:
        """Packed codes of TF-IDF rows."""
        coordinates = self.pca.transform(tfidf)[:, self.dimension] - self.minimum[self.dimension]
        return np.packbits(np.sin(np.pi / 2 + self.frequency * coordinates) > 0, axis=1)


def fit_lsh(train_tfidf: Features, bits: int, seed: int = 0) -> LinearThresholdEncoder:
    """Random-hyperplane LSH (Charikar, 2002): the sign of projections on Gaussian directions."""
    _check_bits(bits)
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((train_tfidf.shape[1], bits)).astype(np.float32)
    return LinearThresholdEncoder(projection, np.zeros(bits, dtype=np.float32))


def fit_lsa_median(train_tfidf: Features, bits: int, seed: int = 0) -> LinearThresholdEncoder:
    """LSA (truncated SVD) to `bits` dimensions, each bit thresholded at its training median."""
    _check_bits(bits)
    svd = TruncatedSVD(n_components=bits, random_state=seed).fit(train_tfidf)
    projection = svd.components_.T.astype(np.float32)
    medians = np.median(_project(train_tfidf, projection), axis=0)
    return LinearThresholdEncoder(projection, medians.astype(np.float32))


def fit_itq(train_tfidf: Features, bits: int, seed: int = 0) -> LinearThresholdEncoder:
    """Iterative quantization (Gong & Lazebnik, 2011): PCA, then the rotation that best fits signs.

    The rotation is `graph.itq_rotation`'s, fitted to the PCA coordinates.
    """
    _check_bits(bits)
    pca = _fit_pca(train_tfidf, bits, seed)
    rotation = itq_rotation(pca.transform(train_tfidf), seed=seed)
    # sign((x - mean) P R) > 0  <=>  x (P R) > mean (P R): one linear projection and thresholds.
    projection = pca.components_.T @ rotation
    return LinearThresholdEncoder(
        projection.astype(np.float32), (pca.mean_ @ projection).astype(np.float32)
    )


def fit_spectral(train_tfidf: Features, bits: int, seed: int = 0) -> SpectralEncoder:
    """Spectral hashing: PCA to `bits` dimensions, then the `bits` lowest-frequency sinusoids.

    Along a PCA coordinate of range R, mode m has eigenvalue proportional to (m / R)^2; the bits
    are the modes with the smallest eigenvalues over all coordinates (ties: lower coordinate first).
    """
    _check_bits(bits)
    pca = _fit_pca(train_tfidf, bits, seed)
    projected = pca.transform(train_tfidf)
    minimum = projected.min(axis=0)
    spread = np.maximum(projected.max(axis=0) - minimum, np.finfo(np.float64).eps)
    modes = np.arange(1, bits + 1)
    eigenvalues = (modes[None, :] / spread[:, None]) ** 2
    chosen = np.argsort(eigenvalues, axis=None, kind="stable")[:bits]
    dimension, mode_index = np.unravel_index(chosen, eigenvalues.shape)
    frequency = np.pi * modes[mode_index] / spread[dimension]
    return SpectralEncoder(pca, minimum, dimension, frequency)


BASELINES: dict[str, Callable[[Features, int, int], LinearThresholdEncoder | SpectralEncoder]] = {
    "lsh": fit_lsh,
    "lsa-median": fit_lsa_median,
    "itq": fit_itq,
    "spectral": fit_spectral,
}


def _fit_pca(train_tfidf: Features, n_components: int, seed: int) -> PCA:
    """PCA with implicit centering (ARPACK), so sparse TF-IDF is never densified."""
    if n_components >= min(train_tfidf.shape):
        raise ValueError(
            f"{n_components} components need more than {min(train_tfidf.shape)} documents/terms"
        )
    return PCA(n_components=n_components, svd_solver="arpack", random_state=seed).fit(train_tfidf)


def _project(tfidf: Features, projection: np.ndarray) -> np.ndarray:
    """Dense (n, bits) projections of sparse or dense TF-IDF rows."""
    return np.asarray(tfidf @ projection)


def _check_bits(bits: int) -> None:
    """Codes are whole bytes (the project's packbits convention): 8..128 in steps of 8."""
    if bits % 8 or not 8 <= bits <= 128:
        raise ValueError(f"bits must be a multiple of 8 in 8..128, got {bits}")
