"""kNN graph and spectral teacher: weighting, blockwise neighbours, eigenvectors, ITQ, bits."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import scipy.sparse as sp

from docbits.model import graph
from docbits.model.errors import ArtifactError
from docbits.model.graph import (
    block_rotation,
    diffusion_embedding,
    fit_spectral_teacher,
    itq_rotation,
    knn_graph,
    local_scaling,
    sublinear_tfidf,
)
from docbits.model.hasher import Hasher
from docbits.model.metrics import precision_at_k


def topic_features(
    n_topics: int = 4, docs_per_topic: int = 30, seed: int = 0
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Unit-length count rows over disjoint topic vocabularies plus shared words, and topics."""
    rng = np.random.default_rng(seed)
    own_words, shared_words = 20, 10
    vocab = n_topics * own_words + shared_words
    rows, topics = [], []
    for topic in range(n_topics):
        for _ in range(docs_per_topic):
            row = np.zeros(vocab)
            own = rng.choice(own_words, size=8) + topic * own_words
            shared = rng.choice(shared_words, size=6) + n_topics * own_words
            np.add.at(row, np.concatenate([own, shared]), 1.0)
            rows.append(row)
            topics.append(topic)
    counts = sp.csr_matrix(np.array(rows, dtype=np.float32))
    return sublinear_tfidf(counts, np.ones(vocab, dtype=np.float32)), np.array(topics)


def test_sublinear_tfidf_dampens_repeated_words_and_normalises() -> None:
    counts = sp.csr_matrix(np.array([[1.0, np.e**2, 0.0], [0.0, 0.0, 0.0]]))
    weighted = sublinear_tfidf(counts, np.array([2.0, 1.0, 5.0], dtype=np.float32)).toarray()
    expected = np.array([2.0, 3.0, 0.0]) / np.sqrt(13.0)
    np.testing.assert_allclose(weighted[0], expected, rtol=1e-5)
    np.testing.assert_array_equal(weighted[1], 0.0)


def test_sublinear_tfidf_rejects_a_mismatched_idf() -> None:
    with pytest.raises(ValueError):
        sublinear_tfidf(sp.csr_matrix(np.ones((2, 3))), np.ones(4))


def test_bm25_rows_saturate_repeats_normalise_length_and_unit_rows() -> None:
    """BM25 weights by hand (k1 1.2, b 0.75) for rows of length 4, 12 and 0 (mean 16/3)."""
    counts = sp.csr_matrix(np.array([[1.0, 3.0, 0.0], [0.0, 10.0, 2.0], [0.0, 0.0, 0.0]]))
    idf = np.array([2.0, 1.0, 3.0], dtype=np.float32)
    weighted = graph.bm25_rows(counts, idf)
    assert weighted.dtype == np.float32

    def bm25(tf: float, length: float, mean: float = 16 / 3) -> float:
        return tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / mean))

    for row, (length, terms) in enumerate([(4, {0: 1, 1: 3}), (12, {1: 10, 2: 2})]):
        expected = np.zeros(3)
        for term, tf in terms.items():
            expected[term] = bm25(tf, length) * idf[term]
        np.testing.assert_allclose(weighted[row].toarray()[0], expected / np.linalg.norm(expected))
    np.testing.assert_array_equal(weighted[2].toarray(), 0.0)
    assert bm25(10, 12) < 2.2 < 10  # ten repeats weigh less than the saturation bound
    with pytest.raises(ValueError):
        graph.bm25_rows(counts, np.ones(4))


def brute_force_knn(features: sp.csr_matrix, k: int) -> np.ndarray:
    """Dense reference: the symmetrised kNN cosine graph computed in one go."""
    similarity = (features @ features.T).toarray()
    np.fill_diagonal(similarity, -np.inf)
    directed = np.zeros_like(similarity)
    for i, row in enumerate(similarity):
        nearest = np.argsort(-row, kind="stable")[:k]
        directed[i, nearest] = np.maximum(row[nearest], 0.0)
    return np.maximum(directed, directed.T)


