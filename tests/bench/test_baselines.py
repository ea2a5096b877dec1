"""Baselines on a small synthetic corpus with clear topics: the better methods must find them."""

from __future__ import annotations

import numpy as np
import pytest

from bench.baselines import BASELINES, fit_itq, fit_lsa_median, fit_lsh, fit_spectral
from docbits.model.featurizer import Featurizer
from docbits.model.metrics import precision_at_k, precision_at_k_scores

N_TOPICS = 8


def topic_corpus(n_documents: int, seed: int) -> tuple[list[str], list[tuple[str, ...]]]:
    """Documents drawn 60% from their topic's 40 words and 40% from 400 shared words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for index in range(n_documents):
        topic = index % N_TOPICS
        topical = [f"topic{topic}word{w}" for w in rng.integers(0, 40, 24)]
        shared = [f"common{w}" for w in rng.integers(0, 400, 16)]
        words = topical + shared
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append((f"topic{topic}",))
    return texts, labels


@pytest.fixture(scope="module")
def features() -> dict:
    """TF-IDF of a train and a test sample of the synthetic corpus."""
    train_texts, train_labels = topic_corpus(640, seed=1)
    test_texts, test_labels = topic_corpus(160, seed=2)
    featurizer = Featurizer.fit(train_texts)
    return {
        "train": featurizer.tfidf(train_texts),
        "test": featurizer.tfidf(test_texts),
        "train_labels": train_labels,
        "test_labels": test_labels,
    }


def score(encoder, features: dict) -> float:
    """Tie-aware P@50 of an encoder's codes (test queries against the train database)."""
    return precision_at_k(
        encoder.encode(features["test"]),
        encoder.encode(features["train"]),
        features["test_labels"],
        features["train_labels"],
        k=50,
    )["tie_aware"]


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("bits", [8, 16, 32])
def test_every_baseline_gives_packed_codes(features: dict, name: str, bits: int) -> None:
    encoder = BASELINES[name](features["train"], bits, 0)
    codes = encoder.encode(features["test"])
    assert codes.dtype == np.uint8
    assert codes.shape == (features["test"].shape[0], bits // 8)
    assert encoder.bits == bits
    np.testing.assert_array_equal(
        codes, BASELINES[name](features["train"], bits, 0).encode(features["test"])
    )


def test_learned_baselines_beat_random_hyperplanes(features: dict) -> None:
    chance = 1 / N_TOPICS
    lsh = score(fit_lsh(features["train"], 16), features)
    lsa = score(fit_lsa_median(features["train"], 16), features)
    itq = score(fit_itq(features["train"], 16), features)
    spectral = score(fit_spectral(features["train"], 16), features)
    assert lsh > chance
    assert lsa > lsh + 0.1
    assert itq > lsh + 0.1
    assert spectral > chance + 0.1
    assert itq > 0.7


def test_tfidf_cosine_is_near_perfect_on_clear_topics(features: dict) -> None:
    cosine = precision_at_k_scores(
        features["test"],
        features["train"],
        features["test_labels"],
        features["train_labels"],
        k=50,
    )
    assert cosine["tie_aware"] > 0.9


def test_lsa_median_bits_are_balanced_on_training_data(features: dict) -> None:
    codes = fit_lsa_median(features["train"], 16).encode(features["train"])
    on_rate = np.unpackbits(codes, axis=1).mean(axis=0)
    assert np.all(np.abs(on_rate - 0.5) <= 0.01)


def test_itq_rotation_does_not_lose_to_plain_pca_signs(features: dict) -> None:
    itq = fit_itq(features["train"], 16)
    # Orthonormal PCA directions times an orthogonal rotation stay orthonormal.
    assert np.allclose(itq.projection.T @ itq.projection, np.eye(itq.bits), atol=1e-3)
    assert score(itq, features) >= score(fit_lsa_median(features["train"], 16), features) - 0.05


@pytest.mark.parametrize("bits", [0, 12, 136])
def test_bad_bit_counts_are_refused(features: dict, bits: int) -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        fit_lsh(features["train"], bits)
