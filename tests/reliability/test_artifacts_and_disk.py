"""Damaged model files are refused clearly; a full disk answers 507 and a read-only data folder
503, each with a message, losing nothing already stored (tmpfs mounts stand in for disks)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from docbits.index.store.sqlite import SQLiteStore
from tests.reliability.conftest import (
    ROOT,
    Server,
    server_environment,
    serving,
    start_server,
    topical_documents,
)

WEIGHTS_FILE = "model.safetensors"


@contextmanager
def tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `mount_point`; skips (saying why) where the OS refuses to mount."""
    mount_point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to simulate a small disk: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def remount(mount_point: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount_point)], check=True)


def wait_for_refusal(server: Server, timeout_s: float = 90.0) -> str:
    """Poll /readyz until it answers 503 with a reason; returns the message."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.url, timeout=5) as client:
        while time.monotonic() < deadline:
            assert server.alive(), server.log()[-3000:]
            try:
                answer = client.get("/readyz")
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            assert answer.status_code == 503, answer.text
            message = answer.json()["error"]["message"]
            if "loading" not in message:
                return str(message)
            time.sleep(0.1)
    raise TimeoutError(server.log()[-3000:])


def serve_exits(data_dir: Path, model_dir: Path | None) -> subprocess.CompletedProcess[str]:
    """Run `docbits serve` expecting it to refuse to start; returns its exit and output."""
    command = [sys.executable, "-m", "docbits.service.cli", "serve", "--data-dir", str(data_dir)]
    command += ["--port", "0"]
    if model_dir is not None:
        command += ["--model", str(model_dir)]
    return subprocess.run(
        command, cwd=ROOT, env=server_environment(), capture_output=True, text=True, timeout=120
    )


def damaged_copy(model_dir: Path, target: Path, how: str) -> Path:
    """A copy of the model whose weights file is tampered (one byte flipped) or truncated."""
    shutil.copytree(model_dir, target)
    weights = target / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    if how == "tampered":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    weights.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("how", ["tampered", "truncated"])
def test_damaged_model_is_refused_at_import(tmp_path: Path, tiny_model: Path, how: str) -> None:
    bad = damaged_copy(tiny_model, tmp_path / "bad-model", how)
    done = serve_exits(tmp_path / "data", bad)
    assert done.returncode != 0
    assert "cannot load the model" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_damaged_active_model_is_refused_at_restart(tmp_path: Path, tiny_model: Path) -> None:
    data_dir = tmp_path / "data"
    docs = topical_documents(20, prefix="kept")
    with (
        serving(data_dir, model_dir=tiny_model, log_dir=tmp_path) as server,
        server.client() as client,
    ):
        assert client.post("/v1/documents", json={"documents": docs}).status_code == 200
        fingerprint = client.get("/v1/model").json()["model_fingerprint"]
    active = data_dir / "models" / fingerprint
    intact = tmp_path / "intact"
    shutil.copytree(active, intact)
    for how in ("tampered", "truncated"):
        shutil.rmtree(active)
        damaged_copy(intact, active, how)
        done = serve_exits(data_dir, None)
        assert done.returncode != 0, how
        assert fingerprint[:12] in done.stderr, done.stderr[-2000:]
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
    store = SQLiteStore(data_dir / "docbits.sqlite3")
    try:
        assert store.count() == len(docs)
        assert store.storage_errors() == []
    finally:
        store.close()


def test_full_disk_answers_507_and_keeps_what_was_stored(tmp_path: Path, tiny_model: Path) -> None:
    with tmpfs(tmp_path / "disk", "6m") as disk:
        ballast = disk / "ballast"
        data_dir = disk / "data"
        acknowledged: dict[str, str] = {}
        refusals = []
        with (
            serving(data_dir, model_dir=tiny_model, log_dir=tmp_path) as server,
            server.client() as client,
        ):
            ballast.write_bytes(b"\0" * 1024 * 1024)
            for batch_number in range(400):
                docs = topical_documents(20, seed=batch_number, prefix=f"full{batch_number}")
                for doc in docs:
                    doc["text"] += " " + "payload " * 300
                response = client.post("/v1/documents", json={"documents": docs})
                if response.status_code == 200:
                    acknowledged.update({doc["id"]: doc["text"] for doc in docs})
                    continue
                refusals.append(response)
                if len(refusals) >= 3:
                    break
            assert refusals, "the disk never filled"
            for refusal in refusals:
                assert refusal.status_code == 507, refusal.text
                error = refusal.json()["error"]
                assert error["code"] == "insufficient_storage"
                assert "full" in error["message"]
            for doc_id, text in acknowledged.items():
                assert client.get(f"/v1/documents/{doc_id}").json()["text"] == text
            assert client.get("/v1/info").json()["documents"] == len(acknowledged)
            assert client.get("/readyz").status_code == 200
            ballast.unlink()
            again = topical_documents(5, prefix="after-space")
            assert client.post("/v1/documents", json={"documents": again}).status_code == 200
        store = SQLiteStore(data_dir / "docbits.sqlite3")
        try:
            assert store.storage_errors() == []
            assert store.count() == len(acknowledged) + 5
        finally:
            store.close()


def test_read_only_data_folder_answers_503_and_keeps_what_was_stored(
    tmp_path: Path, tiny_model: Path
) -> None:
    docs = topical_documents(30, prefix="ro")
    with tmpfs(tmp_path / "disk", "16m") as disk:
        data_dir = disk / "data"
        with (
            serving(data_dir, model_dir=tiny_model, log_dir=tmp_path) as server,
            server.client() as client,
        ):
            assert client.post("/v1/documents", json={"documents": docs}).status_code == 200
        remount(disk, "ro")
        server = start_server(data_dir, wait=False, log_dir=tmp_path)
        try:
            reason = wait_for_refusal(server)
            assert "read-only" in reason and "cannot be opened" in reason, reason
            with server.client() as client:
                assert client.get("/livez").status_code == 200
                refused = client.post("/v1/documents", json={"documents": topical_documents(2)})
                assert refused.status_code == 503 and "read-only" in refused.text, refused.text
                assert client.get("/v1/documents/ro-0").status_code == 503
            assert "Traceback" not in server.log()
        finally:
            server.stop()
        remount(disk, "rw")
        store = SQLiteStore(data_dir / "docbits.sqlite3")
        try:
            assert store.storage_errors() == []
            assert store.count() == len(docs)
        finally:
            store.close()
