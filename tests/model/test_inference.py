"""FastEncoder: a text's code never depends on its call, and agrees with the torch module.

Agreement with the module is exact except where a logit is within float32 rounding of 0 (the
kernel sums in its own fixed order); agreement between a text alone, in any batch, and through
the featurizer's sparse matrix is exact, bit for bit.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from docbits.model.autoencoders import SemanticHashingAutoencoder, SparseBatch, build_autoencoder
from docbits.model.corpus import load_corpus
from docbits.model.featurizer import Featurizer
from docbits.model.graph import sublinear_tfidf
from docbits.model.hasher import Hasher
from docbits.model.inference import supported
from tests.model.test_train import synthetic_corpus

training = importlib.import_module("docbits.model.train")

ODD_TEXTS = [
    "topic0word1 topic0word1 topic0word1 common3",
    "TOPIC2WORD7 common1, common1; the and of",
    "",
    "   ",
    "nothing known here",
    "common0 " * 500,
]


def module_batch(hasher: Hasher, texts: list[str]) -> SparseBatch:
    """The texts' TF-IDF rows (scipy) as the module's input."""
    counts = hasher.featurizer.counts(texts)
    if hasher.input_weighting == "sublinear":
        return SparseBatch.from_csr(sublinear_tfidf(counts, hasher.featurizer.idf))
    return SparseBatch.from_csr(hasher.featurizer.tfidf(counts=counts))


def module_logits(hasher: Hasher, texts: list[str]) -> torch.Tensor:
    """Code-layer logits from the autoencoder module."""
    batch = module_batch(hasher, texts)
    with torch.no_grad():
        return hasher.model.encoder(batch.indices, batch.offsets, batch.tfidf)


def torch_path(hasher: Hasher, texts: list[str]) -> np.ndarray:
    """Packed codes from the module's own `encode_bits`."""
    with torch.no_grad():
        return np.packbits(hasher.model.encode_bits(module_batch(hasher, texts)).numpy(), axis=1)


def reference_tfidf(hasher: Hasher, text: str) -> tuple[np.ndarray, np.ndarray]:
    """(columns, weights) of one text as the general path computes them."""
    counts = hasher.featurizer.counts([text])
    if hasher.input_weighting == "sublinear":
        row = sublinear_tfidf(counts, hasher.featurizer.idf)
    else:
        row = hasher.featurizer.tfidf(counts=counts)
    return row.indices.astype(np.int64), row.data


def assert_agrees_with_module(hasher: Hasher, texts: list[str]) -> None:
    """Bits equal the module's wherever its logit is clear of 0 by more than rounding."""
    logits = module_logits(hasher, texts).numpy()
    bits = np.unpackbits(hasher.encode(texts), axis=1)[:, : hasher.bits].astype(bool)
    clear = np.abs(logits) > 1e-4 * (1.0 + np.abs(logits).max())
    np.testing.assert_array_equal(bits[clear], logits[clear] > 0)


def assert_call_independent(hasher: Hasher, texts: list[str], sizes: tuple[int, ...]) -> None:
    """A text's code is the same alone, in calls of each size, and via the sparse matrix."""
    assert hasher.fast is not None
    alone = np.concatenate([hasher.fast.encode([text]) for text in texts])
    for size in sizes:
        for start in range(0, len(texts), size):
            chunk = texts[start : start + size]
            np.testing.assert_array_equal(hasher.fast.encode(chunk), alone[start : start + size])
    via_matrix = hasher.encode_counts(hasher.featurizer.counts(texts), batch_size=7)
    np.testing.assert_array_equal(via_matrix, alone)


@pytest.fixture(scope="module", params=["sublinear", "tfidf"])
def trained(request: pytest.FixtureRequest) -> Hasher:
    texts, labels = synthetic_corpus(n_topics=3, docs_per_topic=20)
    config = training.TrainConfig(
        bits=24,
        variant="undercomplete",
        hidden_sizes=(32, 16),
        epochs=3,
        batch_size=32,
        input_weighting=request.param,
    )
    return training.train(texts, config, labels=labels, progress=False)


def test_features_equal_the_general_paths_tfidf_bit_for_bit(trained: Hasher) -> None:
    texts, _ = synthetic_corpus(n_topics=3, docs_per_topic=10, seed=3)
    assert trained.fast is not None
    for text in texts + ODD_TEXTS:
        columns, weights = trained.fast.features(text)
        expected_columns, expected_weights = reference_tfidf(trained, text)
        np.testing.assert_array_equal(columns, expected_columns)
        assert weights.dtype == np.float32
        assert weights.tobytes() == expected_weights.tobytes()


def test_trained_model_codes_match_the_module_and_never_depend_on_the_call(
    trained: Hasher,
) -> None:
    texts, _ = synthetic_corpus(n_topics=3, docs_per_topic=30, seed=9)
    assert_agrees_with_module(trained, texts + ODD_TEXTS)
    assert_call_independent(trained, texts + ODD_TEXTS, sizes=(1, 5, 64))


