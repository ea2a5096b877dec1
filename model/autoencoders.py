"""Autoencoders with a b-bit code layer: a sparse-input encoder, a softmax decoder, five variants.

Every variant shares the architecture and the reconstruction loss (the multinomial log-likelihood
of the document's word counts under a softmax over the vocabulary); they differ in the regulariser
and in how training pushes the code units towards 0/1:

- deterministic variants (`undercomplete`, `sparse`, `denoising`, `contractive`) add Gaussian noise
  to the code layer's logits before the sigmoid (Salakhutdinov & Hinton), so only saturated units
  carry information through the noise;
- `variational` samples Bernoulli bits and passes gradients straight through the sampling.

At inference a bit is 1 exactly when its logit is positive (sigmoid above ½).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

VARIANTS: tuple[str, ...] = ("undercomplete", "sparse", "denoising", "contractive", "variational")


@dataclass
class SparseBatch:
    """Documents in EmbeddingBag form; TF-IDF and counts share one sparsity pattern."""

    indices: Tensor  # int64 (nnz,): vocabulary column of each nonzero entry, row by row
    offsets: Tensor  # int64 (n,): where each document's entries start in `indices`
    rows: Tensor  # int64 (nnz,): document (row) of each nonzero entry
    tfidf: Tensor  # float32 (nnz,): encoder input weights
    counts: Tensor  # float32 (nnz,): reconstruction targets
    size: int  # number of documents n

    @classmethod
    def from_csr(cls, tfidf: sp.csr_matrix, counts: sp.csr_matrix | None = None) -> SparseBatch:
        """Build a batch from TF-IDF rows and (optionally) count rows with the same pattern."""
        counts = tfidf if counts is None else counts
        if not np.array_equal(tfidf.indices, counts.indices):
            raise ValueError("tfidf and counts must share their sparsity pattern")
        lengths = np.diff(tfidf.indptr)
        return cls(
            indices=torch.from_numpy(tfidf.indices.astype(np.int64)),
            offsets=torch.from_numpy(tfidf.indptr[:-1].astype(np.int64)),
            rows=torch.from_numpy(np.repeat(np.arange(tfidf.shape[0], dtype=np.int64), lengths)),
            tfidf=torch.from_numpy(tfidf.data.astype(np.float32)),
            counts=torch.from_numpy(counts.data.astype(np.float32)),
            size=tfidf.shape[0],
        )

    def to(self, device: torch.device | str) -> SparseBatch:
        """The same batch with every tensor on `device`."""
        return SparseBatch(
            indices=self.indices.to(device),
            offsets=self.offsets.to(device),
            rows=self.rows.to(device),
            tfidf=self.tfidf.to(device),
            counts=self.counts.to(device),
            size=self.size,
        )


class Encoder(nn.Module):
    """f(x): sparse TF-IDF input → ReLU hidden layers → `bits` code-layer logits."""

    def __init__(self, vocab_size: int, hidden_sizes: Sequence[int], bits: int) -> None:
        """Build the layers; the first is an EmbeddingBag so the input cost scales with the
        nonzero words. Its gradient stays dense: a batch touches much of the vocabulary, so
        sparse updates do not pay."""
        super().__init__()
        if not hidden_sizes:
            raise ValueError("the encoder needs at least one hidden layer")
        self.input_layer = nn.EmbeddingBag(vocab_size, hidden_sizes[0], mode="sum")
        self.input_bias = nn.Parameter(torch.zeros(hidden_sizes[0]))
        layers: list[nn.Module] = [nn.ReLU()]
        for size_in, size_out in itertools.pairwise(hidden_sizes):
            layers += [nn.Linear(size_in, size_out), nn.ReLU()]
        layers.append(nn.Linear(hidden_sizes[-1], bits))
        self.upper = nn.Sequential(*layers)
        nn.init.normal_(self.input_layer.weight, std=1.0 / math.sqrt(hidden_sizes[0]))

    def first_layer(self, indices: Tensor, offsets: Tensor, weights: Tensor) -> Tensor:
        """Pre-activation of the first hidden layer: Σ_j x_j W[j] + bias over nonzero inputs."""
        summed = self.input_layer(indices, offsets, per_sample_weights=weights)
        return summed + self.input_bias

    def forward(self, indices: Tensor, offsets: Tensor, weights: Tensor) -> Tensor:
        """Code-layer logits (n, bits)."""
        return self.upper(self.first_layer(indices, offsets, weights))


class Decoder(nn.Module):
    """g(h): code → log-probabilities of every vocabulary word (softmax over V)."""

    def __init__(self, bits: int, vocab_size: int) -> None:
        """One linear map from the code to word logits."""
        super().__init__()
        self.output = nn.Linear(bits, vocab_size)

    def forward(self, code: Tensor) -> Tensor:
        """Log-softmax word distribution (n, V): batch × V is dense, documents × V never is."""
        return F.log_softmax(self.output(code), dim=1)


def multinomial_nll(decoder: Decoder, code: Tensor, batch: SparseBatch) -> Tensor:
    """−Σ_w c_w log softmax(z)_w per document, averaged over the batch.

    Written as Σ_n N_n logsumexp(z_n) − Σ_w c_w z_w with N_n the document's word count: only the
    logsumexp needs the dense (n, V) logits; the z_w of the words present are gathered dot
    products, so no dense (n, V) gradient scatter is needed for them.
    """
    weight, bias = decoder.output.weight, decoder.output.bias
    log_normaliser = torch.logsumexp(decoder.output(code), dim=1)
    word_totals = code.new_zeros(batch.size).index_add_(0, batch.rows, batch.counts)
    present = (code[batch.rows] * weight[batch.indices]).sum(dim=1) + bias[batch.indices]
    return ((word_totals * log_normaliser).sum() - (batch.counts * present).sum()) / batch.size


class SemanticHashingAutoencoder(nn.Module):
    """The `undercomplete` variant and the base of the others: L(x, g(f(x))) through b bits.

    Subclasses extend `loss_terms` with named extra terms; training minimises their sum, so a new
    objective (e.g. a neighbour-reconstruction term) is one more entry in the returned dict.
    """

    variant = "undercomplete"

    def __init__(
        self,
        vocab_size: int,
        bits: int,
        hidden_sizes: Sequence[int] = (500, 500),
        noise_std: float = 1.0,
        penalty: float = 0.0,
        corruption: float = 0.0,
    ) -> None:
        """Build encoder and decoder; variants read `penalty` and `corruption` as they need."""
        super().__init__()
        if bits % 8 or not 8 <= bits <= 128:
            raise ValueError(f"bits must be a multiple of 8 in 8..128, got {bits}")
        self.bits = bits
        self.noise_std = noise_std
        self.penalty = penalty
        self.corruption = corruption
        self.encoder = Encoder(vocab_size, hidden_sizes, bits)
        self.decoder = Decoder(bits, vocab_size)

    def training_code(self, logits: Tensor) -> Tensor:
        """Code fed to the decoder while training: sigmoid of the logits plus Gaussian noise."""
        if self.noise_std > 0:
            logits = logits + self.noise_std * torch.randn_like(logits)
        return torch.sigmoid(logits)

    def loss_terms(self, batch: SparseBatch) -> dict[str, Tensor]:
        """Named loss terms of one batch; the training objective is their sum."""
        logits = self.encoder(batch.indices, batch.offsets, batch.tfidf)
        code = self.training_code(logits)
        return {"reconstruction": multinomial_nll(self.decoder, code, batch)}

    @torch.no_grad()
    def encode_bits(self, batch: SparseBatch) -> Tensor:
        """Deterministic binary code (n, bits) as bool: bit i is 1 when sigmoid(logit_i) > ½."""
        return self.encoder(batch.indices, batch.offsets, batch.tfidf) > 0


class SparseAutoencoder(SemanticHashingAutoencoder):
    """Adds Ω(h) = λ Σ_i |h_i| on the code layer (h = sigmoid of the noise-free logits)."""

    variant = "sparse"

    def loss_terms(self, batch: SparseBatch) -> dict[str, Tensor]:
        """Reconstruction plus the L1 sparsity penalty on the code units."""
        logits = self.encoder(batch.indices, batch.offsets, batch.tfidf)
        recon = multinomial_nll(self.decoder, self.training_code(logits), batch)
        sparsity = self.penalty * torch.sigmoid(logits).abs().sum() / batch.size
        return {"reconstruction": recon, "sparsity": sparsity}


def corrupt(batch: SparseBatch, level: float, generator: torch.Generator | None = None) -> Tensor:
    """Masking noise: the input weights with each nonzero word dropped with probability `level`."""
    keep = torch.rand(batch.tfidf.shape, generator=generator, device=batch.tfidf.device) >= level
    return batch.tfidf * keep


class DenoisingAutoencoder(SemanticHashingAutoencoder):
    """Minimises L(x, g(f(x̃))): encodes a word-dropout copy x̃, reconstructs the clean counts."""

    variant = "denoising"

    def loss_terms(self, batch: SparseBatch) -> dict[str, Tensor]:
        """Reconstruction of the clean document from its corrupted copy."""
        noisy_input = corrupt(batch, self.corruption)
        logits = self.encoder(batch.indices, batch.offsets, noisy_input)
        return {"reconstruction": multinomial_nll(self.decoder, self.training_code(logits), batch)}


def jacobian_probe_norm(
    encoder: Encoder, batch: SparseBatch, probes: Tensor, create_graph: bool = True
) -> Tensor:
    """Σ_n ‖J_nᵀ v_n‖² for code h = sigmoid(f(x)), J_n = ∂h/∂x over document n's nonzero inputs.

    The first layer is linear in x, so ∂h/∂x_j = (∂h/∂a) W[j] with a its pre-activation: one
    backward pass to a, then a gather of the rows W[j] of the words present. With probes v having
    E[v vᵀ] = I, the expectation is Σ_n ‖J_n‖²_F (Hutchinson).
    """
    hidden = encoder.first_layer(batch.indices, batch.offsets, batch.tfidf)
    code = torch.sigmoid(encoder.upper(hidden))
    (grad_hidden,) = torch.autograd.grad((code * probes).sum(), hidden, create_graph=create_graph)
    word_rows = F.embedding(batch.indices, encoder.input_layer.weight)
    projected = (word_rows * grad_hidden[batch.rows]).sum(dim=1)
    return (projected**2).sum()


class ContractiveAutoencoder(SemanticHashingAutoencoder):
    """Adds Ω = λ ‖∂f(x)/∂x‖²_F, estimated without bias with one Rademacher probe per document.

    x is the TF-IDF input and the Jacobian is taken w.r.t. the document's nonzero entries (the
    words it contains): those are the coordinates the encoder actually reads.
    """

    variant = "contractive"

    def loss_terms(self, batch: SparseBatch) -> dict[str, Tensor]:
        """Reconstruction plus the Hutchinson estimate of the encoder's Jacobian norm."""
        logits = self.encoder(batch.indices, batch.offsets, batch.tfidf)
        recon = multinomial_nll(self.decoder, self.training_code(logits), batch)
        probes = torch.randint(0, 2, logits.shape, device=logits.device).float() * 2 - 1
        norm = jacobian_probe_norm(self.encoder, batch, probes)
        return {"reconstruction": recon, "contractive": self.penalty * norm / batch.size}


