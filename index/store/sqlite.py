"""`SQLiteStore`: the embedded `DocumentStore`, one SQLite file in WAL mode.

Durability: WAL with `synchronous=FULL`, so a committed write survives SIGKILL and power loss.
Concurrency: one connection per thread (readers never block the writer in WAL); writes are
serialised by a lock and run as `BEGIN IMMEDIATE` transactions, which also serialises writers in
other processes on the same file. The feed's numbers are taken inside that transaction, so their
order is commit order. Schema: `PRAGMA user_version` counts the applied entries of `MIGRATIONS`,
each applied in its own transaction.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from docbits.index.store.base import (
    ACTIVE_MODEL_SETTING,
    CHANGE_COLUMNS,
    DELETE,
    EXPIRED_LEASE_ERROR_SQL,
    FAILED,
    MODEL,
    RUNNING,
    UPSERT,
    Change,
    Deleted,
    DocumentStore,
    DuplicateIdError,
    FeedMovedError,
    JobRunningError,
    ModelArtifact,
    ModelChangedError,
    StoredDocument,
    StoreError,
    StoreFullError,
    StoreUnavailableError,
    TrainingJob,
    check_feed_position,
    check_models,
    check_setting,
    checked_artifact,
    code_rows,
    document_rows,
    feed_problems,
    job_config_json,
    packed_codes,
    select_jobs,
    stored_document,
    stored_forms,
    validate_job_finish,
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
SQLITE_BUSY = 5
SQLITE_FULL = 13
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


def _migrate_3_feed_models_jobs(connection: sqlite3.Connection) -> None:
    """Version 3: the change feed (`changes` + its bounds in `feed`), model artifacts, and
    training jobs (a partial unique index allows one running job)."""
    connection.execute(
        """CREATE TABLE changes (
            seq INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('upsert', 'delete', 'model')),
            id TEXT,
            code BLOB,
            fingerprint TEXT,
            written_at REAL NOT NULL
        )"""
    )
    connection.execute(
        """CREATE TABLE feed (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            last_seq INTEGER NOT NULL,
            first_seq INTEGER NOT NULL
        )"""
    )
    connection.execute("INSERT INTO feed VALUES (1, 0, 1)")
    connection.execute(
        """CREATE TABLE models (
            fingerprint TEXT PRIMARY KEY,
            config TEXT NOT NULL,
            vocab TEXT NOT NULL,
            weights BLOB NOT NULL,
            created_at REAL NOT NULL
        )"""
    )
    connection.execute(
        """CREATE TABLE training_jobs (
            id TEXT PRIMARY KEY,
            config TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
            progress TEXT NOT NULL DEFAULT '{}',
            documents INTEGER,
            fingerprint TEXT,
            error TEXT,
            owner TEXT NOT NULL,
            lease_expires_at REAL NOT NULL,
            created_at REAL NOT NULL,
            finished_at REAL
        )"""
    )
    connection.execute(
        "CREATE UNIQUE INDEX training_jobs_one_running ON training_jobs (status) "
        "WHERE status = 'running'"
    )


def _migrate_4_add_forms(connection: sqlite3.Connection) -> None:
    """Version 4: documents get `form`, the int8 rescoring form written with the code."""
    connection.execute("ALTER TABLE documents ADD COLUMN form BLOB")


def _migrate_5_add_change_forms(connection: sqlite3.Connection) -> None:
    """Version 5: an `upsert` change carries the document's rescoring form with its code."""
    connection.execute("ALTER TABLE changes ADD COLUMN form BLOB")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _migrate_1_create_tables,
    _migrate_2_add_updated_at,
    _migrate_3_feed_models_jobs,
    _migrate_4_add_forms,
    _migrate_5_add_change_forms,
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
            kind = StoreFullError if code & 0xFF == SQLITE_FULL else StoreUnavailableError
            raise kind(f"document store unavailable: {reason} ({error})") from error
        raise StoreError(f"document store error: {error}") from error
    except UnicodeEncodeError as error:
        raise ValueError(f"text is not valid UTF-8 (lone surrogate?): {error}") from None
    except OSError as error:
        kind = StoreFullError if error.errno == errno.ENOSPC else StoreUnavailableError
        raise kind(f"document store unavailable: {error}") from error


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
            # Another process may have migrated between our read and our lock.
            if connection.execute("PRAGMA user_version").fetchone()[0] > number:
                connection.execute("ROLLBACK")
                continue
            MIGRATIONS[number](connection)
            connection.execute(f"PRAGMA user_version = {number + 1}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return max(version, target)


def _enable_wal(connection: sqlite3.Connection, busy_timeout_s: float) -> None:
    """Switch to WAL, retrying while busy: when processes open a new file together, SQLite
    answers the switch with SQLITE_BUSY at once instead of calling the busy handler."""
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            busy = getattr(error, "sqlite_errorcode", 0) & 0xFF == SQLITE_BUSY
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def open_connection(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection in autocommit mode (explicit transactions) with durable WAL settings."""
    connection = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
    )
    _enable_wal(connection, busy_timeout_s)
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

    def _in_chunks(
        self, sql: str, ids: Sequence[str], after: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Run `sql` (with one `{marks}` IN list, then the parameters `after`) over `ids` in
        chunks, concatenating rows."""
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(ids), IN_CLAUSE_CHUNK):
            chunk = list(ids[start : start + IN_CLAUSE_CHUNK])
            sql_chunk = sql.format(marks=",".join("?" * len(chunk)))
            rows.extend(self._query(sql_chunk, [*chunk, *after]))
        return rows

    # ---- documents -----------------------------------------------------------------------
    def upsert(
        self,
        docs: Sequence[StoredDocument],
        insert_only: bool = False,
        *,
        check_model: bool = False,
    ) -> int:
        """Write documents atomically; see `DocumentStore.upsert`."""
        rows = document_rows(docs, insert_only)
        now = time.time()
        with self._transaction() as connection:
            if not rows:
                return _last_seq(connection)
            if check_model:
                check_models(rows, _setting(connection, ACTIVE_MODEL_SETTING))
            if insert_only:
                duplicates = self._existing(connection, [row.id for row in rows])
                if duplicates:
                    raise DuplicateIdError(sorted(duplicates))
            connection.executemany(
                "INSERT INTO documents (id, text, metadata, code, fingerprint, form, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET text = excluded.text, "
                "metadata = excluded.metadata, code = excluded.code, form = excluded.form, "
                "fingerprint = excluded.fingerprint, updated_at = excluded.updated_at",
                [(*row, now, now) for row in rows],
            )
            return _append_changes(
                connection,
                [(UPSERT, row.id, row.code, row.fingerprint, row.form) for row in rows],
                now,
            )

    def get(self, doc_id: str) -> StoredDocument | None:
        """One document, or None."""
        rows = self._query(f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = ?", [doc_id])
        return stored_document(*rows[0]) if rows else None

    def get_many(self, ids: Sequence[str]) -> dict[str, StoredDocument]:
        """The documents that exist among `ids`, keyed by id."""
        rows = self._in_chunks(
            f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id IN ({{marks}})", list(set(ids))
        )
        return {row[0]: stored_document(*row) for row in rows}

    def get_metadata(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The metadata of the documents that exist among `ids`, keyed by id."""
        rows = self._in_chunks(
            "SELECT id, metadata FROM documents WHERE id IN ({marks})", list(set(ids))
        )
        return {doc_id: json.loads(metadata) for doc_id, metadata in rows}

    def delete(self, ids: Sequence[str]) -> Deleted:
        """Delete atomically; returns the ids that existed, in the order given."""
        unique = list(dict.fromkeys(ids))
        with self._transaction() as connection:
            existing = self._existing(connection, unique)
            for start in range(0, len(unique), IN_CLAUSE_CHUNK):
                chunk = unique[start : start + IN_CLAUSE_CHUNK]
                connection.execute(
                    f"DELETE FROM documents WHERE id IN ({','.join('?' * len(chunk))})", chunk
                )
            deleted = [doc_id for doc_id in unique if doc_id in existing]
            seq = _append_changes(
                connection, [(DELETE, doc_id, None, None, None) for doc_id in deleted], time.time()
            )
        return Deleted(deleted, seq)

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
            yield [stored_document(*row[1:]) for row in rows]

    # ---- codes and models ----------------------------------------------------------------
    def iter_codes(
        self, fingerprint: str, batch_size: int = 100_000
    ) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        """(ids, codes, forms) of documents coded by `fingerprint`, in insertion order."""
        last_seq = -1
        while True:
            rows = self._query(
                "SELECT seq, id, code, form FROM documents WHERE seq > ? AND fingerprint = ? "
                "AND code IS NOT NULL ORDER BY seq LIMIT ?",
                [last_seq, fingerprint, batch_size],
            )
            if not rows:
                return
            last_seq = rows[-1][0]
            _, ids, codes, forms = zip(*rows, strict=True)
            codes = packed_codes(fingerprint, codes)
            yield list(ids), codes, stored_forms(fingerprint, forms, 8 * codes.shape[1])

    def ids_without_code(self, fingerprint: str, *, form: bool = False) -> list[str]:
        """Ids whose code (or, with `form`, rescoring form) is missing or made by another
        model, in insertion order."""
        missing = "code IS NULL OR form IS NULL" if form else "code IS NULL"
        rows = self._query(
            f"SELECT id FROM documents WHERE {missing} OR fingerprint IS NOT ? ORDER BY seq",
            [fingerprint],
        )
        return [row[0] for row in rows]

    def set_codes(
        self,
        ids: Sequence[str],
        codes: np.ndarray,
        fingerprint: str,
        *,
        check_model: bool = False,
        forms: np.ndarray | None = None,
    ) -> int:
        """Store codes (and forms) for existing documents atomically; unknown ids raise
        StoreError."""
        updates = code_rows(ids, codes, forms)
        now = time.time()
        with self._transaction() as connection:
            if check_model:
                active = _setting(connection, ACTIVE_MODEL_SETTING)
                if active != fingerprint:
                    raise ModelChangedError(fingerprint, active)
            self._write_codes(connection, updates, fingerprint)
            return _append_changes(
                connection,
                [(UPSERT, doc_id, code, fingerprint, form) for doc_id, code, form in updates],
                now,
            )

    def switch_model(
        self,
        fingerprint: str,
        ids: Sequence[str],
        codes: np.ndarray,
        forms: np.ndarray | None = None,
        *,
        expect_seq: int | None = None,
    ) -> int:
        """In one transaction, store these codes (and forms) and set the active model (one
        `model` change), if the feed is still at `expect_seq` (when given)."""
        updates = code_rows(ids, codes, forms)
        with self._transaction() as connection:
            last = _last_seq(connection)
            if expect_seq is not None and last != expect_seq:
                raise FeedMovedError(expect_seq, last)
            self._write_codes(connection, updates, fingerprint)
            _write_setting(connection, ACTIVE_MODEL_SETTING, fingerprint)
            return _append_changes(
                connection, [(MODEL, None, None, fingerprint, None)], time.time()
            )

    # ---- change feed ---------------------------------------------------------------------
    def last_seq(self) -> int:
        """The sequence number of the newest committed change (0: none yet)."""
        return int(self._query("SELECT last_seq FROM feed")[0][0])

    def changes_since(self, seq: int, limit: int = 10_000) -> list[Change]:
        """Up to `limit` changes after `seq`, contiguous, read in one statement (one snapshot)."""
        rows = self._query(
            f"SELECT f.first_seq, f.last_seq, {CHANGE_COLUMNS} FROM feed f LEFT JOIN "
            f"(SELECT {CHANGE_COLUMNS} FROM changes WHERE seq > ? ORDER BY seq LIMIT ?) "
            "ON 1 ORDER BY seq",
            [seq, limit],
        )
        first_seq, last_seq = rows[0][0], rows[0][1]
        changes = [_change(row[2:]) for row in rows if row[2] is not None]
        check_feed_position(seq, first_seq, last_seq, changes)
        return changes

    def compact_feed(self, before_seq: int) -> int:
        """Drop changes below `before_seq` (capped at the newest + 1); returns how many."""
        with self._transaction() as connection:
            last_seq, first_seq = connection.execute(
                "SELECT last_seq, first_seq FROM feed"
            ).fetchone()
            new_first = min(max(before_seq, first_seq), last_seq + 1)
            removed = connection.execute("DELETE FROM changes WHERE seq < ?", [new_first]).rowcount
            connection.execute("UPDATE feed SET first_seq = ?", [new_first])
        return removed

    # ---- settings ------------------------------------------------------------------------
    def get_setting(self, key: str) -> str | None:
        """A stored setting, or None."""
        rows = self._query("SELECT value FROM settings WHERE key = ?", [key])
        return rows[0][0] if rows else None

    def set_setting(self, key: str, value: str) -> None:
        """Store a setting durably (not the active model: see `check_setting`)."""
        check_setting(key, value)
        with self._transaction() as connection:
            _write_setting(connection, key, value)

    # ---- model artifacts -----------------------------------------------------------------
    def put_model(self, artifact: ModelArtifact) -> None:
        """Store a model's files under its fingerprint (a no-op if already stored)."""
        artifact.check()
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO models (fingerprint, config, vocab, weights, created_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(fingerprint) DO NOTHING",
                [
                    artifact.fingerprint,
                    artifact.config,
                    artifact.vocab,
                    artifact.weights,
                    time.time(),
                ],
            )

    def get_model(self, fingerprint: str) -> ModelArtifact | None:
        """The stored model with this fingerprint, or None; StoreError if it is damaged."""
        rows = self._query(
            "SELECT fingerprint, config, vocab, weights FROM models WHERE fingerprint = ?",
            [fingerprint],
        )
        return checked_artifact(rows[0]) if rows else None

    def has_model(self, fingerprint: str) -> bool:
        """Whether a model with this fingerprint is stored."""
        return bool(self._query("SELECT 1 FROM models WHERE fingerprint = ?", [fingerprint]))

    # ---- training jobs -------------------------------------------------------------------
    def claim_training_job(
        self, job_id: str, config: dict[str, Any], owner: str, lease_s: float
    ) -> TrainingJob:
        """Create a running job leased to `owner`, unless another job holds a live lease."""
        config_json = job_config_json(config)
        now = time.time()
        with self._transaction() as connection:
            _expire_jobs(connection, now)
            running = select_jobs(connection, "status = ?", [RUNNING])
            if running:
                raise JobRunningError(running[0])
            if select_jobs(connection, "id = ?", [job_id]):
                raise StoreError(f"training job {job_id!r} already exists")
            connection.execute(
                "INSERT INTO training_jobs (id, config, status, owner, lease_expires_at, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [job_id, config_json, RUNNING, owner, now + lease_s, now],
            )
            return select_jobs(connection, "id = ?", [job_id])[0]

    def renew_training_job(
        self,
        job_id: str,
        owner: str,
        lease_s: float,
        progress: dict[str, Any] | None = None,
        documents: int | None = None,
    ) -> bool:
        """Extend an unexpired lease held by `owner`; False if the lease is lost."""
        progress_json = None if progress is None else json.dumps(progress, allow_nan=False)
        now = time.time()
        with self._transaction() as connection:
            renewed = connection.execute(
                "UPDATE training_jobs SET lease_expires_at = ?, "
                "progress = COALESCE(?, progress), documents = COALESCE(?, documents) "
                "WHERE id = ? AND owner = ? AND status = ? AND lease_expires_at >= ?",
                [now + lease_s, progress_json, documents, job_id, owner, RUNNING, now],
            ).rowcount
        return renewed == 1

    def finish_training_job(
        self,
        job_id: str,
        owner: str,
        status: str,
        *,
        fingerprint: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Mark `owner`'s running job succeeded or failed; False if it is no longer running."""
        validate_job_finish(status)
        with self._transaction() as connection:
            finished = connection.execute(
                "UPDATE training_jobs SET status = ?, fingerprint = ?, error = ?, finished_at = ? "
                "WHERE id = ? AND owner = ? AND status = ?",
                [status, fingerprint, error, time.time(), job_id, owner, RUNNING],
            ).rowcount
        return finished == 1

    def expire_training_jobs(self) -> list[str]:
        """Mark running jobs whose lease expired as failed; returns their ids."""
        with self._transaction() as connection:
            return _expire_jobs(connection, time.time())

    def get_training_job(self, job_id: str) -> TrainingJob | None:
        """One job as stored, or None."""
        with _translated_errors():
            jobs = select_jobs(self._connection(), "id = ?", [job_id])
        return jobs[0] if jobs else None

    def running_training_job(self) -> TrainingJob | None:
        """The job marked running, or None."""
        with _translated_errors():
            jobs = select_jobs(self._connection(), "status = ?", [RUNNING])
        return jobs[0] if jobs else None

    # ---- health --------------------------------------------------------------------------
    def storage_errors(self) -> list[str]:
        """SQLite's `PRAGMA quick_check` findings plus the feed's own consistency, or []."""
        problems = [row[0] for row in self._query("PRAGMA quick_check")]
        problems = [] if problems == ["ok"] else problems
        (first_seq, last_seq, low, high, n) = self._query(
            "SELECT first_seq, last_seq, (SELECT MIN(seq) FROM changes), "
            "(SELECT MAX(seq) FROM changes), (SELECT COUNT(*) FROM changes) FROM feed"
        )[0]
        return problems + feed_problems(first_seq, last_seq, low, high, n)

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
    def _write_codes(
        connection: sqlite3.Connection,
        updates: list[tuple[str, bytes, bytes | None]],
        fingerprint: str,
    ) -> None:
        """Apply (id, code, form) updates; StoreError (rolling back) on unknown ids."""
        cursor = connection.executemany(
            "UPDATE documents SET code = ?, form = ?, fingerprint = ? WHERE id = ?",
            [(code, form, fingerprint, doc_id) for doc_id, code, form in updates],
        )
        if cursor.rowcount != len(updates):
            known = SQLiteStore._existing(connection, [doc_id for doc_id, _, _ in updates])
            unknown = sorted({doc_id for doc_id, _, _ in updates} - known)
            raise StoreError(f"cannot set codes of unknown document(s): {unknown[:10]}")


def _last_seq(connection: sqlite3.Connection) -> int:
    return int(connection.execute("SELECT last_seq FROM feed").fetchone()[0])


def _append_changes(
    connection: sqlite3.Connection,
    changes: list[tuple[str, str | None, bytes | None, str | None, bytes | None]],
    now: float,
) -> int:
    """Number (kind, id, code, fingerprint, form) changes after the feed's newest, inside the
    caller's write transaction (the file's one writer), and return the new newest."""
    first = _last_seq(connection) + 1
    connection.executemany(
        f"INSERT INTO changes ({CHANGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (first + offset, kind, doc_id, code, fingerprint, now, form)
            for offset, (kind, doc_id, code, fingerprint, form) in enumerate(changes)
        ],
    )
    last = first + len(changes) - 1
    connection.execute("UPDATE feed SET last_seq = ?", [last])
    return last


def _change(row: Sequence[Any]) -> Change:
    seq, kind, doc_id, code, fingerprint, written_at, form = row
    return Change(
        seq,
        kind,
        doc_id,
        None if code is None else bytes(code),
        fingerprint,
        written_at,
        None if form is None else bytes(form),
    )


def _setting(connection: sqlite3.Connection, key: str) -> str | None:
    row = connection.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    return None if row is None else row[0]


def _write_setting(connection: sqlite3.Connection, key: str, value: str) -> None:
    """Insert or replace one setting inside the caller's transaction."""
    connection.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )


def _expire_jobs(connection: sqlite3.Connection, now: float) -> list[str]:
    rows = connection.execute(
        f"UPDATE training_jobs SET status = ?, error = {EXPIRED_LEASE_ERROR_SQL}, finished_at = ? "
        "WHERE status = ? AND lease_expires_at < ? RETURNING id",
        [FAILED, now, RUNNING, now],
    ).fetchall()
    return [row[0] for row in rows]
