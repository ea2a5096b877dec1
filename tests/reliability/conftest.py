"""Reliability fixtures: a real `docbits serve` subprocess on 127.0.0.1, a tiny model, a corpus."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.synthetic import topical_documents as synthetic_corpus

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 90.0


def topical_documents(count: int, seed: int = 11, prefix: str = "doc") -> list[dict[str, Any]]:
    """`count` synthetic documents cycling through four topics (ids `prefix-<n>`)."""
    return synthetic_corpus(count, seed=seed, prefix=prefix, length=30)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without DOCBITS_* settings, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DOCBITS_")}
    env.update(extra or {})
    return env


@dataclass
class Server:
    """A running `docbits serve` process, its address and its log file."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path
    started_s: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key: str | None = None, timeout: float = 30.0) -> httpx.Client:
        """An httpx client bound to this server, sending `key` as a bearer token when given."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the server and its training worker: no shutdown code runs, like a power cut."""
        self._kill_group()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 20 s; no worker outlives it."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._kill_group()

    def group_members(self) -> list[int]:
        """Live (non-zombie) processes of this server's process group: it and its workers."""
        members = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with suppress(OSError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if fields[0] != "Z" and int(fields[2]) == self.process.pid:
                    members.append(int(stat.parent.name))
        return members

    def _kill_group(self) -> None:
        """SIGKILL this server's process group (it runs in its own session)."""
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def wait_until_ready(server: Server, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll /readyz until 200; fail with the server log if it exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        while True:
            if not server.alive():
                raise RuntimeError(f"docbits serve exited early:\n{server.log()[-4000:]}")
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout_s} s:\n{server.log()[-4000:]}")
            time.sleep(0.05)


def start_server(
    data_dir: Path,
    *,
    model_dir: Path | None = None,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    wait: bool = True,
    log_dir: Path | None = None,
) -> Server:
    """Start `docbits serve` on a free 127.0.0.1 port over `data_dir` (automatic training off).

    The log goes to `log_dir` (default: beside `data_dir`).
    """
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "docbits.service.cli", "serve", "--data-dir", str(data_dir)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--autotrain-min-docs", "0"]
    command += ["--retrain-growth", "0"]
    command += ["--log-level", "info"]
    if model_dir is not None:
        command += ["--model", str(model_dir)]
    command += args or []
    log_path = (log_dir or data_dir.parent) / f"{data_dir.name}-server-{port}.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=server_environment(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, port, data_dir, log_path)
    if wait:
        try:
            wait_until_ready(server)
        except BaseException:
            server.kill()
            raise
    return server


def store_environment(request: pytest.FixtureRequest) -> dict[str, str]:
    """For a fixture parametrized by store: `DOCBITS_STORE_URL` of a fresh database on the
    session's PostgreSQL server for "postgresql", nothing (the SQLite default) for "sqlite"."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_server").create_database()
        return {"DOCBITS_STORE_URL": url}
    return {}


@contextmanager
def serving(data_dir: Path, **options: Any) -> Iterator[Server]:
    """A server for the length of the block; always stopped afterwards, also on failure."""
    server = start_server(data_dir, **options)
    try:
        yield server
    finally:
        server.stop()


def train_tiny_model(directory: Path, texts: list[str], seed: int = 0) -> Path:
    """A 16-bit undercomplete model trained for two epochs, saved to `directory`."""
    from docbits.model.train import TrainConfig, train

    hasher = train(
        texts,
        TrainConfig(bits=16, epochs=2, hidden_sizes=(32,), variant="undercomplete", seed=seed),
        progress=False,
    )
    hasher.save(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model on the synthetic topics, shared by every reliability test."""
    texts = [doc["text"] for doc in topical_documents(200, seed=3)]
    return train_tiny_model(tmp_path_factory.mktemp("tiny-model"), texts)


@pytest.fixture
def server(tmp_path: Path, tiny_model: Path) -> Iterator[Server]:
    """An open (no key) server with the tiny model imported, over a fresh data folder."""
    with serving(tmp_path / "data", model_dir=tiny_model) as running:
        yield running
