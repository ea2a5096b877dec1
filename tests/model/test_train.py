"""Training: small-corpus rules, validation, early stopping, determinism, `docbits train`."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from docbits.model.hasher import Hasher
from docbits.model.metrics import precision_at_k
from docbits.service.commands.train import VARIANT_NAMES

training = importlib.import_module(
    "docbits.model.train"
)  # `docbits.model.train` itself is the function
TrainConfig = training.TrainConfig

ROOT = Path(__file__).resolve().parents[2]
FAST = {"hidden_sizes": (48,), "batch_size": 32, "lr": 5e-3, "epochs": 12, "patience": 12}


def synthetic_corpus(
    n_topics: int = 4, docs_per_topic: int = 40, seed: int = 0
) -> tuple[list[str], list[tuple[str, ...]]]:
    """Documents drawn from disjoint topic vocabularies plus shared filler words, with labels."""
    rng = np.random.default_rng(seed)
    shared = [f"common{i}" for i in range(30)]
    texts, labels = [], []
    for topic in range(n_topics):
        own = [f"topic{topic}word{i}" for i in range(25)]
        for _ in range(docs_per_topic):
            words = list(rng.choice(own, size=20)) + list(rng.choice(shared, size=15))
            texts.append(" ".join(rng.permutation(words)))
            labels.append((f"topic{topic}",))
    return texts, labels


def test_vocabulary_limits_shrink_for_small_corpora() -> None:
    config = TrainConfig()
    assert training.vocabulary_limits(11_314, config) == (3, 0.8)
    assert training.vocabulary_limits(500, config) == (2, 0.8)
    assert training.vocabulary_limits(50, config) == (1, 0.8)
    assert training.vocabulary_limits(10, config) == (1, 1.0)
    assert training.vocabulary_limits(10, TrainConfig(min_df=4, max_df=0.5)) == (4, 0.5)


def test_config_rejects_bad_settings() -> None:
    bad_settings = (
        {"variant": "nope"},
        {"bits": 12},
        {"epochs": 0},
        {"val_fraction": 1.0},
        {"teacher_sharpness": 0.0},
        {"time_budget_s": 0.0},
    )
    for bad in bad_settings:
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_cli_variant_names_match_the_library() -> None:
    from docbits.model.autoencoders import VARIANTS

    assert VARIANT_NAMES == VARIANTS


def test_tie_aware_overlap_gives_equal_codes_only_chance_credit() -> None:
    distances = np.zeros((1, 10), dtype=np.int32)
    relevant = np.array([[0, 1]])
    assert training.tie_aware_overlap(distances, relevant, k=2) == pytest.approx(0.2)
    distances = np.array([[0, 1, 5, 5, 5, 5, 5, 5, 5, 5]])
    assert training.tie_aware_overlap(distances, relevant, k=2) == pytest.approx(1.0)


def test_validation_split_keeps_both_sides_non_trivial() -> None:
    rng = np.random.default_rng(0)
    assert len(training.split_validation(100, 0.1, rng)) == 10
    assert len(training.split_validation(10, 0.1, rng)) == 0
    assert len(training.split_validation(3, 0.5, rng)) == 0


@pytest.fixture(scope="module")
def clustered() -> tuple[list[str], list[tuple[str, ...]]]:
    return synthetic_corpus()


def cluster_precision(hasher: Hasher, texts: list[str], labels: list[tuple[str, ...]]) -> float:
    """Tie-aware P@20 of fresh documents from the same topics against the training documents."""
    test_texts, test_labels = synthetic_corpus(seed=1)
    return precision_at_k(hasher.encode(test_texts), hasher.encode(texts), test_labels, labels, 20)[
        "tie_aware"
    ]


def test_trained_codes_separate_clusters_far_better_than_random(clustered) -> None:
    texts, labels = clustered
    records: list[dict] = []
    hasher = training.train(
        texts,
        TrainConfig(bits=16, variant="undercomplete", **FAST),
        labels=labels,
        progress=False,
        on_epoch=records.append,
    )
    rng = np.random.default_rng(0)
    random_codes = rng.integers(0, 256, size=(160, 2), dtype=np.uint8)
    random_db = rng.integers(0, 256, size=(len(texts), 2), dtype=np.uint8)
    _, test_labels = synthetic_corpus(seed=1)
    chance = precision_at_k(random_codes, random_db, test_labels, labels, k=20)["tie_aware"]
    assert chance < 0.4
    assert cluster_precision(hasher, texts, labels) > 0.9
    assert set(records[0]) == {"epoch", "epochs", "loss", "val_metric", "elapsed_s", "eta_s"}
    assert [r["epoch"] for r in records] == list(range(1, len(records) + 1))
    validation = hasher.config["validation"]
    assert validation["metric"] == "tie-aware P@100"
    assert validation["best"] == max(r["val_metric"] for r in records)
    assert hasher.config["codes"]["distinct_codes"] >= 4


def test_teacher_targets_are_soft_by_default_and_hard_on_request(clustered) -> None:
    from docbits.model.featurizer import Featurizer

    texts, _ = clustered
    featurizer = Featurizer.fit(texts, 1000, 1, 1.0)
    counts = featurizer.counts(texts)
    rows = np.arange(0, len(texts), 2)
    soft_fit = training.fit_teacher(TrainConfig(bits=16), featurizer, counts, rows)
    hard_fit = training.fit_teacher(
        TrainConfig(bits=16, teacher_sharpness=None), featurizer, counts, rows
    )
    assert soft_fit is not None and hard_fit is not None
    soft, hard = soft_fit.targets, hard_fit.targets
    assert set(np.unique(hard[rows])) == {0.0, 1.0}
    assert ((soft[rows] > 0) & (soft[rows] < 1)).all()
    np.testing.assert_array_equal(soft[rows] >= 0.5, hard[rows] == 1.0)
    assert not soft[1::2].any() and not hard[1::2].any()


def test_long_codes_take_teacher_blocks_from_several_graphs(clustered) -> None:
    from docbits.model.featurizer import Featurizer

    texts, _ = clustered
    featurizer = Featurizer.fit(texts, 1000, 1, 1.0)
    counts = featurizer.counts(texts)
    rows = np.arange(len(texts))
    config = TrainConfig(bits=64, graph_k=6, teacher_sharpness=None)
    teacher = training.fit_teacher(config, featurizer, counts, rows)
    assert teacher is not None
    targets = teacher.targets
    assert targets.shape == (len(texts), 64)
    blocks = np.split(targets, [22, 43], axis=1)
    assert [block.shape[1] for block in blocks] == [22, 21, 21]
    assert 0.2 < targets.mean() < 0.8
    assert not np.array_equal(blocks[1][:, :21], blocks[2])


@pytest.mark.parametrize("variant", ["sparse", "denoising", "contractive", "variational"])
def test_every_variant_learns_the_clusters(clustered, variant: str) -> None:
    texts, labels = clustered
    config = TrainConfig(bits=16, variant=variant, **FAST)
    hasher = training.train(texts, config, labels=labels, progress=False)
    assert cluster_precision(hasher, texts, labels) > 0.8


def test_same_seed_gives_the_same_model_and_another_seed_does_not(clustered) -> None:
    texts, _ = clustered
    config = {**FAST, "epochs": 3}
    first = training.train(texts, TrainConfig(bits=8, seed=3, **config), progress=False)
    second = training.train(texts, TrainConfig(bits=8, seed=3, **config), progress=False)
    other = training.train(texts, TrainConfig(bits=8, seed=4, **config), progress=False)
    assert first.fingerprint == second.fingerprint
    assert first.fingerprint != other.fingerprint


def test_label_free_training_on_fifty_documents() -> None:
    texts, _ = synthetic_corpus(n_topics=2, docs_per_topic=25, seed=2)
    hasher = training.train(texts, TrainConfig(bits=8, **{**FAST, "epochs": 3}), progress=False)
    assert hasher.config["validation"]["metric"] == "label-free top-100 overlap (teacher)"
    assert 0.0 <= hasher.config["validation"]["best"] <= 1.0
    assert hasher.config["featurizer"]["min_df"] == 1
    assert hasher.encode(texts[:3]).shape == (3, 1)


def test_early_stopping_restores_the_best_epoch(clustered, monkeypatch) -> None:
    texts, labels = clustered
    scores = iter([0.5, 0.9, 0.4, 0.3, 0.2, 0.1, 0.0, 0.0])
    snapshots: list[bytes] = []

    def scripted_metric(model, *args) -> float:
        snapshots.append(model.encoder.upper[-1].weight.detach().numpy().tobytes())
        return next(scores)

    monkeypatch.setattr(training, "validation_metric", scripted_metric)
    config = TrainConfig(bits=8, **{**FAST, "epochs": 8, "patience": 2})
    hasher = training.train(texts, config, labels=labels, progress=False)
    validation = hasher.config["validation"]
    assert validation["epochs_run"] == 4 and validation["best_epoch"] == 2
    assert validation["stopped_by"] == "patience"
    assert hasher.model.encoder.upper[-1].weight.detach().numpy().tobytes() == snapshots[1]


def test_time_budget_starts_no_epoch_that_would_end_past_it(clustered, monkeypatch) -> None:
    texts, labels = clustered

    class Clock:
        """A clock that only moves when an epoch is validated: 10 s per epoch."""

        now = 0.0

        @classmethod
        def monotonic(cls) -> float:
            return cls.now

    def ten_second_epoch(model, *args) -> float:
        Clock.now += 10.0
        return Clock.now  # always improving: only the budget stops training

    monkeypatch.setattr(training, "time", Clock)
    monkeypatch.setattr(training, "validation_metric", ten_second_epoch)
    config = TrainConfig(bits=8, **{**FAST, "epochs": 8}, time_budget_s=35.0)
    validation = training.train(texts, config, labels=labels, progress=False).config["validation"]
    # After 3 epochs (30 s) a fourth would end at 40 s > 35 s.
    assert validation["epochs_run"] == 3 and validation["best_epoch"] == 3
    assert validation["stopped_by"] == "time_budget"
    unbounded = TrainConfig(bits=8, **{**FAST, "epochs": 5})
    hasher = training.train(texts, unbounded, labels=labels, progress=False)
    validation = hasher.config["validation"]
    assert validation["epochs_run"] == 5 and validation["stopped_by"] == "epochs"


def test_train_rejects_corpora_without_usable_words() -> None:
    with pytest.raises(ValueError, match="no usable words"):
        training.train(["the and", "of a to"], TrainConfig(**FAST), progress=False)


def write_jsonl(path: Path, texts: list[str], labels: list[tuple[str, ...]], split: str) -> None:
    """Append documents as JSON Lines records."""
    with path.open("a") as out:
        for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
            record = {"id": f"{split}-{i}", "text": text, "labels": list(label), "split": split}
            out.write(json.dumps(record) + "\n")


def test_docbits_train_end_to_end(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    texts, labels = synthetic_corpus(n_topics=3, docs_per_topic=30)
    write_jsonl(corpus, texts, labels, "train")
    held_out = [f"{text} unseenzebra unseenzebra" for text in texts[:10]]
    write_jsonl(corpus, held_out, labels[:10], "test")
    out = tmp_path / "model"
    command = [sys.executable, "-m", "docbits.service.cli", "train", "--corpus", str(corpus)]
    command += ["--out", str(out), "--bits", "16", "--epochs", "2", "--variant", "sparse"]
    command += ["--seed", "1", "--batch-size", "32", "--teacher-weight", "3", "--graph-k", "5"]
    command += ["--teacher-sharpness", "hard"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["documents"] == 90 and summary["bits"] == 16 and summary["variant"] == "sparse"
    assert "epoch" in result.stderr  # the tqdm progress bar
    hasher = Hasher.load(out)
    assert hasher.fingerprint == summary["fingerprint"]
    assert "unseenzebra" not in hasher.featurizer.vocabulary  # the test split stayed unseen
    assert hasher.config["train"]["seed"] == 1 and hasher.config["corpus"]["protocol"] == "clean"
    assert hasher.config["train"]["teacher_sharpness"] is None
    assert hasher.config["train"]["teacher_weight"] == 3 and hasher.config["train"]["graph_k"] == 5
    assert hasher.encode(texts[:4]).shape == (4, 2)


def test_docbits_train_reports_a_missing_corpus(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "docbits.service.cli",
        "train",
        "--corpus",
        str(tmp_path / "nope"),
    ]
    command += ["--out", str(tmp_path / "model")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2
    assert "corpus not found" in result.stderr
    assert not (tmp_path / "model").exists()
