"""`FastEncoder`: texts to codes without scipy or nn.Module overhead, bit for bit as the torch path.

A search encodes one short query. The general path (`Hasher.encode_counts`) builds a scipy
matrix of counts, weights it through scipy (TF-IDF), converts it to a `SparseBatch` and calls
the autoencoder module; for one text that costs ~0.6 ms, nearly all of it fixed per-call cost.
This path builds the EmbeddingBag inputs (columns, offsets, TF-IDF weights) with a few numpy
calls per text and runs the same ATen kernels (`embedding_bag`, `linear`, `relu`) on detached
weights, so nothing is recorded for autograd and no module dispatch runs.

Bit-identical by construction, not by tolerance: the TF-IDF weights are computed with exactly
the float32 operations, in the same order, as `Featurizer.tfidf` / `sublinear_tfidf` (scipy sums
a CSR row's squares with `np.add.reduceat`, so this does too), and the network runs the very
kernels the module calls on tensors of the same shapes. (A pure numpy forward pass was tried
first: numpy's BLAS rounds differently from torch's, and a rigorous error bound left a third of
real queries with a logit too close to 0 to decide, so they would have needed torch anyway.)
Encoders of another structure are not handled here: `FastEncoder.build` returns None and the
hasher keeps its general path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.autoencoders import Encoder, SemanticHashingAutoencoder
from model.featurizer import STOP_WORDS, TOKEN_PATTERN, Featurizer

INPUT_WEIGHTINGS = ("tfidf", "sublinear")


def supported(model: SemanticHashingAutoencoder) -> bool:
    """True when `model` encodes exactly as `FastEncoder` computes.

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
        and bag.weight.dtype == torch.float32
    ):
        return False
    layers = list(encoder.upper)
    if len(layers) < 2 or len(layers) % 2:
        return False
    return all(
        type(relu) is nn.ReLU and type(linear) is nn.Linear and linear.bias is not None
        for relu, linear in zip(layers[0::2], layers[1::2], strict=True)
    )


class FastEncoder:
    """Packed codes of texts through the encoder's own kernels, skipping scipy and nn.Module."""

    def __init__(
        self, featurizer: Featurizer, model: SemanticHashingAutoencoder, input_weighting: str
    ) -> None:
        """Keep detached views of the weights (no copy); use `build`, which checks the model."""
        if input_weighting not in INPUT_WEIGHTINGS:
            raise ValueError(f"input_weighting must be one of {INPUT_WEIGHTINGS}")
        encoder = model.encoder
        # `tokenize` drops stop words, so a stop word in the vocabulary is never counted.
        self.term_index: dict[str, int] = {
            term: column for term, column in featurizer.term_index.items() if term not in STOP_WORDS
        }
        self.idf: np.ndarray = np.asarray(featurizer.idf, dtype=np.float32)
        self.sublinear = input_weighting == "sublinear"
        self.embedding: Tensor = encoder.input_layer.weight.detach()
        self.input_bias: Tensor = encoder.input_bias.detach()
        self.linears: list[tuple[Tensor, Tensor]] = [
            (layer.weight.detach(), layer.bias.detach())
            for layer in encoder.upper
            if isinstance(layer, nn.Linear)
        ]

    @classmethod
    def build(
        cls, featurizer: Featurizer, model: SemanticHashingAutoencoder, input_weighting: str
    ) -> FastEncoder | None:
        """A fast encoder for `model`, or None when its structure is not the supported one."""
        if not supported(model) or input_weighting not in INPUT_WEIGHTINGS:
            return None
        return cls(featurizer, model, input_weighting)

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Sorted vocabulary columns (int64) of one text and their TF-IDF weights (float32).

        The same float32 operations in the same order as the featurizer + hasher path: counts,
        (1 + ln count) for sublinear, × idf, then ÷ the square root of the sum of squares as
        scipy reduces a CSR row (a row of zero norm is left as is).
        """
        term_index = self.term_index
        tokens = TOKEN_PATTERN.findall(text.lower())
        ids = [term_index[token] for token in tokens if token in term_index]
        columns, counts = np.unique(np.asarray(ids, dtype=np.int64), return_counts=True)
        values = counts.astype(np.float32)
        if self.sublinear:
            values = 1.0 + np.log(values)
        weights = values * self.idf[columns]
        if len(weights):
            norm = np.sqrt(np.add.reduceat(weights * weights, [0])[0])
            if norm != 0:
                weights = weights / norm
        return columns, weights

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Packed codes uint8 (n, bits/8), equal to `Hasher.encode_counts` for the same texts."""
        per_text = [self.features(text) for text in texts]
        lengths = np.fromiter((len(columns) for columns, _ in per_text), np.int64, len(texts))
        offsets = np.zeros(len(texts), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        columns = np.concatenate([c for c, _ in per_text]) if texts else np.zeros(0, np.int64)
        weights = np.concatenate([w for _, w in per_text]) if texts else np.zeros(0, np.float32)
        with torch.inference_mode():
            hidden = F.embedding_bag(
                torch.from_numpy(columns),
                self.embedding,
                torch.from_numpy(offsets),
                mode="sum",
                per_sample_weights=torch.from_numpy(weights.astype(np.float32, copy=False)),
            )
            hidden = hidden + self.input_bias
            for weight, bias in self.linears:
                hidden = F.linear(torch.relu(hidden), weight, bias)
            bits = (hidden > 0).numpy()
        return np.packbits(bits, axis=1)
