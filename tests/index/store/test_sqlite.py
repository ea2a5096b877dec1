"""SQLiteStore on real files: atomicity, durability (reopen and SIGKILL), migrations, integrity."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from docbits.index import (
    DuplicateIdError,
    HashIndex,
    SQLiteStore,
    StoredDocument,
    StoreError,
    StoreUnavailableError,
)
from docbits.index.store.sqlite import SCHEMA_VERSION, migrate

ROOT = Path(__file__).resolve().parents[2]
FP = "f" * 64


def doc(
    doc_id: str, code: int | None = None, text: str = "some text", **metadata
) -> StoredDocument:
    """A 16-bit-coded document (or an uncoded one when `code` is None)."""
    packed = None if code is None else code.to_bytes(2, "big")
    return StoredDocument(doc_id, text, metadata, packed, None if code is None else FP)


@pytest.fixture
def store(tmp_path: Path):
    """A fresh store in a nested folder that does not exist yet."""
    opened = SQLiteStore(tmp_path / "data" / "docs.sqlite")
    yield opened
    opened.close()


def test_round_trip_and_insertion_order(store: SQLiteStore) -> None:
    """Documents come back as written, listed in insertion order; unknown ids are absent."""
    store.upsert([doc("b", 1, lang="en"), doc("a", 2, text="ünïcode"), doc("c")])
    assert store.count() == 3
    got = store.get("a")
    assert got is not None and got.text == "ünïcode" and got.code == b"\x00\x02"
    assert got.fingerprint == FP and got.metadata == {}
    assert store.get("b").metadata == {"lang": "en"}
    assert store.get("zzz") is None
    assert set(store.get_many(["a", "c", "zzz"])) == {"a", "c"}
    assert store.existing_ids(["a", "zzz", "c"]) == {"a", "c"}
    assert [d.id for batch in store.iter_documents(batch_size=2) for d in batch] == ["b", "a", "c"]
    assert store.ids_without_code(FP) == ["c"]
    assert store.ids_without_code("other") == ["b", "a", "c"]


def test_upsert_keeps_created_at_and_changes_updated_at(store: SQLiteStore) -> None:
    """Rewriting an id updates its content and updated_at, not its created_at or its order."""
    store.upsert([doc("a", 1), doc("b", 2)])
    first = store.get("a")
    time.sleep(0.01)
    store.upsert([doc("a", 3, text="new")])
    second = store.get("a")
    assert second.text == "new" and second.code == b"\x00\x03"
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert [ids for ids, _ in store.iter_codes(FP)] == [["a", "b"]]


def test_insert_only_rejects_existing_and_repeated_ids_writing_nothing(store: SQLiteStore) -> None:
    """DuplicateIdError names the clashing ids and none of the batch is written."""
    store.upsert([doc("a", 1)])
    with pytest.raises(DuplicateIdError) as raised:
        store.upsert([doc("new1", 1), doc("a", 2)], insert_only=True)
    assert raised.value.ids == ["a"]
    with pytest.raises(DuplicateIdError) as raised:
        store.upsert([doc("new2", 1), doc("new2", 2)], insert_only=True)
    assert raised.value.ids == ["new2"]
    assert store.count() == 1 and store.get("a").code == b"\x00\x01"


def test_batch_with_a_failing_row_leaves_nothing(store: SQLiteStore) -> None:
    """A row that fails inside SQLite, after earlier rows were inserted, rolls the batch back."""
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
    assert store.count() == 1
    assert store.get("keep").code == b"\x00\x01"
    with pytest.raises(ValueError, match="JSON"):
        store.upsert([doc("x3", 1), doc("x4", 1, bad=float("nan"))])
    with pytest.raises(ValueError, match="UTF-8"):
        store.upsert([doc("x5", 1), doc("bad \ud800 id", 1)])
    assert store.count() == 1
    store.upsert([doc("x6", 1, note="\ud800 survives as JSON")])
    assert store.get("x6").metadata == {"note": "\ud800 survives as JSON"}


def test_set_codes_and_switch_model_are_atomic(store: SQLiteStore) -> None:
    """An unknown id aborts the whole code batch and leaves the active model unchanged."""
    store.upsert([doc("a"), doc("b")])
    codes = np.array([[0, 1], [0, 2]], dtype=np.uint8)
    with pytest.raises(StoreError, match="unknown"):
        store.switch_model("m2", ["a", "ghost"], codes)
    assert store.get_setting("active_model") is None
    assert store.ids_without_code("m2") == ["a", "b"]
    store.switch_model("m2", ["a", "b"], codes)
    assert store.get_setting("active_model") == "m2"
    ids, stored = next(store.iter_codes("m2"))
    assert ids == ["a", "b"] and np.array_equal(stored, codes)
    store.set_codes(["b"], np.array([[7, 7]], dtype=np.uint8), "m3")
    assert store.ids_without_code("m2") == ["b"]
    with pytest.raises(ValueError, match="shape"):
        store.set_codes(["a", "b"], np.zeros((1, 2), np.uint8), "m2")


def test_delete_is_atomic_and_reports_existing(store: SQLiteStore) -> None:
    """delete returns the ids that existed, in the order asked."""
    store.upsert([doc("a", 1), doc("b", 2), doc("c", 3)])
    assert store.delete(["c", "ghost", "a", "c"]) == ["c", "a"]
    assert [d.id for batch in store.iter_documents() for d in batch] == ["b"]


def test_settings_and_pragmas_survive_reopen(tmp_path: Path) -> None:
    """Writes are durable across close/reopen, in WAL mode with synchronous=FULL."""
    path = tmp_path / "docs.sqlite"
    first = SQLiteStore(path)
    first.upsert([doc("a", 1), doc("b", 2)])
    first.set_setting("active_model", FP)
    connection = first._connection()
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    first.close()
    with pytest.raises(StoreError, match="closed"):
        first.count()
    second = SQLiteStore(path)
    assert second.count() == 2 and second.get_setting("active_model") == FP
    assert second.schema_version == SCHEMA_VERSION
    second.close()


WRITER = """
import sys
from pathlib import Path
from docbits.index import SQLiteStore, StoredDocument
store = SQLiteStore(Path(sys.argv[1]))
for i in range(100000):
    store.upsert([StoredDocument(f"doc{i}", "text " * 20, {"i": i})])
    print(i, flush=True)