def test_blockwise_knn_graph_matches_the_dense_reference(monkeypatch) -> None:
    rng = np.random.default_rng(1)
    dense = rng.random((50, 12)) * (rng.random((50, 12)) < 0.5)
    features = sublinear_tfidf(sp.csr_matrix(dense * 5 + (dense > 0)), np.ones(12))
    monkeypatch.setattr(graph, "ROWS_PER_BLOCK_ELEMENTS", 7 * features.shape[0])
    built = knn_graph(features, k=5)
    np.testing.assert_allclose(built.toarray(), brute_force_knn(features, k=5), atol=1e-6)
    assert (built != built.T).nnz == 0
    assert built.diagonal().sum() == 0


def test_knn_graph_links_documents_of_the_same_topic() -> None:
    features, topics = topic_features()
    built = knn_graph(features, k=10).tocoo()
    same_topic = topics[built.row] == topics[built.col]
    assert same_topic.mean() > 0.95


def test_knn_graph_handles_tiny_inputs_and_bad_k() -> None:
    single = sublinear_tfidf(sp.csr_matrix(np.ones((1, 3))), np.ones(3))
    assert knn_graph(single, k=5).nnz == 0
    with pytest.raises(ValueError):
        knn_graph(single, k=0)


def test_diffusion_embedding_separates_connected_components() -> None:
    blocks = sp.block_diag([np.ones((5, 5)) - np.eye(5)] * 3).tocsr()
    bridge = sp.csr_matrix(([0.01, 0.01], ([4, 5], [5, 4])), shape=(15, 15))
    embedding = diffusion_embedding((blocks + bridge).tocsr(), dims=2)
    assert embedding.shape == (15, 2)
    centroids = np.array([embedding[i * 5 : (i + 1) * 5].mean(axis=0) for i in range(3)])
    spread = max(np.abs(embedding[i * 5 : (i + 1) * 5] - centroids[i]).max() for i in range(3))
    gaps = min(
        np.linalg.norm(centroids[a] - centroids[b]) for a in range(3) for b in range(a + 1, 3)
    )
    assert gaps > 10 * spread
    with pytest.raises(ValueError):
        diffusion_embedding((blocks + bridge).tocsr(), dims=14)


def test_diffusion_embedding_weights_each_eigenvector_by_its_eigenvalue_squared() -> None:
    features, _ = topic_features(n_topics=4, docs_per_topic=20)
    built = knn_graph(features, k=8)
    values, vectors = graph.spectral_decomposition(built, 6)
    embedding = diffusion_embedding(built, 6)
    expected = vectors * np.maximum(values, 0) ** 2 * np.sqrt(80)
    np.testing.assert_allclose(np.abs(embedding), np.abs(expected), atol=1e-6)
    norms = np.linalg.norm(embedding, axis=0)
    assert values[0] > values[-1] and norms[0] > norms[-1]


def test_local_scaling_judges_each_edge_on_its_endpoints_own_neighbour_distances() -> None:
    # With neighbour=1 a node's scale is the distance to its nearest neighbour: 0.1 for nodes
    # 0 and 1, 0.4 for nodes 2 and 3.
    cosine = np.array(
        [[0.0, 0.9, 0.6, 0.0], [0.9, 0.0, 0.0, 0.5], [0.6, 0.0, 0.0, 0.6], [0.0, 0.5, 0.6, 0.0]]
    )
    scaled = local_scaling(sp.csr_matrix(cosine, dtype=np.float32), neighbour=1).toarray()
    scale = np.array([0.1, 0.1, 0.4, 0.4])
    for i, j in zip(*np.nonzero(cosine), strict=True):
        expected = np.exp(-((1 - cosine[i, j]) ** 2) / (scale[i] * scale[j]))
        assert scaled[i, j] == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(scaled, scaled.T)
    assert ((scaled == 0) == (cosine == 0)).all()


