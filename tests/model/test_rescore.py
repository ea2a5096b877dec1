"""Rescoring: int8 forms of the code layer's logits, candidates by Hamming distance, re-ranking by
the forms' cosine; and the forms a trained Hasher gives beside its codes."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

from docbits.index.forms import pack_forms
from docbits.model.hasher import Hasher
from docbits.model.rescore import (
    DEFAULT_FORM_SCALE,
    form_scale,
    form_scores,
    hamming_candidates,
    quantize,
    rescore,
)
from tests.model.test_inference import ODD_TEXTS, module_logits
from tests.model.test_train import synthetic_corpus

training = importlib.import_module("docbits.model.train")


def test_quantize_rounds_clips_and_keeps_every_nonzero_sign() -> None:
    logits = np.array([[0.0, 0.04, -0.06, 1.0, -3.0, 50.0, -50.0, 2.5]], dtype=np.float32)
    forms = quantize(logits, scale=2.0)
    assert forms.dtype == np.int8
    assert forms.tolist() == [[0, 3, -4, 64, -127, 127, -127, 127]]
    assert ((forms > 0) == (logits > 0))[forms != 0].all()
    with pytest.raises(ValueError):
        quantize(logits, 0.0)


def test_form_scale_is_a_high_quantile_of_the_magnitudes() -> None:
    logits = np.concatenate([np.linspace(-10, 10, 1001), [1e6]]).reshape(-1, 2)
    assert 9.7 < form_scale(logits) < 10.0
    assert form_scale(np.zeros((3, 8))) == 1.0


def test_form_scores_are_cosines_and_zero_for_empty_forms() -> None:
    query = np.array([3, 4, 0], dtype=np.int8)
    candidates = np.array([[3, 4, 0], [-3, -4, 0], [0, 0, 5], [0, 0, 0], [6, 8, 0]], np.int8)
    np.testing.assert_allclose(form_scores(query, candidates), [1, -1, 0, 0, 1])
    big = np.full((1, 128), 127, dtype=np.int8)
    assert form_scores(big[0], big)[0] == pytest.approx(1.0)  # no int8 overflow
    with pytest.raises(ValueError, match="must be"):
        form_scores(query, candidates[:, :2])


def test_rescore_returns_the_best_k_and_keeps_candidate_order_on_ties() -> None:
    query = pack_forms(np.array([[100, 100]], dtype=np.int8))[0]
    candidates = np.array([[20, 0], [90, 90], [-90, -90], [127, 127], [0, 20]], dtype=np.int8)
    positions, scores = rescore(query, pack_forms(candidates), k=3)
    assert positions.tolist() == [1, 3, 0]  # [90, 90] and [127, 127] tie at cosine 1: input order
    np.testing.assert_allclose(scores, [1.0, 1.0, np.sqrt(0.5)])
    assert rescore(query, pack_forms(candidates), k=10)[0].tolist() == [1, 3, 0, 4, 2]
    assert rescore(query, pack_forms(candidates[:0]), k=3)[0].size == 0


def test_hamming_candidates_are_nearest_first_with_ties_in_database_order() -> None:
    rng = np.random.default_rng(0)
    db = np.packbits(rng.integers(0, 2, size=(300, 16)).astype(bool), axis=1)
    query = db[17]
    distances = np.unpackbits(db ^ query, axis=1).sum(axis=1)
    expected = np.argsort(distances, kind="stable")
    for count in (1, 5, 40, 299, 300, 1000):
        np.testing.assert_array_equal(hamming_candidates(query, db, count), expected[:count])


@pytest.fixture(scope="module")
def hasher() -> Hasher:
    texts, _ = synthetic_corpus(n_topics=3, docs_per_topic=20)
    config = training.TrainConfig(bits=24, hidden_sizes=(32, 16), epochs=3, batch_size=32)
    return training.train(texts, config, progress=False)


def test_training_records_the_form_scale_and_forms_match_the_codes(
    hasher: Hasher, tmp_path
) -> None:
    scale = hasher.config["rescore"]["form_scale"]
    assert scale > 0 and hasher.form_scale == scale
    texts, _ = synthetic_corpus(n_topics=3, docs_per_topic=30, seed=9)
    texts += ODD_TEXTS
    codes, forms = hasher.encode_with_forms(texts)
    np.testing.assert_array_equal(codes, hasher.encode(texts))
    assert forms.shape == (len(texts), 24) and forms.dtype == np.int8
    bits = np.unpackbits(codes, axis=1).astype(bool)
    assert (bits == (hasher.logits(texts) > 0)).all()
    assert ((forms > 0) == bits)[forms != 0].all()
    np.testing.assert_array_equal(forms, quantize(hasher.logits(texts), scale))
    logits = module_logits(hasher, texts).numpy()
    np.testing.assert_allclose(hasher.logits(texts), logits, rtol=1e-4, atol=1e-4)
    alone = np.concatenate([hasher.encode_with_forms([text])[1] for text in texts])
    np.testing.assert_array_equal(alone, forms)  # a form never depends on its call
    hasher.save(tmp_path / "m")
    assert Hasher.load(tmp_path / "m").form_scale == scale


def test_models_saved_before_the_scale_existed_use_the_default(hasher: Hasher, tmp_path) -> None:
    import json

    hasher.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    del config["rescore"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    assert Hasher.load(tmp_path / "m").form_scale == DEFAULT_FORM_SCALE


def test_rescore_module_does_not_import_torch() -> None:
    code = "import sys, docbits.model.rescore; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
