"""Service fixtures: a synthetic topical corpus, a tiny trained model, and apps over tmp folders."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from docbits.service.app import create_app
from docbits.service.settings import Settings
from tests.synthetic import topical_documents


def synthetic_documents(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """`count` documents cycling through four topics, each mostly words of its own topic."""
    return topical_documents(count, seed=seed)


@pytest.fixture(scope="session")
def corpus() -> list[dict[str, Any]]:
    """240 synthetic documents, 60 per topic."""
    return synthetic_documents(240)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, corpus: list[dict[str, Any]]) -> Path:
    """A 16-bit model trained for a few epochs on the synthetic corpus, saved to disk."""
    from docbits.model.train import TrainConfig, train

    hasher = train(
        [doc["text"] for doc in corpus],
        TrainConfig(bits=16, epochs=4, hidden_sizes=(64,), variant="undercomplete"),
        progress=False,
    )
    directory = tmp_path_factory.mktemp("model")
    hasher.save(directory)
    return directory


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory: pytest.TempPathFactory, corpus: list[dict[str, Any]]) -> Path:
    """A second model (another seed, so another fingerprint) for switch tests."""
    from docbits.model.train import TrainConfig, train

    hasher = train(
        [doc["text"] for doc in corpus],
        TrainConfig(bits=16, epochs=2, hidden_sizes=(64,), variant="undercomplete", seed=3),
        progress=False,
    )
    directory = tmp_path_factory.mktemp("other-model")
    hasher.save(directory)
    return directory


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    """Poll /readyz until the background load finishes."""
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(client.get("/readyz").text)
        time.sleep(0.02)


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    """Settings over a tmp data folder that never train by themselves unless asked."""
    overrides.setdefault("autotrain_min_docs", 0)
    overrides.setdefault("retrain_growth", 0)
    return Settings(data_dir=data_dir, **overrides)


def open_client(data_dir: Path, **overrides: Any) -> TestClient:
    """An app over `data_dir` with its lifespan running (close the client to stop it)."""
    client = TestClient(create_app(settings_for(data_dir, **overrides)))
    client.__enter__()
    wait_ready(client)
    return client


@pytest.fixture
def bare_client(tmp_path: Path) -> Iterator[TestClient]:
    """A fresh service with no model."""
    client = open_client(tmp_path)
    yield client
    client.__exit__(None, None, None)


@pytest.fixture
def client(tmp_path: Path, model_dir: Path) -> Iterator[TestClient]:
    """A service that imported the tiny model at start-up."""
    client = open_client(tmp_path, model_path=model_dir)
    yield client
    client.__exit__(None, None, None)
