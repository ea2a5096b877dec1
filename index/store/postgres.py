"""`PostgresStore`: the shared `DocumentStore` over PostgreSQL (psycopg 3, a connection pool).

Any number of docbits processes, on any machines, share one database. Every write is one
transaction whose first statement row-locks the one row of `feed` (`SELECT ... FOR UPDATE`) and
holds it to the end: writers take turns, exactly like SQLite's single writer. The change feed's
numbers continue `feed.last_seq` inside that turn, so they are dense and handed out in commit
order, and PostgreSQL releases the lock only once the commit is visible: a reader that sees
change N sees every change below N. A new document's `position` (insertion order) is the number
of the change that inserted it, so a reloaded index orders rows as a follower that applied the
feed did. Each write also NOTIFYs `FEED_CHANNEL` with its newest number (delivered at commit) so
followers can wake up without polling.

Schema migrations are numbered (`schema_migrations`) and applied at start-up under a
session-level advisory lock, so processes starting together on an empty database apply each
migration once. Times (document timestamps, leases) come from the database's clock, the one clock
every process shares.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from docbits.index.store.base import (
    ACTIVE_MODEL_SETTING,
    CHANGE_COLUMNS,
    DELETE,
    EXPIRED_LEASE_ERROR_SQL,
    FAILED,
    JOB_COLUMNS,
    MODEL,
    RUNNING,
    UPSERT,
    Change,
    ChangeListener,
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
    mask_url,
    packed_codes,
    select_jobs,
    stored_document,
    stored_forms,
    training_job,
    validate_job_finish,
)

T = TypeVar("T")

FEED_CHANNEL = "docbits_changes"  # NOTIFY channel; the payload is the write's newest seq
MIGRATION_LOCK = 0x646F6362697473  # advisory lock key serialising migrations ("docbits" in ASCII)
# SQLSTATE classes meaning "cannot serve now": connection exception, insufficient resources
# (disk full, too many connections), operator intervention (shutdown, cancel), system error.
UNAVAILABLE_CLASSES = ("08", "53", "57", "58")
READ_ONLY_TRANSACTION = "25006"  # a standby, or a database set read-only
DISK_FULL = "53100"
WRITE_ATTEMPTS = 5  # a write rolled back by a deadlock or serialisation failure is retried
NOW = "extract(epoch FROM clock_timestamp())"
DOCUMENT_COLUMNS = "id, text, metadata, code, fingerprint, created_at, updated_at"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: documents (insertion order in `position`), settings, the feed, models, jobs
        """CREATE TABLE documents (
            position BIGINT NOT NULL UNIQUE,
            id TEXT PRIMARY KEY,
            text TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            code BYTEA,
            fingerprint TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX documents_by_model ON documents (fingerprint, position)",
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE changes (
            seq BIGINT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('upsert', 'delete', 'model')),
            id TEXT,
            code BYTEA,
            fingerprint TEXT,
            written_at DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE feed (
            singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
            last_seq BIGINT NOT NULL,
            first_seq BIGINT NOT NULL
        )""",
        "INSERT INTO feed VALUES (TRUE, 0, 1)",
        """CREATE TABLE models (
            fingerprint TEXT PRIMARY KEY,
            config TEXT NOT NULL,
            vocab TEXT NOT NULL,
            weights BYTEA NOT NULL,
            created_at DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE training_jobs (
            id TEXT PRIMARY KEY,
            config TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
            progress TEXT NOT NULL DEFAULT '{}',
            documents BIGINT,
            fingerprint TEXT,
            error TEXT,
            owner TEXT NOT NULL,
            lease_expires_at DOUBLE PRECISION NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            finished_at DOUBLE PRECISION
        )""",
        "CREATE UNIQUE INDEX training_jobs_one_running ON training_jobs (status) "
        "WHERE status = 'running'",
    ),
    (  # 2: documents get `form`, the int8 rescoring form written with the code
        "ALTER TABLE documents ADD COLUMN form BYTEA",
    ),
    (  # 3: an `upsert` change carries the document's rescoring form with its code
        "ALTER TABLE changes ADD COLUMN form BYTEA",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(connection: psycopg.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply pending migrations up to `target` under the advisory lock, each in its own
    transaction with its row in `schema_migrations`; returns the version. `connection` is in
    autocommit mode."""
    connection.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
    try:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        row = connection.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        version = row.fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {version} is newer than this docbits ({SCHEMA_VERSION})"
            )
        for number in range(version, target):
            with connection.transaction():
                for statement in MIGRATIONS[number]:
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO schema_migrations (version) VALUES (%s)", [number + 1]
                )
        return max(version, target)
    finally:
        if not connection.closed:
            connection.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])


