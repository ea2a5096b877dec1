"""Autoencoder variants: each loss term is what it claims to be."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.distributions import Bernoulli, kl_divergence

from docbits.model.autoencoders import (
    VARIANTS,
    SparseBatch,
    bernoulli_kl_to_half,
    build_autoencoder,
    corrupt,
    jacobian_probe_norm,
)

VOCAB = 30


def random_documents(n_docs: int = 6, seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(tfidf-like, counts) of random sparse documents; every document has at least one word."""
    rng = np.random.default_rng(seed)
    counts = sp.random(n_docs, VOCAB, density=0.3, format="csr", random_state=rng, dtype=np.float32)
    counts.data = np.ceil(counts.data * 5).astype(np.float32)
    one_word_each = (np.ones(n_docs), (np.arange(n_docs), np.arange(n_docs) % VOCAB))
    counts = sp.csr_matrix(
        counts + sp.csr_matrix(one_word_each, shape=counts.shape), dtype=np.float32
    )
    counts.sort_indices()
    tfidf = counts.copy()
    tfidf.data = tfidf.data / np.repeat(
        np.sqrt(np.asarray(counts.multiply(counts).sum(1)).ravel()), np.diff(counts.indptr)
    )
    return tfidf, counts


def random_batch(n_docs: int = 6, seed: int = 0) -> SparseBatch:
    """A SparseBatch of random documents."""
    return SparseBatch.from_csr(*random_documents(n_docs, seed))


