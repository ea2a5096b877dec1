"""Hasher: deterministic packed codes, symmetric save/load, and refusal of damaged artifacts."""

from __future__ import annotations

import hashlib
import importlib
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save as save_safetensors

from docbits.model.autoencoders import SparseBatch
from docbits.model.errors import ArtifactError
from docbits.model.featurizer import Featurizer
from docbits.model.graph import sublinear_tfidf
from docbits.model.hasher import Hasher
from tests.model.test_train import synthetic_corpus

training = importlib.import_module("docbits.model.train")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hasher() -> Hasher:
    texts, labels = synthetic_corpus(n_topics=3, docs_per_topic=20)
    config = training.TrainConfig(
        bits=24, variant="undercomplete", hidden_sizes=(32,), epochs=3, batch_size=32
    )
    return training.train(texts, config, labels=labels, progress=False)


@pytest.fixture()
def saved(hasher: Hasher, tmp_path: Path) -> Path:
    hasher.save(tmp_path / "model")
    return tmp_path / "model"


TEXTS = ["topic0word1 topic0word2 common3", "topic2word7 common1 common1", "", "nothing known"]


def test_codes_are_packed_uint8_big_endian_bits_of_positive_logits(hasher: Hasher) -> None:
    codes = hasher.encode(TEXTS)
    assert codes.dtype == np.uint8 and codes.shape == (len(TEXTS), 3)
    assert hasher.input_weighting == "sublinear"  # the default: the encoder reads (1 + ln tf) idf
    tfidf = sublinear_tfidf(hasher.featurizer.counts(TEXTS), hasher.featurizer.idf)
    batch = SparseBatch.from_csr(tfidf)
    with torch.no_grad():
        logits = hasher.model.encoder(batch.indices, batch.offsets, batch.tfidf).numpy()
    np.testing.assert_array_equal(np.unpackbits(codes, axis=1), (logits > 0).astype(np.uint8))


def test_encoding_is_deterministic_and_independent_of_batching(hasher: Hasher) -> None:
    texts, _ = synthetic_corpus(n_topics=3, docs_per_topic=20, seed=5)
    together = hasher.encode(texts)
    np.testing.assert_array_equal(together, hasher.encode(texts))
    np.testing.assert_array_equal(together, hasher.encode(texts, batch_size=7))
    one_by_one = np.concatenate([hasher.encode([text]) for text in texts[:10]])
    np.testing.assert_array_equal(together[:10], one_by_one)
    counts = hasher.featurizer.counts(texts)
    np.testing.assert_array_equal(together, hasher.encode_counts(counts))


def test_empty_input_gives_an_empty_code_array(hasher: Hasher) -> None:
    assert hasher.encode([]).shape == (0, 3)


def test_artifact_files_and_config(hasher: Hasher, saved: Path) -> None:
    assert sorted(p.name for p in saved.iterdir()) == [
        "config.json",
        "model.safetensors",
        "vocab.json",
    ]
    config = json.loads((saved / "config.json").read_text())
    weights_sha = hashlib.sha256((saved / "model.safetensors").read_bytes()).hexdigest()
    assert config["fingerprint"] == weights_sha == hasher.fingerprint
    assert config["bits"] == 24 and config["variant"] == "undercomplete"
    assert config["vocab_size"] == len(hasher.featurizer)
    assert config["train"]["hidden_sizes"] == [32]
    assert {"torch", "numpy"} <= config["versions"].keys()
    assert config["corpus"]["documents"] == 60
    assert "best" in config["validation"] and "distinct_codes" in config["codes"]