class PostgresStore(DocumentStore):
    """Documents, codes, the feed, models and jobs in one PostgreSQL database."""

    def __init__(
        self,
        url: str,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout_s: float = 5.0,
        pool_timeout_s: float = 5.0,
    ) -> None:
        """Connect, migrate and open the pool; StoreError for a malformed URL, and
        StoreUnavailableError naming the URL (password masked) when the server cannot be reached.
        `pool_timeout_s` bounds how long a call waits for a connection while the server is away."""
        self.url = url
        self.masked_url = mask_url(url)
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as error:
            raise StoreError(f"malformed PostgreSQL URL {self.masked_url}: {error}") from None
        self._password = params.get("password")
        self._pool_timeout_s = pool_timeout_s
        self._connect_kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in params:
            self._connect_kwargs["connect_timeout"] = max(2, round(connect_timeout_s))
        try:
            with psycopg.connect(url, **self._connect_kwargs) as connection:
                self.schema_version = migrate(connection)
        except psycopg.Error as error:
            raise self._translate(error, "cannot connect to PostgreSQL at {url}") from None
        self._pool = ConnectionPool(
            url,
            kwargs=self._connect_kwargs,
            min_size=min_connections,
            max_size=max_connections,
            open=False,
            check=ConnectionPool.check_connection,
            timeout=pool_timeout_s,
            name="docbits-store",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout as error:
            self._pool.close()
            raise self._translate(error, "cannot connect to PostgreSQL at {url}") from None

    # ---- connections, transactions and errors --------------------------------------------
    def _translate(self, error: Exception, what: str | None = None) -> StoreError:
        """The StoreError (StoreUnavailableError when it may pass) for a driver or pool error.
        `what` (with `{url}`, shown password masked) says what failed; by default an
        unavailable server is named and any other error is a plain store error."""
        plain = what is None
        what = (what or "PostgreSQL at {url} is unavailable").format(url=self.masked_url)
        if isinstance(error, PoolClosed):
            return StoreError("document store is closed")
        if isinstance(error, PoolTimeout):
            return StoreUnavailableError(f"{what}: no connection within {self._pool_timeout_s:g} s")
        message = " ".join(str(error).split())
        if self._password:
            message = message.replace(self._password, "***")
        state = getattr(error, "sqlstate", None)
        unavailable = (
            (state is None and isinstance(error, psycopg.OperationalError))
            or (state or "")[:2] in UNAVAILABLE_CLASSES
            or state == READ_ONLY_TRANSACTION
            or isinstance(error, psycopg.errors.TransactionRollback)
        )
        if unavailable:
            kind = StoreFullError if state == DISK_FULL else StoreUnavailableError
            return kind(f"{what}: {message}")
        return StoreError(f"document store error: {message}" if plain else f"{what}: {message}")

    def _write(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run `work` in one transaction, retried when PostgreSQL rolled it back to break a
        deadlock."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with self._pool.connection() as connection, connection.transaction():
                    return work(connection)
            except psycopg.errors.TransactionRollback as error:
                if attempt == WRITE_ATTEMPTS:
                    raise self._translate(error) from error
                time.sleep(random.uniform(0, 0.005 * attempt))
            except (psycopg.Error, PoolTimeout, PoolClosed) as error:
                raise self._translate(error) from error
        raise AssertionError("unreachable")

    def _write_in_turn(self, work: Callable[[psycopg.Connection, int], T]) -> T:
        """A write that changes documents or the model: `work(connection, last_seq)` runs once
        this transaction holds the feed's row, which it keeps until commit."""

        def in_turn(connection: psycopg.Connection) -> T:
            row = connection.execute("SELECT last_seq FROM feed FOR UPDATE").fetchone()
            return work(connection, int(row[0]))

        return self._write(in_turn)

    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One read statement on a pooled connection (autocommit: no transaction is left open)."""
        try:
            with self._pool.connection() as connection:
                return connection.execute(sql, parameters).fetchall()
        except (psycopg.Error, PoolTimeout, PoolClosed) as error:
            raise self._translate(error) from error

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
        if not rows:
            return self.last_seq()
        ids = [row.id for row in rows]
        codes = [row.code for row in rows]
        fingerprints = [row.fingerprint for row in rows]
        columns = [ids, [row.text for row in rows], [row.metadata for row in rows], codes]
        forms = [row.form for row in rows]
        # New documents take the number of their own change as their position.
        insert = (
            f"INSERT INTO documents (position, {DOCUMENT_COLUMNS}, form) "
            "SELECT %s + d.ord, d.id, d.text, d.metadata, d.code, d.fingerprint, t.now, t.now, "
            "d.form FROM (SELECT extract(epoch FROM now()) AS now) t, "
            "unnest(%s::text[], %s::text[], %s::text[], %s::bytea[], %s::text[], %s::bytea[]) "
            "WITH ORDINALITY AS d(id, text, metadata, code, fingerprint, form, ord) ORDER BY d.ord"
        )
        update = (
            " ON CONFLICT (id) DO UPDATE SET text = excluded.text, metadata = excluded.metadata, "
            "code = excluded.code, fingerprint = excluded.fingerprint, form = excluded.form, "
            "updated_at = excluded.updated_at"
        )

        def work(connection: psycopg.Connection, last: int) -> int:
            if check_model:
                check_models(rows, _setting(connection, ACTIVE_MODEL_SETTING))
            if insert_only:
                duplicates = _existing(connection, ids)
                if duplicates:
                    raise DuplicateIdError(sorted(duplicates))
            connection.execute(
                insert + ("" if insert_only else update), [last, *columns, fingerprints, forms]
            )
            return _append_changes(connection, last, UPSERT, ids, codes, fingerprints, forms)

        return self._write_in_turn(work)

    def get(self, doc_id: str) -> StoredDocument | None:
        """One document, or None."""
        rows = self._read(f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = %s", [doc_id])
        return stored_document(*rows[0]) if rows else None

    def get_many(self, ids: Sequence[str]) -> dict[str, StoredDocument]:
        """The documents that exist among `ids`, keyed by id."""
        rows = self._read(
            f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = ANY(%s::text[])", [list(ids)]
        )
        return {row[0]: stored_document(*row) for row in rows}

    def get_metadata(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The metadata of the documents that exist among `ids`, keyed by id."""
        rows = self._read(
            "SELECT id, metadata FROM documents WHERE id = ANY(%s::text[])", [list(ids)]
        )
        return {doc_id: json.loads(metadata) for doc_id, metadata in rows}

    def delete(self, ids: Sequence[str]) -> Deleted:
        """Delete atomically; returns the ids that existed, in the order given."""
        unique = list(dict.fromkeys(ids))
        if not unique:
            return Deleted([], self.last_seq())

        def work(connection: psycopg.Connection, last: int) -> Deleted:
            rows = connection.execute(
                "DELETE FROM documents WHERE id = ANY(%s::text[]) RETURNING id", [unique]
            ).fetchall()
            existed = {row[0] for row in rows}
            deleted = [doc_id for doc_id in unique if doc_id in existed]
            nothing = [None] * len(deleted)
            return Deleted(
                deleted,
                _append_changes(connection, last, DELETE, deleted, nothing, nothing, nothing),
            )

        return self._write_in_turn(work)

    def count(self) -> int:
        """Number of documents."""
        return int(self._read("SELECT COUNT(*) FROM documents")[0][0])

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """The subset of `ids` that exist."""
        rows = self._read("SELECT id FROM documents WHERE id = ANY(%s::text[])", [list(ids)])
        return {row[0] for row in rows}

    def iter_documents(self, batch_size: int = 1000) -> Iterator[list[StoredDocument]]:
        """Every document in insertion order, paging by position (no transaction stays open)."""
        position = -1
        while True:
            rows = self._read(
                f"SELECT position, {DOCUMENT_COLUMNS} FROM documents WHERE position > %s "
                "ORDER BY position LIMIT %s",
                [position, batch_size],
            )
            if not rows:
                return
            position = rows[-1][0]
            yield [stored_document(*row[1:]) for row in rows]

    # ---- codes and models ----------------------------------------------------------------
    def iter_codes(
        self, fingerprint: str, batch_size: int = 100_000
    ) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        """(ids, codes, forms) of documents coded by `fingerprint`, in insertion order."""
        position = -1
        while True:
            rows = self._read(
                "SELECT position, id, code, form FROM documents WHERE fingerprint = %s "
                "AND code IS NOT NULL AND position > %s ORDER BY position LIMIT %s",
                [fingerprint, position, batch_size],
            )
            if not rows:
                return
            position = rows[-1][0]
            _, ids, codes, forms = zip(*rows, strict=True)
            codes = packed_codes(fingerprint, codes)
            yield list(ids), codes, stored_forms(fingerprint, forms, 8 * codes.shape[1])

    def ids_without_code(self, fingerprint: str, *, form: bool = False) -> list[str]:
        """Ids whose code (or, with `form`, rescoring form) is missing or made by another
        model, in insertion order."""
        missing = "code IS NULL OR form IS NULL" if form else "code IS NULL"
        rows = self._read(
            f"SELECT id FROM documents WHERE {missing} OR fingerprint IS DISTINCT FROM %s "
            "ORDER BY position",
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

        def work(connection: psycopg.Connection, last: int) -> int:
            if check_model:
                active = _setting(connection, ACTIVE_MODEL_SETTING)
                if active != fingerprint:
                    raise ModelChangedError(fingerprint, active)
            _write_codes(connection, updates, fingerprint)
            ids = [doc_id for doc_id, _, _ in updates]
            packed = [code for _, code, _ in updates]
            forms = [form for _, _, form in updates]
            fingerprints = [fingerprint] * len(ids)
            return _append_changes(connection, last, UPSERT, ids, packed, fingerprints, forms)

        return self._write_in_turn(work)

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

        def work(connection: psycopg.Connection, last: int) -> int:
            if expect_seq is not None and last != expect_seq:
                raise FeedMovedError(expect_seq, last)
            _write_codes(connection, updates, fingerprint)
            _write_setting(connection, ACTIVE_MODEL_SETTING, fingerprint)
            return _append_changes(connection, last, MODEL, [None], [None], [fingerprint], [None])

        return self._write_in_turn(work)

    # ---- change feed ---------------------------------------------------------------------
    def last_seq(self) -> int:
        """The sequence number of the newest committed change (0: none yet)."""
        return int(self._read("SELECT last_seq FROM feed")[0][0])

    def changes_since(self, seq: int, limit: int = 10_000) -> list[Change]:
        """Up to `limit` changes after `seq`, contiguous, read in one statement (one snapshot)."""
        rows = self._read(
            f"SELECT f.first_seq, f.last_seq, c.* FROM feed f LEFT JOIN "
            f"(SELECT {CHANGE_COLUMNS} FROM changes WHERE seq > %s ORDER BY seq LIMIT %s) c "
            "ON TRUE ORDER BY c.seq",
            [seq, limit],
        )
        first_seq, last_seq = rows[0][0], rows[0][1]
        changes = [Change(*row[2:]) for row in rows if row[2] is not None]
        check_feed_position(seq, first_seq, last_seq, changes)
        return changes

    def compact_feed(self, before_seq: int) -> int:
        """Drop changes below `before_seq` (capped at the newest + 1); returns how many."""

        def work(connection: psycopg.Connection, last: int) -> int:
            first_seq = connection.execute(
                "UPDATE feed SET first_seq = LEAST(GREATEST(%s, first_seq), last_seq + 1) "
                "RETURNING first_seq",
                [before_seq],
            ).fetchone()[0]
            return connection.execute("DELETE FROM changes WHERE seq < %s", [first_seq]).rowcount

        return self._write_in_turn(work)

    def change_listener(self) -> PostgresChangeListener:
        """A listener on `FEED_CHANNEL`, on its own connection (outside the pool)."""
        return PostgresChangeListener(self)

    # ---- settings ------------------------------------------------------------------------
    def get_setting(self, key: str) -> str | None:
        """A stored setting, or None."""
        rows = self._read("SELECT value FROM settings WHERE key = %s", [key])
        return rows[0][0] if rows else None

    def set_setting(self, key: str, value: str) -> None:
        """Store a setting durably (not the active model: see `check_setting`)."""
        check_setting(key, value)
        self._write(lambda connection: _write_setting(connection, key, value))

    # ---- model artifacts -----------------------------------------------------------------
    def put_model(self, artifact: ModelArtifact) -> None:
        """Store a model's files under its fingerprint (a no-op if already stored)."""
        artifact.check()
        self._write(
            lambda connection: connection.execute(
                "INSERT INTO models (fingerprint, config, vocab, weights, created_at) "
                f"VALUES (%s, %s, %s, %s, {NOW}) ON CONFLICT (fingerprint) DO NOTHING",
                [artifact.fingerprint, artifact.config, artifact.vocab, artifact.weights],
            )
        )

    def get_model(self, fingerprint: str) -> ModelArtifact | None:
        """The stored model with this fingerprint, or None; StoreError if it is damaged."""
        rows = self._read(
            "SELECT fingerprint, config, vocab, weights FROM models WHERE fingerprint = %s",
            [fingerprint],
        )
        return checked_artifact(rows[0]) if rows else None

    def has_model(self, fingerprint: str) -> bool:
        """Whether a model with this fingerprint is stored."""
        return bool(self._read("SELECT 1 FROM models WHERE fingerprint = %s", [fingerprint]))

    # ---- training jobs -------------------------------------------------------------------
    def claim_training_job(
        self, job_id: str, config: dict[str, Any], owner: str, lease_s: float
    ) -> TrainingJob:
        """Create a running job leased to `owner`, unless another job holds a live lease.

        The partial unique index on running jobs decides a race: the second insert waits for
        the first transaction and then fails, and becomes JobRunningError.
        """
        config_json = job_config_json(config)

        def work(connection: psycopg.Connection) -> TrainingJob:
            _expire_jobs(connection)
            running = select_jobs(connection, "status = %s", [RUNNING])
            if running:
                raise JobRunningError(running[0])
            try:
                with connection.transaction():
                    row = connection.execute(
                        "INSERT INTO training_jobs (id, config, status, owner, lease_expires_at, "
                        f"created_at) VALUES (%s, %s, %s, %s, {NOW} + %s, {NOW}) "
                        f"RETURNING {JOB_COLUMNS}",
                        [job_id, config_json, RUNNING, owner, float(lease_s)],
                    ).fetchone()
            except psycopg.errors.UniqueViolation as error:
                if error.diag.constraint_name == "training_jobs_one_running":
                    running = select_jobs(connection, "status = %s", [RUNNING])
                    raise JobRunningError(running[0] if running else None) from None
                raise StoreError(f"training job {job_id!r} already exists") from None
            return training_job(row)

        return self._write(work)

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

        def work(connection: psycopg.Connection) -> bool:
            renewed = connection.execute(
                f"UPDATE training_jobs SET lease_expires_at = {NOW} + %s, "
                "progress = COALESCE(%s::text, progress), "
                "documents = COALESCE(%s::bigint, documents) "
                f"WHERE id = %s AND owner = %s AND status = %s AND lease_expires_at >= {NOW}",
                [float(lease_s), progress_json, documents, job_id, owner, RUNNING],
            )
            return renewed.rowcount == 1

        return self._write(work)

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

        def work(connection: psycopg.Connection) -> bool:
            finished = connection.execute(
                "UPDATE training_jobs SET status = %s, fingerprint = %s, error = %s, "
                f"finished_at = {NOW} WHERE id = %s AND owner = %s AND status = %s",
                [status, fingerprint, error, job_id, owner, RUNNING],
            )
            return finished.rowcount == 1

        return self._write(work)

    def expire_training_jobs(self) -> list[str]:
        """Mark running jobs whose lease expired as failed; returns their ids."""
        return self._write(_expire_jobs)

    def get_training_job(self, job_id: str) -> TrainingJob | None:
        """One job as stored, or None."""
        rows = self._read(f"SELECT {JOB_COLUMNS} FROM training_jobs WHERE id = %s", [job_id])
        return training_job(rows[0]) if rows else None

    def running_training_job(self) -> TrainingJob | None:
        """The job marked running, or None."""
        rows = self._read(f"SELECT {JOB_COLUMNS} FROM training_jobs WHERE status = %s", [RUNNING])
        return training_job(rows[0]) if rows else None

    # ---- health --------------------------------------------------------------------------
    def pool_stats(self) -> dict[str, int]:
        """The pool's connections: open (`size`), idle (`available`), callers `waiting`, `max`."""
        stats = self._pool.get_stats()
        return {
            "size": stats.get("pool_size", 0),
            "available": stats.get("pool_available", 0),
            "waiting": stats.get("requests_waiting", 0),
            "max": stats.get("pool_max", 0),
        }

    def storage_errors(self) -> list[str]:
        """The feed's consistency (dense numbers between its bounds), or [] when healthy."""
        (first_seq, last_seq, low, high, n) = self._read(
            "SELECT first_seq, last_seq, (SELECT MIN(seq) FROM changes), "
            "(SELECT MAX(seq) FROM changes), (SELECT COUNT(*) FROM changes) FROM feed"
        )[0]
        return feed_problems(first_seq, last_seq, low, high, n)

    def close(self) -> None:
        """Close the pool; the store is unusable afterwards."""
        self._pool.close()


class PostgresChangeListener(ChangeListener):
    """LISTENs on `FEED_CHANNEL` on a dedicated connection, re-made after a loss."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._connection: psycopg.Connection | None = None
        self._connect()

    def _connect(self) -> None:
        try:
            self._connection = psycopg.connect(self._store.url, **self._store._connect_kwargs)
            self._connection.execute(f"LISTEN {FEED_CHANNEL}")
        except psycopg.Error as error:
            self.close()
            raise self._store._translate(error, "cannot listen to PostgreSQL at {url}") from None

    def wait(self, timeout_s: float) -> bool:
        """True once a change was notified, or after reconnecting (notifications may have been
        missed meanwhile); False on timeout. StoreUnavailableError when the connection is lost,
        and after `timeout_s` of waiting when it cannot be made again (so callers back off)."""
        if self._connection is None or self._connection.closed:
            try:
                self._connect()
            except StoreUnavailableError:
                time.sleep(timeout_s)
                raise
            return True
        try:
            woke = bool(list(self._connection.notifies(timeout=timeout_s, stop_after=1)))
            if woke:
                for _ in self._connection.notifies(timeout=0):  # drain what already arrived
                    pass
            return woke
        except psycopg.Error as error:
            self.close()
            raise self._store._translate(error, "lost the LISTEN connection to {url}") from None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


# ---- statements run inside a caller's transaction -----------------------------------------


def _append_changes(
    connection: psycopg.Connection,
    last: int,
    kind: str,
    ids: list[str | None],
    codes: list[bytes | None],
    fingerprints: list[str | None],
    forms: list[bytes | None],
) -> int:
    """Number the changes `last + 1, ...` inside the caller's turn (its transaction holds the
    feed's row), store them, notify at commit; returns the new newest number."""
    if not ids:
        return last
    connection.execute(
        f"INSERT INTO changes ({CHANGE_COLUMNS}) "
        "SELECT %s + c.ord, %s, c.id, c.code, c.fingerprint, extract(epoch FROM now()), c.form "
        "FROM unnest(%s::text[], %s::bytea[], %s::text[], %s::bytea[]) WITH ORDINALITY "
        "AS c(id, code, fingerprint, form, ord)",
        [last, kind, ids, codes, fingerprints, forms],
    )
    newest = last + len(ids)
    connection.execute("UPDATE feed SET last_seq = %s", [newest])
    connection.execute("SELECT pg_notify(%s, %s)", [FEED_CHANNEL, str(newest)])
    return newest


def _existing(connection: psycopg.Connection, ids: Sequence[str]) -> set[str]:
    rows = connection.execute("SELECT id FROM documents WHERE id = ANY(%s::text[])", [list(ids)])
    return {row[0] for row in rows}


def _write_codes(
    connection: psycopg.Connection,
    updates: list[tuple[str, bytes, bytes | None]],
    fingerprint: str,
) -> None:
    """Apply (id, code, form) updates; StoreError (rolling back) on unknown ids."""
    ids = [doc_id for doc_id, _, _ in updates]
    updated = connection.execute(
        "UPDATE documents SET code = u.code, form = u.form, fingerprint = %s "
        "FROM unnest(%s::text[], %s::bytea[], %s::bytea[]) AS u(id, code, form) "
        "WHERE documents.id = u.id",
        [fingerprint, ids, [code for _, code, _ in updates], [form for _, _, form in updates]],
    ).rowcount
    if updated != len(updates):
        unknown = sorted(set(ids) - _existing(connection, ids))
        raise StoreError(f"cannot set codes of unknown document(s): {unknown[:10]}")


def _setting(connection: psycopg.Connection, key: str) -> str | None:
    row = connection.execute("SELECT value FROM settings WHERE key = %s", [key]).fetchone()
    return None if row is None else row[0]


def _write_setting(connection: psycopg.Connection, key: str, value: str) -> None:
    connection.execute(
        "INSERT INTO settings (key, value) VALUES (%s, %s) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )


def _expire_jobs(connection: psycopg.Connection) -> list[str]:
    rows = connection.execute(
        f"UPDATE training_jobs SET status = %s, error = {EXPIRED_LEASE_ERROR_SQL}, "
        f"finished_at = {NOW} WHERE status = %s AND lease_expires_at < {NOW} RETURNING id",
        [FAILED, RUNNING],
    ).fetchall()
    return [row[0] for row in rows]