def test_hasher_encode_featurizes_small_calls_text_by_text(
    trained: Hasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, _ = synthetic_corpus(n_topics=3, docs_per_topic=3, seed=1)
    expected = trained.encode_counts(trained.featurizer.counts(texts))

    def general_path_called(*_: object, **__: object) -> np.ndarray:
        raise AssertionError("the general path ran")

    with monkeypatch.context() as patch:
        patch.setattr(trained, "encode_counts", general_path_called)
        np.testing.assert_array_equal(trained.encode(texts), expected)
    assert trained.encode([]).shape == (0, 3)
    with monkeypatch.context() as patch:
        patch.setattr(trained, "fast", None)
        assert_agrees_with_module(trained, texts)


def hasher_around(model: SemanticHashingAutoencoder, featurizer: Featurizer) -> Hasher:
    return Hasher(featurizer, model, model.variant, input_weighting="sublinear")


@pytest.fixture(scope="module")
def small_featurizer() -> Featurizer:
    texts, _ = synthetic_corpus(n_topics=3, docs_per_topic=20)
    return Featurizer.fit(texts, min_df=1)


def test_logits_exactly_zero_give_zero_bits_on_both_paths(small_featurizer: Featurizer) -> None:
    model = build_autoencoder("undercomplete", len(small_featurizer), 16, hidden_sizes=(8,))
    with torch.no_grad():
        model.encoder.upper[-1].weight.zero_()
        model.encoder.upper[-1].bias.zero_()
    hasher = hasher_around(model, small_featurizer)
    texts, _ = synthetic_corpus(n_topics=3, docs_per_topic=4, seed=2)
    np.testing.assert_array_equal(hasher.encode(texts), np.zeros((len(texts), 2), np.uint8))
    np.testing.assert_array_equal(hasher.encode(texts), torch_path(hasher, texts))
    assert_call_independent(hasher, texts, sizes=(1, 12))


def test_logits_near_zero_are_decided_the_same_in_every_call(
    small_featurizer: Featurizer,
) -> None:
    """Shift each code unit so its logit on some text sits within a few ulps of 0: exactly
    where a batched kernel could decide a bit one way alone and the other way in a batch."""
    torch.manual_seed(0)
    model = build_autoencoder("undercomplete", len(small_featurizer), 32, hidden_sizes=(24, 24))
    texts, _ = synthetic_corpus(n_topics=3, docs_per_topic=8, seed=4)
    sparse = SparseBatch.from_csr(
        sublinear_tfidf(small_featurizer.counts(texts), small_featurizer.idf)
    )
    with torch.no_grad():
        logits = model.encoder(sparse.indices, sparse.offsets, sparse.tfidf)
        # Unit i is centred on text i's logit, so that text's logit lands at (nearly) 0.
        picked = logits[torch.arange(32) % len(texts), torch.arange(32)]
        model.encoder.upper[-1].bias -= picked
        shifted = model.encoder(sparse.indices, sparse.offsets, sparse.tfidf)
    assert (shifted.abs() < 1e-5).sum() >= 16  # really at the edge
    hasher = hasher_around(model, small_featurizer)
    assert_call_independent(hasher, texts, sizes=(1, 3, len(texts)))
    assert_agrees_with_module(hasher, texts)


class OddBits(SemanticHashingAutoencoder):
    """A model whose bits are not `logit > 0`: the fast path must not claim it."""

    @torch.no_grad()
    def encode_bits(self, batch):  # type: ignore[no-untyped-def]
        return self.encoder(batch.indices, batch.offsets, batch.tfidf) > 1


@pytest.mark.parametrize("change", ["encode_bits", "activation", "padding_index", "no_bias"])
def test_unsupported_structures_fall_back_to_the_torch_path(
    small_featurizer: Featurizer, change: str
) -> None:
    vocab = len(small_featurizer)
    model: SemanticHashingAutoencoder = build_autoencoder("undercomplete", vocab, 16, (8, 8))
    if change == "encode_bits":
        model = OddBits(vocab, 16, hidden_sizes=(8, 8))
    elif change == "activation":
        model.encoder.upper[2] = nn.Tanh()
    elif change == "padding_index":
        model.encoder.input_layer.padding_idx = 0
    else:
        model.encoder.upper[1] = nn.Linear(8, 8, bias=False)
    assert not supported(model)
    hasher = hasher_around(model, small_featurizer)
    assert hasher.fast is None
    texts, _ = synthetic_corpus(n_topics=3, docs_per_topic=2, seed=6)
    np.testing.assert_array_equal(hasher.encode(texts), torch_path(hasher, texts))
    np.testing.assert_array_equal(
        hasher.encode_counts(hasher.featurizer.counts(texts)), torch_path(hasher, texts)
    )


def test_stop_words_in_a_vocabulary_are_ignored_as_the_tokenizer_does() -> None:
    featurizer = Featurizer(["alpha", "the", "zeta"], np.array([1.0, 2.0, 3.0]), {})
    model = build_autoencoder("undercomplete", 3, 8, hidden_sizes=(4,))
    hasher = hasher_around(model, featurizer)
    assert hasher.fast is not None
    columns, _ = hasher.fast.features("the alpha the zeta")
    assert columns.tolist() == [0, 2]
    texts = ["the alpha the zeta", "the the", "zeta"]
    assert_call_independent(hasher, texts, sizes=(1, 3))
    assert_agrees_with_module(hasher, texts)


def test_real_sized_model_on_newsgroups_text_matches(newsgroups_path: Path) -> None:
    """A 10,000-term vocabulary fitted on 20 Newsgroups, a 500-500-64 encoder, real posts."""
    documents = load_corpus(newsgroups_path)
    train = [d.text for d in documents if d.split == "train"][:3000]
    queries = [d.text[:2000] for d in documents if d.split == "test"][:600]
    featurizer = Featurizer.fit(train)
    torch.manual_seed(1)
    model = build_autoencoder("variational", len(featurizer), 64, hidden_sizes=(500, 500))
    hasher = hasher_around(model, featurizer)
    assert_call_independent(hasher, queries, sizes=(1, 32, 256))
    assert_agrees_with_module(hasher, queries)