def test_itq_rotation_is_orthogonal_and_reduces_quantisation_error() -> None:
    rng = np.random.default_rng(3)
    embedding = rng.standard_normal((400, 8)) * np.linspace(3.0, 0.5, 8)
    rotation = itq_rotation(embedding)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(8), atol=1e-8)

    def error(r: np.ndarray) -> float:
        projected = embedding @ r
        return float(np.linalg.norm(np.sign(projected) - projected))

    assert error(rotation) < error(itq_rotation(embedding, iterations=0))


def test_block_rotation_extends_to_longer_codes_with_orthogonal_blocks() -> None:
    embedding = np.random.default_rng(4).standard_normal((100, 8))
    projection = block_rotation(embedding, bits=20)
    assert projection.shape == (8, 20)
    np.testing.assert_allclose(projection[:, :8], itq_rotation(embedding), atol=1e-10)
    second = projection[:, 8:16]
    np.testing.assert_allclose(second.T @ second, np.eye(8), atol=1e-8)


def test_teacher_bits_agree_within_topics_and_are_balanced(monkeypatch) -> None:
    # Four topics carry three informative eigenvectors; the rest would be within-topic noise.
    monkeypatch.setattr(graph, "TEACHER_DIMS", 3)
    features, topics = topic_features(n_topics=4, docs_per_topic=40)
    teacher = fit_spectral_teacher(features, bits=16, k=10)
    codes = teacher.bits_matrix
    assert codes.shape == (160, 16) and codes.dtype == bool
    assert teacher.embedding.shape == (160, 3)
    distances = (codes[:, None, :] != codes[None, :, :]).sum(axis=2)
    same = topics[:, None] == topics[None, :]
    assert distances[same].mean() * 3 < distances[~same].mean()
    assert 0.2 < codes.mean() < 0.8
    np.testing.assert_array_equal(teacher.quantize(teacher.embedding), codes)


def test_soft_bits_keep_the_hard_bits_sign_and_grade_the_margin(monkeypatch) -> None:
    monkeypatch.setattr(graph, "TEACHER_DIMS", 3)
    features, _ = topic_features(n_topics=4, docs_per_topic=40)
    teacher = fit_spectral_teacher(features, bits=16, k=10)
    soft = teacher.soft_bits(5.0)
    assert soft.shape == (160, 16) and soft.dtype == np.float32
    assert ((soft > 0) & (soft < 1)).all()
    np.testing.assert_array_equal(soft >= 0.5, teacher.bits_matrix)
    projection = (teacher.embedding - teacher.mean) @ teacher.rotation
    order = np.argsort(projection[:, 0])
    assert (np.diff(soft[order, 0]) >= 0).all()
    sharper = teacher.soft_bits(50.0)
    assert np.abs(sharper - 0.5).mean() > np.abs(soft - 0.5).mean()


def test_teacher_plan_splits_long_codes_across_three_neighbourhood_sizes() -> None:
    assert graph.teacher_plan(32, 60) == [(60, 32)]
    assert graph.teacher_plan(64, 60) == [(30, 22), (60, 21), (120, 21)]
    assert graph.teacher_plan(128, 10) == [(5, 44), (10, 42), (20, 42)]
    assert [k for k, _ in graph.teacher_plan(64, 1)] == [1, 1, 2]
    for bits in range(8, 129, 8):
        assert sum(size for _, size in graph.teacher_plan(bits, 60)) == bits


def test_long_codes_reuse_a_capped_number_of_eigenvectors(monkeypatch) -> None:
    monkeypatch.setattr(graph, "TEACHER_DIMS", 4)
    features, _ = topic_features(n_topics=4, docs_per_topic=20)
    teacher = fit_spectral_teacher(features, bits=24, k=8)
    assert teacher.embedding.shape == (80, 4)
    assert teacher.rotation.shape == (4, 24)
    assert teacher.bits_matrix.shape == (80, 24)


def topic_texts(docs_per_topic: int = 30, seed: int = 0) -> tuple[list[str], list[tuple[str]]]:
    """Texts over four disjoint topic vocabularies plus shared filler words, with labels."""
    rng = np.random.default_rng(seed)
    shared = [f"filler{i}" for i in range(20)]
    texts, labels = [], []
    for topic in range(4):
        own = [f"topic{topic}term{i}" for i in range(20)]
        for _ in range(docs_per_topic):
            words = list(rng.choice(own, size=15)) + list(rng.choice(shared, size=10))
            texts.append(" ".join(words))
            labels.append((f"t{topic}",))
    return texts, labels


