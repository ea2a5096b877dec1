"""Mini-batch training of a semantic-hashing autoencoder, early-stopped on retrieval quality."""

from __future__ import annotations

import copy
import dataclasses
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from docbits.index.codes import bucket_statistics
from docbits.index.hamming import distance_matrix
from docbits.model.autoencoders import (
    VARIANTS,
    SemanticHashingAutoencoder,
    SparseBatch,
    build_autoencoder,
)
from docbits.model.featurizer import Featurizer
from docbits.model.graph import bm25_rows, fit_spectral_teacher, sublinear_tfidf, teacher_plan
from docbits.model.hasher import Hasher
from docbits.model.rescore import form_scale

VALIDATION_K = 100


@dataclass
class TrainConfig:
    """Everything that decides a trained model; stored verbatim in the artifact's config.json."""

    bits: int = 64
    variant: str = "contractive"
    epochs: int = 20
    batch_size: int = 256
    lr: float = 2e-3
    seed: int = 0
    val_fraction: float = 0.1
    hidden_sizes: tuple[int, ...] = (500, 500)
    noise_std: float = 1.0  # Gaussian noise before the code sigmoid (deterministic variants)
    penalty: float | None = None  # λ of the variant's regulariser; None → VARIANT_PENALTY
    corruption: float = 0.3  # word-dropout probability of `denoising`
    patience: int = 3  # epochs without validation improvement before stopping
    # Wall seconds from the start: no epoch starts that would end past them (None: no budget).
    time_budget_s: float | None = None
    max_features: int = 10_000
    min_df: int | None = None  # None → the small-corpus rule of `vocabulary_limits`
    max_df: float | None = None
    threads: int | None = 1  # torch threads while training; 1 is fastest on a busy 2-core box
    deterministic: bool = True  # torch.use_deterministic_algorithms while training
    teacher: str = "spectral"  # target bits the encoder also fits: "spectral" (kNN graph) or "none"
    teacher_weight: float = 10.0  # weight of the teacher's bit-wise cross-entropy term
    teacher_sharpness: float | None = 5.0  # soft targets sigmoid(s · z / std z); None → hard bits
    graph_k: int = 60  # neighbours per document in the teacher's kNN graph
    device: str = "cpu"  # torch device for training ("cuda" when available)
    input_weighting: str = "sublinear"  # encoder input: "sublinear" (1 + ln tf) or plain TF-IDF
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept in config.json

    def __post_init__(self) -> None:
        """Reject settings that cannot train."""
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {VARIANTS}")
        if self.bits % 8 or not 8 <= self.bits <= 128:
            raise ValueError(f"bits must be a multiple of 8 in 8..128, got {self.bits}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs, batch_size and lr must be positive")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError("time_budget_s must be positive (or None for no budget)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("val_fraction must be in [0, 1)")
        if not 0.0 <= self.corruption < 1.0:
            raise ValueError("corruption must be in [0, 1)")
        if self.teacher not in TEACHERS:
            raise ValueError(f"unknown teacher {self.teacher!r}; choose one of {TEACHERS}")
        if self.input_weighting not in INPUT_WEIGHTINGS:
            raise ValueError(f"input_weighting must be one of {INPUT_WEIGHTINGS}")
        if self.teacher_weight < 0 or self.graph_k < 1:
            raise ValueError("teacher_weight must be non-negative and graph_k at least 1")
        if self.teacher_sharpness is not None and self.teacher_sharpness <= 0:
            raise ValueError("teacher_sharpness must be positive (or None for hard bits)")
        self.hidden_sizes = tuple(int(size) for size in self.hidden_sizes)

    def resolved_penalty(self) -> float:
        """λ used for this variant: the explicit value or the variant's default."""
        return VARIANT_PENALTY[self.variant] if self.penalty is None else self.penalty


TEACHERS: tuple[str, ...] = ("spectral", "none")
INPUT_WEIGHTINGS: tuple[str, ...] = ("tfidf", "sublinear")

VARIANT_PENALTY: dict[str, float] = {
    "undercomplete": 0.0,
    "sparse": 0.05,
    "denoising": 0.0,
    "contractive": 1.0,
    "variational": 1.0,
}


def vocabulary_limits(n_documents: int, config: TrainConfig) -> tuple[int, float]:
    """(min_df, max_df) for `n_documents`: 3 and 0.8 from 1,000 documents up, min_df 2 from 100,
    1 below that, and max_df 1.0 under 20 documents, so tiny corpora keep a vocabulary."""
    if n_documents >= 1000:
        min_df = 3
    elif n_documents >= 100:
        min_df = 2
    else:
        min_df = 1
    max_df = 0.8 if n_documents >= 20 else 1.0
    chosen_min = config.min_df if config.min_df is not None else min_df
    chosen_max = config.max_df if config.max_df is not None else max_df
    return chosen_min, chosen_max


def split_validation(n_documents: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of held-out validation documents; empty unless both sides keep 2+ documents."""
    n_val = round(n_documents * fraction)
    if n_val < 2 or n_documents - n_val < 2:
        return np.empty(0, dtype=np.int64)
    return np.sort(rng.choice(n_documents, size=n_val, replace=False))


def build_optimizers(model: SemanticHashingAutoencoder, lr: float) -> list[torch.optim.Optimizer]:
    """The optimizers stepping every parameter: one fused Adam (faster than the default
    for-loop Adam on CPUs; lazy SparseAdam for the embedding was slower still)."""
    return [torch.optim.Adam(model.parameters(), lr=lr, fused=True)]


def batch_of(tfidf: sp.csr_matrix, counts: sp.csr_matrix, rows: np.ndarray) -> SparseBatch:
    """The SparseBatch of the given document rows."""
    return SparseBatch.from_csr(tfidf[rows], counts[rows])


def encode_matrix(
    model: SemanticHashingAutoencoder, tfidf: sp.csr_matrix, batch_size: int = 2048
) -> np.ndarray:
    """Bool bits (n, b) of every row of a TF-IDF matrix, in eval mode."""
    device = next(model.parameters()).device
    parts = []
    for start in range(0, tfidf.shape[0], batch_size):
        rows = SparseBatch.from_csr(tfidf[start : start + batch_size]).to(device)
        parts.append(model.encode_bits(rows).cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, model.bits), dtype=bool)


def logits_matrix(
    model: SemanticHashingAutoencoder, tfidf: sp.csr_matrix, batch_size: int = 2048
) -> np.ndarray:
    """Code-layer logits float32 (n, b) of every row of a TF-IDF matrix, in eval mode."""
    device = next(model.parameters()).device
    parts = [np.zeros((0, model.bits), dtype=np.float32)]
    with torch.no_grad():
        for start in range(0, tfidf.shape[0], batch_size):
            rows = SparseBatch.from_csr(tfidf[start : start + batch_size]).to(device)
            logits = model.encoder(rows.indices, rows.offsets, rows.tfidf)
            parts.append(logits.cpu().numpy().astype(np.float32))
    return np.concatenate(parts)


def tie_aware_overlap(distances: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Mean expected fraction of each query's `relevant` top-k inside its Hamming top-k when
    ties at the k-th distance are broken uniformly at random (so equal codes earn no credit)."""
    scores = []
    for row, targets in zip(distances, relevant, strict=True):
        radius = np.partition(row, k - 1)[k - 1]
        inside, on_edge = row < radius, row == radius
        edge_share = (k - inside.sum()) / on_edge.sum()
        hits = inside[targets].sum() + edge_share * on_edge[targets].sum()
        scores.append(hits / k)
    return float(np.mean(scores))


def label_free_metric(
    val_bits: np.ndarray, db_bits: np.ndarray, val_tfidf: sp.csr_matrix, db_tfidf: sp.csr_matrix
) -> float:
    """Tie-aware overlap of each held-out doc's Hamming top-k with its TF-IDF cosine top-k."""
    k = min(VALIDATION_K, db_bits.shape[0])
    cosine = (val_tfidf @ db_tfidf.T).toarray()
    cosine_top = np.argpartition(-cosine, k - 1, axis=1)[:, :k]
    return tie_aware_overlap(
        distance_matrix(np.packbits(val_bits, axis=1), np.packbits(db_bits, axis=1)), cosine_top, k
    )


def validation_metric(
    model: SemanticHashingAutoencoder,
    val_tfidf: sp.csr_matrix,
    db_tfidf: sp.csr_matrix,
    val_labels: list[tuple[str, ...]] | None,
    db_labels: list[tuple[str, ...]] | None,
    projections: tuple[np.ndarray, np.ndarray] | None = None,
) -> float:
    """Tie-aware P@100 of held-out docs against the training docs (labels); without labels the
    overlap with the teacher's neighbours (`projections` = val and db teacher projections), or
    with TF-IDF cosine's when there is no teacher."""
    val_bits = encode_matrix(model, val_tfidf)
    db_bits = encode_matrix(model, db_tfidf)
    if val_labels is None or db_labels is None:
        if projections is not None:
            return teacher_overlap_metric(val_bits, db_bits, *projections)
        return label_free_metric(val_bits, db_bits, val_tfidf, db_tfidf)
    from docbits.model.metrics import precision_at_k

    k = min(VALIDATION_K, db_bits.shape[0])
    result = precision_at_k(
        np.packbits(val_bits, axis=1), np.packbits(db_bits, axis=1), val_labels, db_labels, k=k
    )
    return float(result["tie_aware"])


def past_budget(config: TrainConfig, started: float, epochs_started: float, epochs: int) -> bool:
    """True when one more epoch, at the mean length of those run, would end past the budget."""
    if config.time_budget_s is None:
        return False
    now = time.monotonic()
    return now - started + (now - epochs_started) / epochs > config.time_budget_s


@dataclass(frozen=True)
class TeacherFit:
    """What the teacher gives training: per-bit targets and the continuous projection behind
    them (rows outside the graph are zero in both)."""

    targets: np.ndarray  # (n, bits) float32: soft bits, or hard 0/1 bits
    projection: np.ndarray  # (n, bits) float32: each document's signed distance to each bit


def fit_teacher(
    config: TrainConfig, featurizer: Featurizer, counts: sp.csr_matrix, graph_rows: np.ndarray
) -> TeacherFit | None:
    """The teacher of the documents in `graph_rows`: soft targets when `teacher_sharpness` is
    set, else hard 0/1 bits, one block per graph of `teacher_plan`. None when the config asks
    for no teacher or there are too few documents for `bits` eigenvectors."""
    if config.teacher == "none" or config.teacher_weight == 0 or len(graph_rows) < config.bits + 3:
        return None
    features = bm25_rows(counts[graph_rows], featurizer.idf)
    blocks, projections = [], []
    for k, bits in teacher_plan(config.bits, config.graph_k):
        teacher = fit_spectral_teacher(features, bits, k=k, seed=config.seed)
        projections.append(teacher.projection())
        if config.teacher_sharpness is None:
            blocks.append(teacher.bits_matrix)
        else:
            blocks.append(teacher.soft_bits(config.teacher_sharpness))
    targets = np.zeros((counts.shape[0], config.bits), dtype=np.float32)
    targets[graph_rows] = np.concatenate(blocks, axis=1)
    projection = np.zeros((counts.shape[0], config.bits), dtype=np.float32)
    projection[graph_rows] = np.concatenate(projections, axis=1)
    return TeacherFit(targets, projection)


def teacher_overlap_metric(
    val_bits: np.ndarray, db_bits: np.ndarray, val_projection: np.ndarray, db_projection: np.ndarray
) -> float:
    """Tie-aware overlap of each held-out doc's Hamming top-k with its top-k by cosine in the
    teacher's projection: how well the encoder extends the teacher to documents it never saw."""
    k = min(VALIDATION_K, db_bits.shape[0])
    val_unit = val_projection / np.maximum(
        np.linalg.norm(val_projection, axis=1, keepdims=True), 1e-12
    )
    db_unit = db_projection / np.maximum(
        np.linalg.norm(db_projection, axis=1, keepdims=True), 1e-12
    )
    teacher_top = np.argpartition(-(val_unit @ db_unit.T), k - 1, axis=1)[:, :k]
    distances = distance_matrix(np.packbits(val_bits, axis=1), np.packbits(db_bits, axis=1))
    return tie_aware_overlap(distances, teacher_top, k)


def validation_metric_name(labelled: bool, taught: bool) -> str:
    """What the validation metric of a run measures (recorded in config.json)."""
    if labelled:
        return f"tie-aware P@{VALIDATION_K}"
    return f"label-free top-{VALIDATION_K} overlap ({'teacher' if taught else 'TF-IDF cosine'})"


def teacher_loss(model: SemanticHashingAutoencoder, batch: SparseBatch, targets: Tensor) -> Tensor:
    """Cross-entropy between code units and teacher bits, summed over bits, mean per document."""
    logits = model.encoder(batch.indices, batch.offsets, batch.tfidf)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / batch.size


class TrainingEnvironment:
    """Seeds torch, sets threads and deterministic algorithms, and restores them afterwards."""

    def __init__(self, config: TrainConfig) -> None:
        """Remember the settings to apply."""
        self.config = config
        self.saved: tuple[int, bool] = (torch.get_num_threads(), False)

    def __enter__(self) -> TrainingEnvironment:
        """Apply seed, thread count and determinism."""
        self.saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
        torch.manual_seed(self.config.seed)
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        torch.use_deterministic_algorithms(self.config.deterministic, warn_only=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Put the process-wide torch settings back."""
        threads, deterministic = self.saved
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that produced a model, for config.json."""
    import scipy
    import sklearn

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
    }


def train(
    texts: Sequence[str],
    config: TrainConfig,
    labels: Sequence[Sequence[str]] | None = None,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
) -> Hasher:
    """Fit a featurizer and an autoencoder on `texts`; return the Hasher of the best epoch.

    A `val_fraction` share of the documents is held out; after each epoch their codes are ranked
    against the remaining documents' codes and training stops once the metric has not improved
    for `patience` epochs. `on_epoch` receives {"epoch", "epochs", "loss", "val_metric",
    "elapsed_s", "eta_s"} after every epoch.
    """
    texts = list(texts)
    if labels is not None and len(labels) != len(texts):
        raise ValueError(f"{len(labels)} label sets for {len(texts)} texts")
    if len(texts) < 2:
        raise ValueError("training needs at least 2 documents")
    started = time.monotonic()
    with TrainingEnvironment(config):
        rng = np.random.default_rng(config.seed)
        min_df, max_df = vocabulary_limits(len(texts), config)
        featurizer = Featurizer.fit(texts, config.max_features, min_df, max_df)
        if len(featurizer) == 0:
            raise ValueError("the corpus has no usable words (all rare, stop words or too common)")
        counts = featurizer.counts(texts)
        if config.input_weighting == "sublinear":
            tfidf = sublinear_tfidf(counts, featurizer.idf)
        else:
            tfidf = featurizer.tfidf(counts=counts)
        val_rows = split_validation(len(texts), config.val_fraction, rng)
        train_rows = np.setdiff1d(np.arange(len(texts)), val_rows)
        label_sets = None if labels is None else [tuple(doc_labels) for doc_labels in labels]
        # Held-out documents join the teacher's graph (no labels involved): the student never
        # trains on them, and their teacher neighbours are what label-free validation checks.
        teacher = fit_teacher(config, featurizer, counts, np.arange(len(texts)))
        targets = None if teacher is None else teacher.targets
        projections = (
            None
            if teacher is None
            else (teacher.projection[val_rows], teacher.projection[train_rows])
        )
        device = torch.device(config.device)

        model = build_autoencoder(
            config.variant,
            len(featurizer),
            config.bits,
            hidden_sizes=config.hidden_sizes,
            noise_std=config.noise_std,
            penalty=config.resolved_penalty(),
            corruption=config.corruption,
        ).to(device)
        optimizers = build_optimizers(model, config.lr)
        history: list[dict[str, Any]] = []
        best_metric, best_epoch, best_state = -math.inf, 0, copy.deepcopy(model.state_dict())
        stopped_by = "epochs"
        epochs_started = time.monotonic()
        bar = tqdm(range(1, config.epochs + 1), desc="train", unit="epoch", disable=not progress)
        for epoch in bar:
            model.train()
            order = rng.permutation(train_rows)
            loss_sum, term_sums = 0.0, {}
            for start in range(0, len(order), config.batch_size):
                rows = order[start : start + config.batch_size]
                batch = batch_of(tfidf, counts, rows).to(device)
                terms = model.loss_terms(batch)
                if targets is not None:
                    batch_targets = torch.from_numpy(targets[rows]).to(device)
                    terms["teacher"] = config.teacher_weight * teacher_loss(
                        model, batch, batch_targets
                    )
                loss = sum(terms.values())
                for optimizer in optimizers:
                    optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for optimizer in optimizers:
                    optimizer.step()
                loss_sum += loss.item() * batch.size
                for name, value in terms.items():
                    term_sums[name] = term_sums.get(name, 0.0) + value.item() * batch.size
            model.eval()
            epoch_loss = loss_sum / len(order)
            val_metric = None
            if len(val_rows):
                val_metric = validation_metric(
                    model,
                    tfidf[val_rows],
                    tfidf[train_rows],
                    None if label_sets is None else [label_sets[i] for i in val_rows],
                    None if label_sets is None else [label_sets[i] for i in train_rows],
                    projections,
                )
            elapsed = time.monotonic() - started
            eta = elapsed / epoch * (config.epochs - epoch)
            record = {
                "epoch": epoch,
                "epochs": config.epochs,
                "loss": epoch_loss,
                "val_metric": val_metric,
                "elapsed_s": elapsed,
                "eta_s": eta,
            }
            history.append({**record, "terms": {k: v / len(order) for k, v in term_sums.items()}})
            bar.set_postfix(loss=f"{epoch_loss:.1f}", val=f"{val_metric or 0:.4f}")
            if on_epoch is not None:
                on_epoch(record)
            score = epoch_loss * -1 if val_metric is None else val_metric
            if score > best_metric:
                best_metric, best_epoch = score, epoch
                best_state = copy.deepcopy(model.state_dict())
            elif val_metric is not None and epoch - best_epoch >= config.patience:
                stopped_by = "patience"
                break
            if epoch < config.epochs and past_budget(config, started, epochs_started, epoch):
                stopped_by = "time_budget"
                break
        bar.close()
        model.load_state_dict(best_state)
        model.cpu().eval()
        train_bits = encode_matrix(model, tfidf[train_rows])
        train_logits = logits_matrix(model, tfidf[train_rows])

    lengths = np.diff(counts.indptr)
    info = {
        "train": dataclasses.asdict(config) | {"penalty": config.resolved_penalty()},
        "featurizer": featurizer.params,
        "corpus": {
            "documents": len(texts),
            "train_documents": len(train_rows),
            "validation_documents": len(val_rows),
            "labelled": labels is not None,
            "mean_distinct_terms": float(lengths.mean()),
            "empty_documents": int((lengths == 0).sum()),
        },
        "validation": {
            "metric": validation_metric_name(labels is not None, targets is not None),
            "best": best_metric if len(val_rows) else None,
            "best_epoch": best_epoch,
            "epochs_run": len(history),
            "stopped_by": stopped_by,
            "history": history,
        },
        "codes": {
            key: value
            for key, value in bucket_statistics(np.packbits(train_bits, axis=1)).items()
            if key != "histogram"
        },
        "rescore": {"form": "int8 code-layer logits", "form_scale": form_scale(train_logits)},
        "teacher": "none" if targets is None else config.teacher,
        "training_seconds": time.monotonic() - started,
        "versions": library_versions(),
    }
    return Hasher(featurizer, model, config.variant, info, input_weighting=config.input_weighting)