def bernoulli_kl_to_half(probs: Tensor, eps: float = 1e-7) -> Tensor:
    """KL(Bernoulli(p) ‖ Bernoulli(½)) per unit: p ln 2p + (1−p) ln 2(1−p)."""
    p = probs.clamp(eps, 1 - eps)
    return p * torch.log(2 * p) + (1 - p) * torch.log(2 * (1 - p))


class VariationalAutoencoder(SemanticHashingAutoencoder):
    """Stochastic Bernoulli code q(h|x) with a KL term to a Bernoulli(½) prior (NASH-style).

    Bits are sampled while training and gradients go straight through the sampling; `penalty`
    weighs the KL term (1 is the evidence lower bound).
    """

    variant = "variational"

    def training_code(self, logits: Tensor) -> Tensor:
        """Sampled bits in the forward pass, d(bit)/d(prob) = 1 in the backward pass."""
        probs = torch.sigmoid(logits)
        sampled = (torch.rand_like(probs) < probs).float()
        return sampled + (probs - probs.detach())

    def loss_terms(self, batch: SparseBatch) -> dict[str, Tensor]:
        """Negative evidence lower bound: reconstruction of sampled bits plus the KL term."""
        logits = self.encoder(batch.indices, batch.offsets, batch.tfidf)
        recon = multinomial_nll(self.decoder, self.training_code(logits), batch)
        kl = bernoulli_kl_to_half(torch.sigmoid(logits)).sum() / batch.size
        return {"reconstruction": recon, "kl": self.penalty * kl}


VARIANT_CLASSES: dict[str, type[SemanticHashingAutoencoder]] = {
    cls.variant: cls
    for cls in (
        SemanticHashingAutoencoder,
        SparseAutoencoder,
        DenoisingAutoencoder,
        ContractiveAutoencoder,
        VariationalAutoencoder,
    )
}


def build_autoencoder(
    variant: str,
    vocab_size: int,
    bits: int,
    hidden_sizes: Sequence[int] = (500, 500),
    noise_std: float = 1.0,
    penalty: float = 0.0,
    corruption: float = 0.0,
) -> SemanticHashingAutoencoder:
    """Instantiate the variant named `variant` (one of VARIANTS)."""
    if variant not in VARIANT_CLASSES:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return VARIANT_CLASSES[variant](
        vocab_size,
        bits,
        hidden_sizes=tuple(hidden_sizes),
        noise_std=noise_std,
        penalty=penalty,
        corruption=corruption,
    )
