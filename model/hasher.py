"""`Hasher`: featurizer + trained encoder → b-bit codes, saved as config.json, vocab.json and
model.safetensors (no pickle anywhere; the weights' sha256 is the model's fingerprint)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from docbits.model.autoencoders import SemanticHashingAutoencoder, SparseBatch, build_autoencoder
from docbits.model.errors import ArtifactError, read_json_artifact
from docbits.model.featurizer import VOCAB_FILE, Featurizer
from docbits.model.graph import sublinear_tfidf
from docbits.model.inference import FastEncoder, pack_codes
from docbits.model.rescore import DEFAULT_FORM_SCALE, quantize

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_FORMAT = "docbits-model/1"
INPUT_WEIGHTINGS = ("tfidf", "sublinear")
# Calls of up to this many texts (searches) are featurized text by text; larger ones as a matrix.
FAST_PATH_MAX_TEXTS = 256


def architecture_of(model: SemanticHashingAutoencoder) -> dict[str, Any]:
    """The constructor arguments that rebuild `model` (besides vocabulary size and bits)."""
    encoder = model.encoder
    hidden = [encoder.input_layer.embedding_dim]
    hidden += [layer.out_features for layer in encoder.upper if isinstance(layer, torch.nn.Linear)]
    return {
        "hidden_sizes": hidden[:-1],
        "noise_std": model.noise_std,
        "penalty": model.penalty,
        "corruption": model.corruption,
    }


class Hasher:
    """Turns texts into packed b-bit codes with a fitted featurizer and a trained encoder."""

    def __init__(
        self,
        featurizer: Featurizer,
        model: SemanticHashingAutoencoder,
        variant: str,
        info: dict[str, Any] | None = None,
        input_weighting: str = "tfidf",
    ) -> None:
        """Wrap a trained model; `info` (training details) ends up in config.json, and
        `input_weighting` ("tfidf" or "sublinear") says which TF-IDF the encoder reads."""
        if model.decoder.output.out_features != len(featurizer):
            raise ValueError("model and featurizer disagree on the vocabulary size")
        if input_weighting not in INPUT_WEIGHTINGS:
            raise ValueError(f"input_weighting must be one of {INPUT_WEIGHTINGS}")
        self.input_weighting: str = input_weighting
        self.featurizer = featurizer
        self.model = model.eval()
        self.bits: int = model.bits
        self.variant: str = variant
        self.weights: bytes = save_safetensors(
            {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
        )
        self.fingerprint: str = hashlib.sha256(self.weights).hexdigest()
        self.config: dict[str, Any] = {
            **(info or {}),
            "format": MODEL_FORMAT,
            "bits": self.bits,
            "variant": variant,
            "vocab_size": len(featurizer),
            "input_weighting": input_weighting,
            "architecture": architecture_of(model),
            "fingerprint": self.fingerprint,
        }
        self.fast: FastEncoder | None = FastEncoder.build(featurizer, self.model, input_weighting)
        # Clip range of the int8 rescoring forms, fixed at training time (older artifacts lack it).
        self.form_scale: float = float(
            self.config.get("rescore", {}).get("form_scale", DEFAULT_FORM_SCALE)
        )

    def encode(self, texts: Sequence[str], batch_size: int = 2048) -> np.ndarray:
        """Packed codes uint8 (n, bits/8), bit i big-endian in byte i//8; same text, same code.

        A few texts (a search) are featurized one by one in Python; more go through the
        featurizer's sparse matrix. Both give the same TF-IDF rows bit for bit, and the same
        `FastEncoder` kernel encodes each row on its own, so a text's code never depends on
        the call it came in.
        """
        if self.fast is not None and len(texts) <= min(FAST_PATH_MAX_TEXTS, batch_size):
            return self.fast.encode(texts)
        return self.encode_counts(self.featurizer.counts(texts), batch_size)

    def encode_counts(self, counts: sp.csr_matrix, batch_size: int = 2048) -> np.ndarray:
        """Packed codes of documents given as term-count rows of this featurizer's vocabulary."""
        tfidf = self._encoder_input(counts, batch_size)
        if self.fast is not None:
            return self.fast.encode_tfidf(tfidf)
        parts = [np.zeros((0, self.bits // 8), dtype=np.uint8)]
        with torch.inference_mode():
            for start in range(0, tfidf.shape[0], batch_size):
                batch = SparseBatch.from_csr(tfidf[start : start + batch_size])
                parts.append(np.packbits(self.model.encode_bits(batch).numpy(), axis=1))
        return np.concatenate(parts)

    def encode_with_forms(
        self, texts: Sequence[str], batch_size: int = 2048
    ) -> tuple[np.ndarray, np.ndarray]:
        """(packed codes, int8 forms (n, bits)) of texts: the form is the quantised code-layer
        logits (`docbits.model.rescore.quantize`) that rescoring ranks candidates by. On the
        compiled path both come from one pass, so a form's signs are its code's bits."""
        logits = self.logits(texts, batch_size)
        codes = pack_codes(logits) if self.fast is not None else self.encode(texts, batch_size)
        return codes, quantize(logits, self.form_scale)

    def logits(self, texts: Sequence[str], batch_size: int = 2048) -> np.ndarray:
        """Code-layer logits float32 (n, bits) of texts (bit i of the code is logit i > 0)."""
        if self.fast is not None and len(texts) <= min(FAST_PATH_MAX_TEXTS, batch_size):
            return self.fast.logits(texts)
        tfidf = self._encoder_input(self.featurizer.counts(texts), batch_size)
        if self.fast is not None:
            return self.fast.logits_tfidf(tfidf)
        parts = [np.zeros((0, self.bits), dtype=np.float32)]
        with torch.inference_mode():
            for start in range(0, tfidf.shape[0], batch_size):
                batch = SparseBatch.from_csr(tfidf[start : start + batch_size])
                logits = self.model.encoder(batch.indices, batch.offsets, batch.tfidf)
                parts.append(logits.numpy().astype(np.float32))
        return np.concatenate(parts)

    def _encoder_input(self, counts: sp.csr_matrix, batch_size: int) -> sp.csr_matrix:
        """The TF-IDF rows (plain or sublinear, as trained) the encoder reads for count rows."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.input_weighting == "sublinear":
            return sublinear_tfidf(counts, self.featurizer.idf)
        return self.featurizer.tfidf(counts=counts)

    def save(self, directory: Path) -> None:
        """Write config.json, vocab.json and model.safetensors into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / WEIGHTS_FILE).write_bytes(self.weights)
        self.featurizer.save(directory)
        (directory / CONFIG_FILE).write_text(json.dumps(self.config, indent=2), "utf-8")

    @classmethod
    def load(cls, directory: Path) -> Hasher:
        """Read a model directory, checking every file; raise ArtifactError naming what is wrong."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ArtifactError(f"{directory}: model directory does not exist")
        config = read_config(directory / CONFIG_FILE)
        featurizer = Featurizer.load(directory)
        if len(featurizer) != config["vocab_size"]:
            raise ArtifactError(
                f"{directory / VOCAB_FILE}: {len(featurizer)} terms but {CONFIG_FILE} says "
                f"vocab_size {config['vocab_size']}"
            )
        model = build_model(config, directory / CONFIG_FILE)
        model.load_state_dict(read_weights(directory / WEIGHTS_FILE, config, model))
        info = {key: value for key, value in config.items() if key not in MANAGED_KEYS}
        weighting = info.pop("input_weighting", "tfidf")  # absent from artifacts made before it
        if weighting not in INPUT_WEIGHTINGS:
            raise ArtifactError(f"{directory / CONFIG_FILE}: unknown input_weighting {weighting!r}")
        return cls(featurizer, model, config["variant"], info, input_weighting=weighting)


MANAGED_KEYS = {"format", "bits", "variant", "vocab_size", "architecture", "fingerprint"}


def read_config(path: Path) -> dict[str, Any]:
    """Parse and sanity-check config.json."""
    config = read_json_artifact(path, "config")
    if not isinstance(config, dict) or config.get("format") != MODEL_FORMAT:
        raise ArtifactError(f"{path}: not a docbits model config (expected {MODEL_FORMAT})")
    missing = sorted(MANAGED_KEYS - config.keys())
    if missing:
        raise ArtifactError(f"{path}: missing keys {', '.join(missing)}")
    return config


def build_model(config: dict[str, Any], path: Path) -> SemanticHashingAutoencoder:
    """Instantiate the untrained autoencoder that config.json describes."""
    try:
        return build_autoencoder(
            config["variant"],
            int(config["vocab_size"]),
            int(config["bits"]),
            **config["architecture"],
        )
    except (TypeError, ValueError) as error:
        raise ArtifactError(f"{path}: cannot build the model it describes ({error})") from error


def read_weights(
    path: Path, config: dict[str, Any], model: SemanticHashingAutoencoder
) -> dict[str, torch.Tensor]:
    """Read model.safetensors, verify its sha256 against the fingerprint and every tensor shape."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as error:
        raise ArtifactError(f"{path}: weights file is missing") from error
    digest = hashlib.sha256(raw).hexdigest()
    if digest != config["fingerprint"]:
        raise ArtifactError(
            f"{path}: sha256 {digest} does not match the fingerprint {config['fingerprint']} "
            f"in {CONFIG_FILE} (damaged or replaced weights)"
        )
    try:
        tensors = load_safetensors(raw)
    except (SafetensorError, ValueError) as error:
        raise ArtifactError(f"{path}: not a readable safetensors file ({error})") from error
    expected = model.state_dict()
    if tensors.keys() != expected.keys():
        raise ArtifactError(
            f"{path}: tensors {sorted(tensors)} differ from the model's {sorted(expected)}"
        )
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape or tensor.dtype != expected[name].dtype:
            raise ArtifactError(
                f"{path}: tensor {name} has shape {tuple(tensor.shape)} {tensor.dtype}, expected "
                f"{tuple(expected[name].shape)} {expected[name].dtype}"
            )
    return tensors