"""


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    """Every upsert that returned before the writer was SIGKILLed is in the file afterwards."""
    path = tmp_path / "docs.sqlite"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    acknowledged = -1
    try:
        for line in writer.stdout:
            acknowledged = int(line)
            if acknowledged >= 30:
                break
    finally:
        writer.kill()
        writer.wait(timeout=30)
        writer.stdout.close()
    assert acknowledged >= 30
    reopened = SQLiteStore(path)
    assert reopened.count() >= acknowledged + 1
    assert reopened.existing_ids([f"doc{i}" for i in range(acknowledged + 1)]) == {
        f"doc{i}" for i in range(acknowledged + 1)
    }
    assert reopened.storage_errors() == []
    reopened.close()


def test_migrates_a_version_1_database(tmp_path: Path) -> None:
    """A file written by schema version 1 (no updated_at) opens, migrated, with its data."""
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path, isolation_level=None)
    assert migrate(old, target=1) == 1
    old.execute(
        "INSERT INTO documents (id, text, metadata, code, fingerprint, created_at) "
        "VALUES ('old', 'legacy', '{\"a\": 1}', x'0102', ?, 123.5)",
        [FP],
    )
    old.close()
    store = SQLiteStore(path)
    assert store.schema_version == SCHEMA_VERSION == 2
    migrated = store.get("old")
    assert migrated.metadata == {"a": 1} and migrated.code == b"\x01\x02"
    assert migrated.created_at == migrated.updated_at == 123.5
    store.close()


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    """A file from a future version is not touched."""
    path = tmp_path / "future.sqlite"
    future = sqlite3.connect(path)
    future.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    future.close()
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(path)


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
    assert store.count() == 1
    connection.execute("PRAGMA max_page_count = 1073741823")
    connection.execute("PRAGMA query_only = ON")
    with pytest.raises(StoreUnavailableError, match="read-only"):
        store.upsert([doc("b", 2)])
    connection.execute("PRAGMA query_only = OFF")
    store.upsert(big)
    assert store.count() == 21


def test_reload_equals_the_live_index(store: SQLiteStore) -> None:
    """An index rebuilt from the store has the same ids, codes, order and answers."""
    rng = np.random.default_rng(3)
    live = HashIndex(16)
    for step in range(5):
        ids = [f"d{i}" for i in rng.choice(60, size=15, replace=False)]
        codes = rng.integers(0, 4, size=(15, 2), dtype=np.uint8)
        store.upsert(
            [StoredDocument(i, "t", {}, c.tobytes(), FP) for i, c in zip(ids, codes, strict=True)]
        )
        live.upsert(ids, codes)
        gone = [f"d{step}", f"d{step + 30}"]
        store.delete(gone)
        live.remove(gone)
    store.upsert([doc("uncoded")])
    reloaded = store.load_index(FP, 16)
    live_ids, live_codes = live.to_arrays()
    reloaded_ids, reloaded_codes = reloaded.to_arrays()
    assert reloaded_ids == live_ids and np.array_equal(reloaded_codes, live_codes)
    for query in (b"\x00\x00", b"\x03\x01"):
        assert reloaded.nearest(query, 20) == live.nearest(query, 20)
    assert store.integrity_check(reloaded, FP).ok


def test_integrity_check_finds_each_disagreement(store: SQLiteStore) -> None:
    """Missing, extra and mismatched ids are each reported."""
    store.upsert([doc(f"d{i}", i) for i in range(10)])
    index = store.load_index(FP, 16)
    report = store.integrity_check(index, FP)
    assert report.ok and report.documents == report.indexed == 10
    index.remove(["d3"])
    index.upsert(["d5", "stray"], np.array([[0, 99], [0, 1]], dtype=np.uint8))
    report = store.integrity_check(index, FP)
    assert not report.ok
    assert (report.missing, report.extra, report.mismatched) == (["d3"], ["stray"], ["d5"])


def test_concurrent_writers_and_readers(store: SQLiteStore) -> None:
    """Threads writing and reading at once lose nothing and never see an error."""
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(20):
                store.upsert([doc(f"w{worker}-{i}", i), doc(f"w{worker}-{i}b", i)])
                assert store.get(f"w{worker}-{i}") is not None
                store.count()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert store.count() == 4 * 20 * 2
