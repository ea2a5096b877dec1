"""Service configuration from `DOCBITS_*` environment variables (and `docbits serve` flags)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class Settings(BaseSettings):
    """Everything the service reads at start-up; each field is also `DOCBITS_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="DOCBITS_", extra="ignore", env_ignore_empty=True)

    data_dir: Path = Field(Path("./data"), description="The SQLite store and the models live here.")
    store_url: SecretStr | None = Field(
        None, description="postgresql://user:password@host:port/db; unset: the SQLite file."
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    model_path: Path | None = Field(
        None, description="Import this offline-trained model directory at start-up."
    )
    max_batch_docs: int = Field(1000, ge=1, description="Documents per ingest request.")
    max_request_bytes: int = Field(8 * MIB, ge=1024, description="Raw request body size.")
    max_text_bytes: int = Field(1 * MIB, ge=1, description="UTF-8 size of one document's text.")
    max_batch_queries: int = Field(100, ge=1, description="Queries per batch search request.")
    radius_cap: int = Field(3, ge=0, le=8, description="Largest Hamming radius a search may ask.")
    max_limit: int = Field(1000, ge=1, description="Largest `limit` a search may ask.")
    snippet_chars: int = Field(200, ge=0)
    api_key: SecretStr | None = Field(None, description="Guards writes and admin routes.")
    read_api_key: SecretStr | None = Field(None, description="Optional: guards reads too.")
    allow_open: bool = Field(False, description="Listen beyond loopback with no API key.")
    autotrain_min_docs: int = Field(1000, ge=0, description="0 disables automatic training.")
    retrain_growth: float = Field(
        2.0,
        description="Retrain once the stored documents reach this multiple of those the active "
        "model was trained on; 0 never.",
    )
    train_bits: int = 64
    train_variant: str | None = Field(None, description="None keeps the trainer's default.")
    train_epochs: int = Field(30, ge=1)
    train_budget_s: float = Field(
        240.0,
        ge=0,
        description="Wall seconds a training job may spend before its last epoch ends; the best "
        "epoch so far is kept. 0: no budget.",
    )
    encode_batch_size: int = Field(512, ge=1)
    torch_threads: int | None = Field(
        1, ge=1, description="Torch threads for encoding; requests already run in parallel."
    )
    min_seq_wait_s: float = Field(
        2.0, ge=0, description="How long a read with `min_seq` waits for this process to apply it."
    )
    ready_max_lag_s: float = Field(
        10.0,
        gt=0,
        description="/readyz fails while a change seen in the store has waited longer than this "
        "to be applied here.",
    )
    training_lease_s: float = Field(
        30.0,
        ge=1,
        description="A training job's lease: its process renews it; once it lapses the job has "
        "failed and another can start.",
    )
    workers: int = Field(1, ge=1, description="Server processes, each following the store.")
    log_level: str = "info"

    @property
    def models_dir(self) -> Path:
        """Trained models, one sub-folder per fingerprint."""
        return self.data_dir / "models"

    def open_without_key_beyond_loopback(self) -> bool:
        """True when the settings would expose an unauthenticated service off this machine."""
        return self.api_key is None and self.host not in LOOPBACK_HOSTS and not self.allow_open
