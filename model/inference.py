"""`FastEncoder`: the compiled inference path, texts (or TF-IDF rows) to packed codes.

Every code the service stores or searches with comes from here, so a document and a query with
the same text get the same code, whatever else shares their call. torch's batched kernels do
not promise that: a row's sums may be ordered differently in a batch of 512 than alone, and a
logit near 0 can then flip its bit. This path computes each row on its own, in a fixed order:

- features: tokens → sorted vocabulary columns and TF-IDF weights with exactly the float32
  operations, in the same order, as `Featurizer.tfidf` / `sublinear_tfidf` (scipy sums a CSR
  row's squares with `np.add.reduceat`, so this does too), so a text and its row of the general
  featurizer's matrix are equal bit for bit;
- network: one numba kernel (`logit_rows`) runs the EmbeddingBag sum, the bias and every
  (ReLU, Linear) layer for one row at a time, accumulating in float32 in input order; the bit
  is `logit > 0` as in `SemanticHashingAutoencoder.encode_bits`. The same logits, quantised
  (`docbits.model.rescore.quantize`), are the compact form that rescoring ranks candidates by.

It also avoids the fixed cost of scipy, autograd and `nn.Module` calls, most of a query's
encode through torch's kernels (the A/B is on docs/results/service.md). Its logits equal the
module's up to float32 rounding (tested); a bit can differ from the module's only where the
logit is within rounding of 0. Encoders of another structure are not handled:
`FastEncoder.build` returns None and the hasher keeps the torch path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from numba import njit
from torch import nn

from docbits.model.autoencoders import Encoder, SemanticHashingAutoencoder
from docbits.model.featurizer import STOP_WORDS, Featurizer, tokenize
from docbits.model.term_counts import TermTable
from docbits.model.term_counts import warm_up as warm_up_term_counts

INPUT_WEIGHTINGS = ("tfidf", "sublinear")


def supported(model: SemanticHashingAutoencoder) -> bool:
    """True when `model` encodes exactly as `logit_rows` computes.

    That is: the stock `encode_bits` (bit = logit > 0) and `Encoder.forward`; a float32
    EmbeddingBag in sum mode with no max_norm or padding index; then `upper` exactly ReLU,
    (Linear, ReLU)*, Linear, every Linear with a bias.
    """
    encoder = model.encoder
    bag = encoder.input_layer
    if not (
        type(model).encode_bits is SemanticHashingAutoencoder.encode_bits
        and type(encoder) is Encoder
        and type(bag) is nn.EmbeddingBag
        and bag.mode == "sum"
        and bag.max_norm is None
        and bag.padding_idx is None
        and not bag.include_last_offset
        and bag.weight.dtype.is_floating_point
    ):
        return False
    layers = list(encoder.upper)
    if len(layers) < 2 or len(layers) % 2:
        return False
    return all(
        type(relu) is nn.ReLU and type(linear) is nn.Linear and linear.bias is not None
        for relu, linear in zip(layers[0::2], layers[1::2], strict=True)
    )


@njit(cache=True, nogil=True)
def logit_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    weights: np.ndarray,
    embedding: np.ndarray,
    input_bias: np.ndarray,
    sizes: np.ndarray,
    layer_weights: np.ndarray,
    layer_biases: np.ndarray,
) -> np.ndarray:
    """Logits (n, sizes[-1]) float32 of n CSR rows: ReLU(Σ w·embedding[col] + input_bias),
    then the layers.

    Layer l maps sizes[l] → sizes[l+1] units; its weights are stored input-major (transposed
    from torch's (out, in)) one after another in `layer_weights`, its biases in `layer_biases`,
    so each input unit adds a contiguous row to the outputs (vectorised, order fixed). ReLU
    runs before every layer; the last layer's outputs are the logits.
    """
    rows = indptr.shape[0] - 1
    widest = sizes.max()
    logits = np.empty((rows, sizes[-1]), dtype=np.float32)
    current = np.empty(widest, dtype=np.float32)
    following = np.empty(widest, dtype=np.float32)
    first = sizes[0]
    for row in range(rows):
        for unit in range(first):
            current[unit] = 0.0
        for position in range(indptr[row], indptr[row + 1]):
            column = indices[position]
            weight = weights[position]
            for unit in range(first):
                current[unit] += weight * embedding[column, unit]
        for unit in range(first):
            current[unit] += input_bias[unit]
        weight_start = 0
        bias_start = 0
        for layer in range(sizes.shape[0] - 1):
            size_in = sizes[layer]
            size_out = sizes[layer + 1]
            # 2-D views with range-derived indices let LLVM vectorise the inner loop.
            matrix = layer_weights[weight_start : weight_start + size_in * size_out].reshape(
                (size_in, size_out)
            )
            bias = layer_biases[bias_start : bias_start + size_out]
            for unit in range(size_out):
                following[unit] = bias[unit]
            for source in range(size_in):
                value = current[source]
                if value > 0.0:  # ReLU; a zero input adds nothing
                    for unit in range(size_out):
                        following[unit] += value * matrix[source, unit]
            current, following = following, current
            weight_start += size_in * size_out
            bias_start += size_out
        for unit in range(sizes[-1]):
            logits[row, unit] = current[unit]
    return logits


class FastEncoder:
    """Packed codes (and code-layer logits) of texts or TF-IDF rows through `logit_rows`, one
    row at a time."""

    def __init__(
        self, featurizer: Featurizer, model: SemanticHashingAutoencoder, input_weighting: str
    ) -> None:
        """Lay the weights out for the kernel; use `build`, which checks the model."""
        if input_weighting not in INPUT_WEIGHTINGS:
            raise ValueError(f"input_weighting must be one of {INPUT_WEIGHTINGS}")
        encoder = model.encoder
        # `tokenize` drops stop words, so a stop word in the vocabulary is never counted.
        self.term_index: dict[str, int] = {
            term: column for term, column in featurizer.term_index.items() if term not in STOP_WORDS
        }
        self.idf: np.ndarray = np.asarray(featurizer.idf, dtype=np.float32)
        self.table = TermTable(self.term_index)
        self.sublinear = input_weighting == "sublinear"
        self.embedding = _float32(encoder.input_layer.weight)
        self.input_bias = _float32(encoder.input_bias)
        linears = [layer for layer in encoder.upper if isinstance(layer, nn.Linear)]
        self.sizes = np.array(
            [self.embedding.shape[1]] + [layer.out_features for layer in linears], dtype=np.int64
        )
        self.layer_weights = np.concatenate([_float32(layer.weight).T.ravel() for layer in linears])
        self.layer_biases = np.concatenate([_float32(layer.bias) for layer in linears])
        self.bits = int(self.sizes[-1])

    @classmethod
    def build(
        cls, featurizer: Featurizer, model: SemanticHashingAutoencoder, input_weighting: str
    ) -> FastEncoder | None:
        """A fast encoder for `model`, or None when its structure is not the supported one."""
        if not supported(model) or input_weighting not in INPUT_WEIGHTINGS:
            return None
        warm_up()
        return cls(featurizer, model, input_weighting)

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Sorted vocabulary columns (int64) of one text and their TF-IDF weights (float32)."""
        _, columns, weights = self.tfidf_rows([text])
        return columns, weights

    def tfidf_rows(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR (indptr, sorted columns, float32 weights) of texts, equal bit for bit to the
        rows of `Featurizer.tfidf` / `sublinear_tfidf` for the same texts.

        The same float32 operations in the same order as that path: counts, (1 + ln count)
        for sublinear, × idf, then ÷ the square root of each row's sum of squares reduced by
        `np.add.reduceat` as scipy does (a row of zero norm is left as is).
        """
        indptr, columns, counts = self.term_counts(texts)
        values = counts.astype(np.float32)
        if self.sublinear:
            values = 1.0 + np.log(values)
        weights = values * self.idf[columns]
        lengths = np.diff(indptr)
        filled = lengths > 0
        if filled.any():
            norms = np.sqrt(np.add.reduceat(weights * weights, indptr[:-1][filled]))
            norms[norms == 0] = 1
            weights = weights / np.repeat(norms, lengths[filled])
        return indptr, columns, weights

    def term_counts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR (indptr, sorted columns, counts): ASCII texts counted by the compiled
        `TermTable` (without the GIL), others by the tokenizer's regex in Python."""
        if all(text.isascii() for text in texts):
            return self.table.count(texts)
        rows = [
            self._ascii_row(text) if text.isascii() else self._python_row(text) for text in texts
        ]
        indptr = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum([len(columns) for columns, _ in rows], out=indptr[1:])
        columns = np.concatenate([columns for columns, _ in rows])
        counts = np.concatenate([counts for _, counts in rows])
        return indptr, columns, counts

    def _ascii_row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(columns, counts) of one ASCII text through the compiled table."""
        _, columns, counts = self.table.count([text])
        return columns, counts

    def _python_row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(columns, counts) of one text of any alphabet through the featurizer's tokenizer."""
        term_index = self.term_index
        ids = [term_index[token] for token in tokenize(text) if token in term_index]
        return np.unique(np.asarray(ids, dtype=np.int64), return_counts=True)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Packed codes uint8 (n, bits/8) of texts."""
        return pack_codes(self.logits(texts))

    def encode_tfidf(self, tfidf: sp.csr_matrix) -> np.ndarray:
        """Packed codes of TF-IDF rows (the featurizer's CSR matrix, float32)."""
        return pack_codes(self.logits_tfidf(tfidf))

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Code-layer logits float32 (n, bits) of texts; bit i of the code is logit i > 0."""
        return self.logits_csr(*self.tfidf_rows(texts))

    def logits_tfidf(self, tfidf: sp.csr_matrix) -> np.ndarray:
        """Code-layer logits of TF-IDF rows (the featurizer's CSR matrix, float32)."""
        tfidf = sp.csr_matrix(tfidf)
        if not tfidf.has_sorted_indices:
            tfidf = tfidf.sorted_indices()  # a copy: the caller's matrix stays as it was
        return self.logits_csr(tfidf.indptr, tfidf.indices, tfidf.data)

    def logits_csr(
        self, indptr: np.ndarray, columns: np.ndarray, weights: np.ndarray
    ) -> np.ndarray:
        """Code-layer logits float32 (n, bits) of CSR rows (indptr, sorted columns, weights)."""
        return logit_rows(
            np.asarray(indptr, dtype=np.int64),
            np.asarray(columns, dtype=np.int64),
            np.asarray(weights, dtype=np.float32),
            self.embedding,
            self.input_bias,
            self.sizes,
            self.layer_weights,
            self.layer_biases,
        )


def pack_codes(logits: np.ndarray) -> np.ndarray:
    """Packed codes uint8 (n, bits/8) of logits: bit i is 1 exactly when logit i > 0."""
    return np.packbits(logits > 0.0, axis=1)


def _float32(parameter: nn.Parameter) -> np.ndarray:
    """A parameter as a C-contiguous float32 array (a view of it when already so)."""
    return np.ascontiguousarray(parameter.detach().cpu().numpy(), dtype=np.float32)


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels now rather than on the first search."""
    warm_up_term_counts()
    sizes = np.array([2, 2, 8], dtype=np.int64)
    logit_rows(
        np.array([0, 1], dtype=np.int64),
        np.array([0], dtype=np.int64),
        np.ones(1, dtype=np.float32),
        np.ones((1, 2), dtype=np.float32),
        np.zeros(2, dtype=np.float32),
        sizes,
        np.ones(20, dtype=np.float32),
        np.zeros(10, dtype=np.float32),
    )
