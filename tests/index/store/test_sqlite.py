"""SQLiteStore only: its file settings, migrations of older files, and SQLite's own failures
(locked, full, read-only). Everything backend-independent is in test_contract.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from docbits.index.store import SQLiteStore, StoredDocument, StoreError, StoreUnavailableError
from docbits.index.store.sqlite import SCHEMA_VERSION, migrate
from tests.index.store.conftest import Backend, run_together

FP = "f" * 64


def doc(doc_id: str, code: int | None = None, text: str = "some text") -> StoredDocument:
    packed = None if code is None else code.to_bytes(2, "big")
    return StoredDocument(doc_id, text, {}, packed, None if code is None else FP)


@pytest.fixture
def store(tmp_path: Path):
    """A fresh store in a nested folder that does not exist yet."""
    opened = SQLiteStore(tmp_path / "data" / "docs.sqlite")
    yield opened
    opened.close()


def test_the_file_is_in_wal_mode_with_full_sync(store: SQLiteStore) -> None:
    """A write is durable when it returns: WAL, fsynced at each commit."""
    connection = store._connection()
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.schema_version == SCHEMA_VERSION


def test_a_row_failing_inside_sqlite_rolls_the_batch_back(store: SQLiteStore) -> None:
    """A row that fails inside SQLite, after earlier rows were inserted, leaves nothing."""
    store.upsert([doc("keep", 1)])
    side = sqlite3.connect(store.path)
    side.execute(
        "CREATE TRIGGER poison BEFORE INSERT ON documents WHEN NEW.id = 'poison' "
        "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
    )
    side.commit()
    side.close()
    with pytest.raises(StoreError, match="poisoned row"):
        store.upsert([doc("x1", 1), doc("keep", 9), doc("poison", 2), doc("x2", 3)])
    assert store.count() == 1 and store.get("keep").code == b"\x00\x01"
    assert store.last_seq() == 1 and store.storage_errors() == []


def database_at_version(path: Path, version: int, *statements: str) -> Path:
    """A new file migrated to `version` only, with `statements` run on it (each given the test
    fingerprint for as many `?` as it has)."""
    old = sqlite3.connect(path, isolation_level=None)
    assert migrate(old, target=version) == version
    for statement in statements:
        old.execute(statement, [FP] * statement.count("?"))
    old.close()
    return path


def test_migrates_a_version_1_database(tmp_path: Path) -> None:
    """A file written by schema version 1 (no updated_at, no feed) opens, migrated, with its data;
    its feed starts empty (followers load the documents from the store itself)."""
    path = database_at_version(
        tmp_path / "old.sqlite",
        1,
        "INSERT INTO documents (id, text, metadata, code, fingerprint, created_at) "
        "VALUES ('old', 'legacy', '{\"a\": 1}', x'0102', ?, 123.5)",
    )
    store = SQLiteStore(path)
    assert store.schema_version == SCHEMA_VERSION == 5
    migrated = store.get("old")
    assert migrated.metadata == {"a": 1} and migrated.code == b"\x01\x02"
    assert migrated.created_at == migrated.updated_at == 123.5
    assert store.last_seq() == 0 and store.changes_since(0) == []
    assert store.upsert([doc("new", 1)]) == 1
    store.close()


def test_migrates_a_version_4_feed_without_forms(tmp_path: Path) -> None:
    """Changes written before the feed carried forms read back with no form; the index built
    from the store still gets the documents' forms."""
    path = database_at_version(
        tmp_path / "v4.sqlite",
        4,
        "INSERT INTO documents (id, text, metadata, code, fingerprint, form, created_at, "
        "updated_at) VALUES ('old', 't', '{}', x'0102', ?, x'000102030405060708090a0b0c0d0e0f', "
        "1.0, 1.0)",
        "INSERT INTO changes (seq, kind, id, code, fingerprint, written_at) "
        "VALUES (1, 'upsert', 'old', x'0102', ?, 1.0)",
        "UPDATE feed SET last_seq = 1",
    )
    store = SQLiteStore(path)
    assert store.schema_version == SCHEMA_VERSION
    assert [(change.id, change.form) for change in store.changes_since(0)] == [("old", None)]
    [(ids, _, forms)] = list(store.iter_codes(FP))
    assert ids == ["old"] and forms.tobytes() == bytes(range(16))
    store.close()


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    """A file from a future version is not touched."""
    path = tmp_path / "future.sqlite"
    future = sqlite3.connect(path)
    future.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    future.close()
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(path)


OPENER = """
store = open_from()
print(store.schema_version, store.last_seq())
"""


def test_processes_opening_a_new_file_together_migrate_it_once(tmp_path: Path) -> None:
    """Eight processes opening a missing file at once all succeed on one schema."""
    backend = Backend("sqlite", None, tmp_path / "data")
    outputs = run_together(
        OPENER, backend, [[]] * 8, tmp_path / "go", open_first=False, timeout_s=60
    )
    assert [out.split() for out in outputs] == [[str(SCHEMA_VERSION), "0"]] * 8
    store = backend.open()
    assert store.storage_errors() == []
    store.close()


def test_locked_database_is_unavailable(tmp_path: Path) -> None:
    """A write blocked by another process's lock raises StoreUnavailableError after the timeout."""
    store = SQLiteStore(tmp_path / "docs.sqlite", busy_timeout_s=0.05)
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailableError, match=r"busy|locked"):
            store.upsert([doc("a", 1)])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    store.upsert([doc("a", 1)])
    assert store.count() == 1
    store.close()


def test_full_or_read_only_database_is_unavailable(store: SQLiteStore) -> None:
    """SQLITE_FULL and SQLITE_READONLY surface as StoreUnavailableError; nothing is half-written."""
    store.upsert([doc("a", 1)])
    connection = store._connection()  # this thread's connection, which upsert uses
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count = {pages + 2}")
    big = [doc(f"big{i}", i, text="x" * 20_000) for i in range(20)]
    with pytest.raises(StoreUnavailableError, match="full"):
        store.upsert(big)
    assert store.count() == 1 and store.last_seq() == 1
    connection.execute("PRAGMA max_page_count = 1073741823")
    connection.execute("PRAGMA query_only = ON")
    with pytest.raises(StoreUnavailableError, match="read-only"):
        store.upsert([doc("b", 2)])
    connection.execute("PRAGMA query_only = OFF")
    store.upsert(big)
    assert store.count() == 21 and store.last_seq() == 21