QUICK = {"hidden_sizes": (32,), "batch_size": 32, "lr": 5e-3, "epochs": 6, "patience": 6}


def test_training_with_the_teacher_adds_its_term_and_saves_the_weighting(tmp_path) -> None:
    training = importlib.import_module("docbits.model.train")
    texts, labels = topic_texts()
    config = training.TrainConfig(
        bits=8, graph_k=10, teacher_weight=2.0, input_weighting="sublinear", **QUICK
    )
    hasher = training.train(texts, config, labels=labels, progress=False)
    assert hasher.config["teacher"] == "spectral"
    assert all("teacher" in epoch["terms"] for epoch in hasher.config["validation"]["history"])
    fresh, fresh_labels = topic_texts(docs_per_topic=10, seed=5)
    precision = precision_at_k(hasher.encode(fresh), hasher.encode(texts), fresh_labels, labels, 20)
    assert precision["tie_aware"] > 0.45  # chance 0.25; seeds 0-2 gave 0.56-0.82 (8 bits, tiny net)
    hasher.save(tmp_path)
    loaded = Hasher.load(tmp_path)
    assert loaded.input_weighting == "sublinear"
    np.testing.assert_array_equal(loaded.encode(fresh), hasher.encode(fresh))


def test_sublinear_input_changes_the_codes_of_repetitive_documents(tmp_path) -> None:
    training = importlib.import_module("docbits.model.train")
    texts, labels = topic_texts()
    hasher = training.train(
        texts, training.TrainConfig(bits=8, input_weighting="sublinear", **QUICK), labels=labels
    )
    hasher.save(tmp_path)
    config_path = tmp_path / "config.json"
    config = json.loads(config_path.read_text())
    config["input_weighting"] = "tfidf"
    config_path.write_text(json.dumps(config))
    as_tfidf = Hasher.load(tmp_path)
    repetitive = [" ".join(["topic0term1"] * 30 + ["topic1term2", "filler3"]) for _ in range(4)]
    repetitive += [" ".join(["topic2term3"] * 40 + ["topic3term4"] * 2) for _ in range(4)]
    assert not np.array_equal(
        as_tfidf.encode(repetitive + texts), hasher.encode(repetitive + texts)
    )
    config["input_weighting"] = "cubic"
    config_path.write_text(json.dumps(config))
    with pytest.raises(ArtifactError):
        Hasher.load(tmp_path)


def test_corpora_too_small_for_the_teacher_train_without_it() -> None:
    training = importlib.import_module("docbits.model.train")
    texts, _ = topic_texts(docs_per_topic=5)
    hasher = training.train(texts, training.TrainConfig(bits=32, **QUICK), progress=False)
    assert hasher.config["teacher"] == "none"
    off = training.train(texts[:20], training.TrainConfig(bits=8, teacher="none", **QUICK))
    assert off.config["teacher"] == "none"


def test_config_rejects_unknown_teacher_weighting_and_bad_graph_settings() -> None:
    training = importlib.import_module("docbits.model.train")
    for bad in (
        {"teacher": "oracle"},
        {"input_weighting": "binary"},
        {"graph_k": 0},
        {"teacher_weight": -1.0},
    ):
        with pytest.raises(ValueError):
            training.TrainConfig(**bad)


def test_itq_to_fewer_bits_keeps_orthonormal_columns() -> None:
    embedding = np.random.default_rng(5).standard_normal((300, 8)) * np.linspace(2.0, 0.5, 8)
    projection = itq_rotation(embedding, bits=3)
    assert projection.shape == (8, 3)
    np.testing.assert_allclose(projection.T @ projection, np.eye(3), atol=1e-8)
    with pytest.raises(ValueError):
        itq_rotation(embedding, bits=9)