def dense(values: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
    """The (n, V) dense matrix of per-entry values of a batch (test-only helper)."""
    out = torch.zeros(batch.size, VOCAB)
    out[batch.rows, batch.indices] = values
    return out


def test_variants_are_the_five_names() -> None:
    assert VARIANTS == ("undercomplete", "sparse", "denoising", "contractive", "variational")
    for variant in VARIANTS:
        assert build_autoencoder(variant, VOCAB, 8).variant == variant


@pytest.mark.parametrize("bits", [0, 4, 12, 136])
def test_bits_must_be_a_multiple_of_8_within_range(bits: int) -> None:
    with pytest.raises(ValueError):
        build_autoencoder("undercomplete", VOCAB, bits)


def test_unknown_variant_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        build_autoencoder("hyperbolic", VOCAB, 8)


def test_reconstruction_is_the_multinomial_log_likelihood_of_counts() -> None:
    torch.manual_seed(0)
    model = build_autoencoder("undercomplete", VOCAB, 16, hidden_sizes=(12,), noise_std=0.0)
    batch = random_batch()
    recon = model.loss_terms(batch)["reconstruction"]
    code = torch.sigmoid(model.encoder(batch.indices, batch.offsets, batch.tfidf))
    log_probs = torch.log_softmax(model.decoder.output(code), dim=1)
    expected = -(dense(batch.counts, batch) * log_probs).sum() / batch.size
    torch.testing.assert_close(recon, expected)


def test_encoder_reads_tfidf_weights_like_a_dense_matmul() -> None:
    torch.manual_seed(0)
    model = build_autoencoder("undercomplete", VOCAB, 8, hidden_sizes=(10,))
    batch = random_batch()
    hidden = model.encoder.first_layer(batch.indices, batch.offsets, batch.tfidf)
    expected = dense(batch.tfidf, batch) @ model.encoder.input_layer.weight
    torch.testing.assert_close(hidden, expected + model.encoder.input_bias)


def test_sparse_penalty_is_lambda_times_l1_of_the_code() -> None:
    torch.manual_seed(0)
    model = build_autoencoder("sparse", VOCAB, 16, hidden_sizes=(12,), penalty=0.3)
    batch = random_batch()
    code = torch.sigmoid(model.encoder(batch.indices, batch.offsets, batch.tfidf))
    expected = 0.3 * code.abs().sum() / batch.size
    torch.testing.assert_close(model.loss_terms(batch)["sparsity"], expected)


def test_noise_injection_perturbs_training_codes_but_not_inference_bits() -> None:
    torch.manual_seed(0)
    model = build_autoencoder("undercomplete", VOCAB, 16, hidden_sizes=(12,), noise_std=4.0)
    batch = random_batch()
    logits = model.encoder(batch.indices, batch.offsets, batch.tfidf)
    assert not torch.equal(model.training_code(logits), model.training_code(logits))
    first, second = model.encode_bits(batch), model.encode_bits(batch)
    assert torch.equal(first, second)
    assert torch.equal(first, torch.sigmoid(logits) > 0.5)


def test_corrupt_drops_about_the_requested_share_of_words() -> None:
    batch = random_batch(n_docs=200)
    generator = torch.Generator().manual_seed(0)
    noisy = corrupt(batch, 0.4, generator)
    dropped = (noisy == 0).float().mean().item()
    assert 0.35 < dropped < 0.45
    kept = noisy != 0
    torch.testing.assert_close(noisy[kept], batch.tfidf[kept])
    assert torch.equal(corrupt(batch, 0.0), batch.tfidf)


def test_denoising_encodes_the_corrupted_copy_and_reconstructs_the_clean_counts() -> None:
    torch.manual_seed(0)
    model = build_autoencoder("denoising", VOCAB, 16, hidden_sizes=(12,), noise_std=0.0)
    model.corruption = 0.5
    batch = random_batch(n_docs=40)
    seen: list[torch.Tensor] = []
    model.encoder.input_layer.register_forward_pre_hook(
        lambda _module, _args, kwargs: seen.append(kwargs["per_sample_weights"]), with_kwargs=True
    )
    recon = model.loss_terms(batch)["reconstruction"]
    encoder_input = seen[-1]
    assert 0.3 < (encoder_input == 0).float().mean().item() < 0.7
    code = torch.sigmoid(model.encoder(batch.indices, batch.offsets, encoder_input))
    log_probs = model.decoder(code)
    expected = -(dense(batch.counts, batch) * log_probs).sum() / batch.size
    torch.testing.assert_close(recon, expected)


def full_jacobian_norms(model: torch.nn.Module, batch: SparseBatch) -> torch.Tensor:
    """‖∂h/∂x‖²_F per document over its nonzero inputs, from autograd's full Jacobian."""

    def code_of(weights: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(model.encoder(batch.indices, batch.offsets, weights))

    jacobian = torch.autograd.functional.jacobian(code_of, batch.tfidf)  # (n, bits, nnz)
    own = batch.rows.unsqueeze(0) == torch.arange(batch.size).unsqueeze(1)  # (n, nnz)
    assert torch.all(jacobian[~own.unsqueeze(1).expand_as(jacobian)] == 0)
    return (jacobian**2).sum(dim=(1, 2))


def test_contractive_probe_norm_is_exact_for_a_given_probe() -> None:
    torch.manual_seed(0)
    model = build_autoencoder("contractive", VOCAB, 8, hidden_sizes=(7, 5), penalty=1.0)
    batch = random_batch(n_docs=4)
    probes = torch.randn(batch.size, 8)

    def code_of(weights: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(model.encoder(batch.indices, batch.offsets, weights))

    jacobian = torch.autograd.functional.jacobian(code_of, batch.tfidf)  # (n, bits, nnz)
    projected = torch.einsum("nb,nbj->j", probes, jacobian)
    expected = (projected**2).sum()
    torch.testing.assert_close(jacobian_probe_norm(model.encoder, batch, probes), expected)


def test_contractive_penalty_is_unbiased_for_the_squared_frobenius_norm() -> None:
    torch.manual_seed(0)
    model = build_autoencoder(
        "contractive", VOCAB, 8, hidden_sizes=(7, 5), noise_std=0.0, penalty=2.0
    )
    tfidf, counts = random_documents(n_docs=4)
    exact = 2.0 * full_jacobian_norms(model, SparseBatch.from_csr(tfidf, counts)).sum() / 4
    # 200 copies of the same 4 documents: each copy draws its own probes, so one call averages
    # 200 independent estimates of the same quantity.
    copies = SparseBatch.from_csr(sp.vstack([tfidf] * 200), sp.vstack([counts] * 200))
    estimates = torch.stack([model.loss_terms(copies)["contractive"] for _ in range(20)]).detach()
    standard_error = estimates.std() / len(estimates) ** 0.5
    assert abs(estimates.mean() - exact) < 4 * standard_error + 1e-6
    assert estimates.std() > 0  # it really is a random estimate, not the exact value


def test_contractive_penalty_has_gradients_for_every_encoder_layer() -> None:
    torch.manual_seed(0)
    model = build_autoencoder("contractive", VOCAB, 8, hidden_sizes=(7, 5), penalty=1.0)
    model.loss_terms(random_batch())["contractive"].backward()
    for name, parameter in model.encoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_bernoulli_kl_matches_torch_distributions() -> None:
    probs = torch.tensor([0.01, 0.2, 0.5, 0.7, 0.999])
    expected = kl_divergence(Bernoulli(probs=probs), Bernoulli(probs=torch.full_like(probs, 0.5)))
    torch.testing.assert_close(bernoulli_kl_to_half(probs), expected)


def test_variational_samples_bits_with_straight_through_gradients() -> None:
    torch.manual_seed(0)
    model = build_autoencoder("variational", VOCAB, 16, hidden_sizes=(12,), penalty=1.0)
    logits = torch.randn(5, 16, requires_grad=True)
    code = model.training_code(logits)
    assert set(code.detach().unique().tolist()) <= {0.0, 1.0}
    (code * torch.arange(16.0)).sum().backward()
    probs = torch.sigmoid(logits.detach())
    torch.testing.assert_close(logits.grad, probs * (1 - probs) * torch.arange(16.0))
    many = torch.stack([model.training_code(logits.detach()) for _ in range(4000)]).mean(0)
    torch.testing.assert_close(many, probs, atol=0.05, rtol=0)


def test_variational_kl_term_is_weighted_by_penalty() -> None:
    torch.manual_seed(0)
    model = build_autoencoder("variational", VOCAB, 16, hidden_sizes=(12,), penalty=0.5)
    batch = random_batch()
    probs = torch.sigmoid(model.encoder(batch.indices, batch.offsets, batch.tfidf))
    expected = 0.5 * bernoulli_kl_to_half(probs).sum() / batch.size
    torch.testing.assert_close(model.loss_terms(batch)["kl"], expected)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_every_parameter(variant: str) -> None:
    torch.manual_seed(0)
    model = build_autoencoder(variant, VOCAB, 8, hidden_sizes=(12, 10), penalty=0.1, corruption=0.2)
    terms = model.loss_terms(random_batch())
    total = sum(terms.values())
    assert torch.isfinite(total)
    total.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