def test_load_in_a_fresh_process_gives_identical_codes(hasher: Hasher, saved: Path) -> None:
    script = (
        "import json, sys; from docbits.model.hasher import Hasher\n"
        "h = Hasher.load(sys.argv[1])\n"
        "codes = h.encode(json.loads(sys.argv[2]))\n"
        "print(json.dumps([h.fingerprint, [c.tobytes().hex() for c in codes]]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(saved), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    fingerprint, codes = json.loads(result.stdout)
    assert fingerprint == hasher.fingerprint
    assert codes == [bytes(code).hex() for code in hasher.encode(TEXTS)]


def test_loading_never_unpickles(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("pickle or torch.load was used")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert Hasher.load(saved).encode(TEXTS).shape == (4, 3)


def test_save_load_save_is_byte_identical(saved: Path, tmp_path: Path) -> None:
    Hasher.load(saved).save(tmp_path / "again")
    for name in ("config.json", "model.safetensors", "vocab.json"):
        assert (tmp_path / "again" / name).read_bytes() == (saved / name).read_bytes(), name


@pytest.mark.parametrize("name", ["config.json", "vocab.json", "model.safetensors"])
def test_missing_file_is_named(saved: Path, name: str) -> None:
    (saved / name).unlink()
    with pytest.raises(ArtifactError, match=rf"{name}.*missing"):
        Hasher.load(saved)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        Hasher.load(tmp_path / "absent")


def test_bad_json_config_is_named(saved: Path) -> None:
    (saved / "config.json").write_text('{"bits": 24,')
    with pytest.raises(ArtifactError, match=r"config\.json: not valid JSON"):
        Hasher.load(saved)


def test_config_of_another_format_is_refused(saved: Path) -> None:
    config = json.loads((saved / "config.json").read_text())
    del config["fingerprint"]
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match=r"config\.json: missing keys fingerprint"):
        Hasher.load(saved)


def test_flipped_weight_byte_fails_the_fingerprint(saved: Path) -> None:
    raw = bytearray((saved / "model.safetensors").read_bytes())
    raw[-5] ^= 0xFF
    (saved / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match=r"model\.safetensors: sha256 .* does not match"):
        Hasher.load(saved)


def set_fingerprint(directory: Path, weights: bytes) -> None:
    """Write `weights` and make config.json's fingerprint agree, as a careless tool might."""
    (directory / "model.safetensors").write_bytes(weights)
    config = json.loads((directory / "config.json").read_text())
    config["fingerprint"] = hashlib.sha256(weights).hexdigest()
    (directory / "config.json").write_text(json.dumps(config))


def test_truncated_weights_are_refused_even_with_a_matching_fingerprint(saved: Path) -> None:
    raw = (saved / "model.safetensors").read_bytes()
    set_fingerprint(saved, raw[: len(raw) // 2])
    with pytest.raises(ArtifactError, match=r"model\.safetensors: not a readable safetensors"):
        Hasher.load(saved)
    set_fingerprint(saved, raw[:5])
    with pytest.raises(ArtifactError, match=r"model\.safetensors: not a readable safetensors"):
        Hasher.load(saved)


def test_wrong_tensor_shapes_are_named(hasher: Hasher, saved: Path) -> None:
    tensors = {name: t.clone() for name, t in hasher.model.state_dict().items()}
    tensors["decoder.output.bias"] = torch.zeros(3)
    set_fingerprint(saved, save_safetensors(tensors))
    with pytest.raises(ArtifactError, match=r"model\.safetensors: tensor decoder\.output\.bias"):
        Hasher.load(saved)
    del tensors["decoder.output.bias"]
    set_fingerprint(saved, save_safetensors(tensors))
    with pytest.raises(ArtifactError, match=r"model\.safetensors: tensors .* differ"):
        Hasher.load(saved)


def test_vocabulary_size_mismatch_is_named(hasher: Hasher, saved: Path) -> None:
    Featurizer.fit(["alpha beta", "beta gamma"], min_df=1, max_df=1.0).save(saved)
    with pytest.raises(ArtifactError, match=r"vocab\.json: 3 terms but config\.json says"):
        Hasher.load(saved)


def test_impossible_architecture_is_refused(saved: Path) -> None:
    config = json.loads((saved / "config.json").read_text())
    config["bits"] = 12
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match=r"config\.json: cannot build"):
        Hasher.load(saved)


def test_copied_directory_loads_like_the_original(saved: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    np.testing.assert_array_equal(Hasher.load(copy).encode(TEXTS), Hasher.load(saved).encode(TEXTS))
