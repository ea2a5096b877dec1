"""`SQLiteStore`: the embedded `DocumentStore`, one SQLite file in WAL mode.

Durability: WAL with `synchronous=FULL`, so a committed write survives SIGKILL and power loss.
Concurrency: one connection per thread (readers never block the writer in WAL); writes are
serialised by a lock and run as `BEGIN IMMEDIATE` transactions. Schema: `PRAGMA user_version`
counts the applied entries of `MIGRATIONS`, each applied in its own transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from docbits.index.store.base import (
    ACTIVE_MODEL_SETTING,
    DocumentStore,
    DuplicateIdError,
    StoredDocument,
    StoreError,
    StoreUnavailableError,
)

# Primary SQLite result codes that mean "cannot serve now" rather than "bad request or data".
UNAVAILABLE_CODES = {
    5: "database is busy",
    6: "database table is locked",
    8: "database is read-only",
    10: "disk I/O error",
    13: "disk is full",
    14: "cannot open database file",
}
IN_CLAUSE_CHUNK = 900
DOCUMENT_COLUMNS = "id, text, metadata, code, fingerprint, created_at, updated_at"


def _migrate_1_create_tables(connection: sqlite3.Connection) -> None:
    """Version 1: documents (insertion order in `seq`) and key/value settings."""
    connection.execute(
        """CREATE TABLE documents (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            text TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            code BLOB,
            fingerprint TEXT,
            created_at REAL NOT NULL
        )"""
    )
    connection.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


def _migrate_2_add_updated_at(connection: sqlite3.Connection) -> None:
    """Version 2: documents get `updated_at`, backfilled with their creation time."""
    connection.execute("ALTER TABLE documents ADD COLUMN updated_at REAL NOT NULL DEFAULT 0")
    connection.execute("UPDATE documents SET updated_at = created_at")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _migrate_1_create_tables,
    _migrate_2_add_updated_at,
)
SCHEMA_VERSION = len(MIGRATIONS)


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Re-raise sqlite3/OS errors as StoreUnavailableError or StoreError."""
    try:
        yield
    except sqlite3.Error as error:
        code = getattr(error, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in UNAVAILABLE_CODES:
            reason = UNAVAILABLE_CODES[code & 0xFF]
            raise StoreUnavailableError(
                f"document store unavailable: {reason} ({error})"
            ) from error
        raise StoreError(f"document store error: {error}") from error
    except UnicodeEncodeError as error:
        raise ValueError(f"text is not valid UTF-8 (lone surrogate?): {error}") from None
    except OSError as error:
        raise StoreUnavailableError(f"document store unavailable: {error}") from error


def migrate(connection: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply pending migrations up to `target`, each in its own transaction; returns the version."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {version} is newer than this docbits ({SCHEMA_VERSION})"
        )
    for number in range(version, target):
        connection.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[number](connection)
            connection.execute(f"PRAGMA user_version = {number + 1}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return max(version, target)


def open_connection(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection in autocommit mode (explicit transactions) with durable WAL settings."""
    connection = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
    )
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    return connection


class SQLiteStore(DocumentStore):
    """Documents, codes and settings in one SQLite file (created with its folders if missing)."""

    def __init__(self, path: Path, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        with _translated_errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.schema_version = migrate(self._connection())

    # ---- connections and transactions ----------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        if self._closed:
            raise StoreError("document store is closed")
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = open_connection(self.path, self._busy_timeout_s)
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A serialised write transaction, committed (durably) on success, else rolled back."""
        with self._write_lock, _translated_errors():
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    def _query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query on this thread's connection."""
        with _translated_errors():
            return self._connection().execute(sql, parameters).fetchall()

    def _in_chunks(self, sql: str, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        """Run `sql` (with one `{marks}` IN list) over `ids` in chunks, concatenating rows."""
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(ids), IN_CLAUSE_CHUNK):
            chunk = list(ids[start : start + IN_CLAUSE_CHUNK])
            rows.extend(self._query(sql.format(marks=",".join("?" * len(chunk))), chunk))
        return rows

    # ---- documents -----------------------------------------------------------------------
    def upsert(self, docs: Sequence[StoredDocument], insert_only: bool = False) -> None:
        """Write documents atomically; see `DocumentStore.upsert`."""
        now = time.time()
        rows = [_document_row(doc, now) for doc in docs]
        if not rows:
            return
        ids = [doc.id for doc in docs]
        with self._transaction() as connection:
            if insert_only:
                repeated = {doc_id for doc_id, seen in Counter(ids).items() if seen > 1}
                duplicates = repeated | self._existing(connection, ids)
                if duplicates:
                    raise DuplicateIdError(sorted(duplicates))
            connection.executemany(
                f"INSERT INTO documents ({DOCUMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET text = excluded.text, "
                "metadata = excluded.metadata, code = excluded.code, "
                "fingerprint = excluded.fingerprint, updated_at = excluded.updated_at",
                rows,
            )

    def get(self, doc_id: str) -> StoredDocument | None:
        """One document, or None."""
        rows = self._query(f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = ?", [doc_id])
        return _document(rows[0]) if rows else None

    def get_many(self, ids: Sequence[str]) -> dict[str, StoredDocument]:
        """The documents that exist among `ids`, keyed by id."""
        rows = self._in_chunks(
            f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id IN ({{marks}})", list(set(ids))
        )
        return {row[0]: _document(row) for row in rows}

    def get_metadata(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The metadata of the documents that exist among `ids`, keyed by id."""
        rows = self._in_chunks(
            "SELECT id, metadata FROM documents WHERE id IN ({marks})", list(set(ids))
        )
        return {doc_id: json.loads(metadata) for doc_id, metadata in rows}

    def delete(self, ids: Sequence[str]) -> list[str]:
        """Delete atomically; returns the ids that existed, in the order given."""
        unique = list(dict.fromkeys(ids))
        with self._transaction() as connection:
            existing = self._existing(connection, unique)
            for start in range(0, len(unique), IN_CLAUSE_CHUNK):
                chunk = unique[start : start + IN_CLAUSE_CHUNK]
                connection.execute(
                    f"DELETE FROM documents WHERE id IN ({','.join('?' * len(chunk))})", chunk
                )
        return [doc_id for doc_id in unique if doc_id in existing]

    def count(self) -> int:
        """Number of documents."""
        return int(self._query("SELECT COUNT(*) FROM documents")[0][0])

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """The subset of `ids` that exist."""
        rows = self._in_chunks("SELECT id FROM documents WHERE id IN ({marks})", list(set(ids)))
        return {row[0] for row in rows}

    def iter_documents(self, batch_size: int = 1000) -> Iterator[list[StoredDocument]]:
        """Every document in insertion order, paging by `seq` so no transaction stays open."""
        last_seq = -1
        while True:
            rows = self._query(
                f"SELECT seq, {DOCUMENT_COLUMNS} FROM documents WHERE seq > ? ORDER BY seq LIMIT ?",
                [last_seq, batch_size],
            )
            if not rows:
                return
            last_seq = rows[-1][0]
            yield [_document(row[1:]) for row in rows]

    # ---- codes and models ----------------------------------------------------------------
    def iter_codes(
        self, fingerprint: str, batch_size: int = 100_000
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """(ids, codes) of documents coded by `fingerprint`, in insertion order."""
        last_seq = -1
        while True:
            rows = self._query(
                "SELECT seq, id, code FROM documents WHERE seq > ? AND fingerprint = ? "
                "AND code IS NOT NULL ORDER BY seq LIMIT ?",
                [last_seq, fingerprint, batch_size],
            )
            if not rows:
                return
            last_seq = rows[-1][0]
            _, ids, codes = zip(*rows, strict=True)
            widths = {len(code) for code in codes}
            if len(widths) != 1:
                raise StoreError(f"codes of model {fingerprint[:12]} have mixed lengths {widths}")
            packed = np.frombuffer(b"".join(codes), dtype=np.uint8).reshape(len(codes), -1)
            yield list(ids), packed

    def ids_without_code(self, fingerprint: str) -> list[str]:
        """Ids whose code is missing or made by another model, in insertion order."""
        rows = self._query(
            "SELECT id FROM documents WHERE code IS NULL OR fingerprint IS NOT ? ORDER BY seq",
            [fingerprint],
        )
        return [row[0] for row in rows]

    def set_codes(self, ids: Sequence[str], codes: np.ndarray, fingerprint: str) -> None:
        """Store codes for existing documents atomically; unknown ids raise StoreError."""
        updates = _code_updates(ids, codes, fingerprint)
        with self._transaction() as connection:
            self._write_codes(connection, updates)

    def switch_model(self, fingerprint: str, ids: Sequence[str], codes: np.ndarray) -> None:
        """In one transaction, store these codes and set the active model."""
        updates = _code_updates(ids, codes, fingerprint)
        with self._transaction() as connection:
            self._write_codes(connection, updates)
            _write_setting(connection, ACTIVE_MODEL_SETTING, fingerprint)

    # ---- settings and health -------------------------------------------------------------
    def get_setting(self, key: str) -> str | None:
        """A stored setting, or None."""
        rows = self._query("SELECT value FROM settings WHERE key = ?", [key])
        return rows[0][0] if rows else None

    def set_setting(self, key: str, value: str) -> None:
        """Store a setting durably."""
        with self._transaction() as connection:
            _write_setting(connection, key, value)

    def storage_errors(self) -> list[str]:
        """What SQLite's `PRAGMA quick_check` reports, or [] when the file is healthy."""
        problems = [row[0] for row in self._query("PRAGMA quick_check")]
        return [] if problems == ["ok"] else problems

    def close(self) -> None:
        """Close every thread's connection."""
        with self._connections_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
            self._closed = True

    # ---- helpers -------------------------------------------------------------------------
    @staticmethod
    def _existing(connection: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
        """Ids among `ids` present, read inside the caller's transaction."""
        found: set[str] = set()
        for start in range(0, len(ids), IN_CLAUSE_CHUNK):
            chunk = list(ids[start : start + IN_CLAUSE_CHUNK])
            sql = f"SELECT id FROM documents WHERE id IN ({','.join('?' * len(chunk))})"
            found.update(row[0] for row in connection.execute(sql, chunk))
        return found

    @staticmethod
    def _write_codes(connection: sqlite3.Connection, updates: list[tuple[bytes, str, str]]) -> None:
        """Apply (code, fingerprint, id) updates; StoreError (rolling back) on unknown ids."""
        cursor = connection.executemany(
            "UPDATE documents SET code = ?, fingerprint = ? WHERE id = ?", updates
        )
        if cursor.rowcount != len(updates):
            known = SQLiteStore._existing(connection, [update[2] for update in updates])
            unknown = sorted({update[2] for update in updates} - known)
            raise StoreError(f"cannot set codes of unknown document(s): {unknown[:10]}")


def _write_setting(connection: sqlite3.Connection, key: str, value: str) -> None:
    """Insert or replace one setting inside the caller's transaction."""
    if not isinstance(key, str) or not isinstance(value, str):
        raise ValueError("settings keys and values must be strings")
    connection.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )


def _document_row(doc: StoredDocument, now: float) -> tuple[Any, ...]:
    """Validate a document and turn it into the parameters of one INSERT."""
    if not isinstance(doc.id, str) or not doc.id:
        raise ValueError(f"document ids must be non-empty strings, got {doc.id!r}")
    if not isinstance(doc.text, str):
        raise ValueError(f"document {doc.id!r}: text must be a string")
    try:
        doc.id.encode()
        doc.text.encode()
    except UnicodeEncodeError:
        raise ValueError(f"document {doc.id!r}: id and text must be valid UTF-8") from None
    if not isinstance(doc.metadata, dict):
        raise ValueError(f"document {doc.id!r}: metadata must be a JSON object")
    if (doc.code is None) != (doc.fingerprint is None):
        raise ValueError(f"document {doc.id!r}: code and fingerprint must be given together")
    try:
        metadata = json.dumps(doc.metadata, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"document {doc.id!r}: metadata is not valid JSON: {error}") from None
    code = None if doc.code is None else bytes(doc.code)
    return (doc.id, doc.text, metadata, code, doc.fingerprint, now, now)


def _document(row: Sequence[Any]) -> StoredDocument:
    """A StoredDocument from a row of DOCUMENT_COLUMNS."""
    doc_id, text, metadata, code, fingerprint, created_at, updated_at = row
    return StoredDocument(
        id=doc_id,
        text=text,
        metadata=json.loads(metadata),
        code=None if code is None else bytes(code),
        fingerprint=fingerprint,
        created_at=created_at,
        updated_at=updated_at,
    )


def _code_updates(
    ids: Sequence[str], codes: np.ndarray, fingerprint: str
) -> list[tuple[bytes, str, str]]:
    """Validate a code batch and turn it into UPDATE parameters."""
    array = np.asarray(codes)
    if array.dtype != np.uint8 or array.ndim != 2 or len(array) != len(ids):
        raise ValueError(
            f"codes must be a uint8 array of shape ({len(ids)}, b/8), got {array.dtype} "
            f"{array.shape}"
        )
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique within one code batch")
    return [(row.tobytes(), fingerprint, doc_id) for doc_id, row in zip(ids, array, strict=True)]
