"""PostgresStore only: migrations under the advisory lock, a failing row inside the server, and
losing the server while serving (every server here is started by the tests themselves).
Everything backend-independent is in test_contract.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from docbits.index.store import (
    StoredDocument,
    StoreError,
    StoreUnavailableError,
)
from docbits.index.store.postgres import SCHEMA_VERSION, PostgresStore
from tests.index.store.conftest import Backend, run_together
from tests.postgres_server import PostgresServer

FP = "f" * 64


def doc(doc_id: str, code: int = 1) -> StoredDocument:
    return StoredDocument(doc_id, "some text", {}, code.to_bytes(2, "big"), FP)


@pytest.fixture
def database(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's server."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


MIGRATOR = """
store = open_from()
print(store.schema_version)
store.close()
"""


def test_processes_starting_together_migrate_an_empty_database_once(
    database: str, tmp_path: Path
) -> None:
    """Four processes open an empty database at the same moment: each migration is applied
    once, one schema results, and every process opens it."""
    backend = Backend("postgres", database, tmp_path)
    outputs = run_together(MIGRATOR, backend, [[]] * 4, tmp_path / "go", open_first=False)
    assert [out.strip() for out in outputs] == [str(SCHEMA_VERSION)] * 4
    with psycopg.connect(database) as connection:
        versions = connection.execute("SELECT version FROM schema_migrations ORDER BY 1")
        assert [row[0] for row in versions] == list(range(1, SCHEMA_VERSION + 1))
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert sorted(row[0] for row in tables) == [
            "changes",
            "documents",
            "feed",
            "models",
            "schema_migrations",
            "settings",
            "training_jobs",
        ]
        assert connection.execute("SELECT COUNT(*) FROM feed").fetchone()[0] == 1


def test_refuses_a_newer_schema(database: str) -> None:
    """A database migrated by a future docbits is not touched."""
    PostgresStore(database).close()
    with psycopg.connect(database) as connection:
        connection.execute("INSERT INTO schema_migrations (version) VALUES (%s)", [99])
    with pytest.raises(StoreError, match="newer"):
        PostgresStore(database)


def test_a_row_failing_inside_the_server_rolls_the_batch_back(database: str) -> None:
    """A row a trigger rejects, after earlier rows were inserted, leaves nothing and no change."""
    store = PostgresStore(database)
    store.upsert([doc("keep")])
    with psycopg.connect(database) as connection:
        connection.execute(
            "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
            "IF NEW.id = 'poison' THEN RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; "
            "END $$ LANGUAGE plpgsql"
        )
        connection.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON documents FOR EACH ROW "
            "EXECUTE FUNCTION poison()"
        )
    with pytest.raises(StoreError, match="poisoned row") as raised:
        store.upsert([doc("x1"), doc("keep", 9), doc("poison"), doc("x2")])
    assert not isinstance(raised.value, StoreUnavailableError)
    assert store.count() == 1 and store.get("keep").code == b"\x00\x01"
    assert store.last_seq() == 1 and store.storage_errors() == []
    store.close()


def test_losing_the_server_while_serving_then_getting_it_back() -> None:
    """The server crashes under a writer: writes raise StoreUnavailableError (never a success
    that was not committed), reads and the listener too; once it is back the pool reconnects
    by itself, every acknowledged write is there and the feed is whole."""
    with PostgresServer() as server:
        url = server.create_database(password="hunter2")
        store = PostgresStore(url, pool_timeout_s=1.0)
        listener = store.change_listener()
        acknowledged: list[str] = []
        errors: list[Exception] = []
        stop = threading.Event()

        def write() -> None:
            number = 0
            while not stop.is_set():
                try:
                    store.upsert([doc(f"d{number}", number % 65536)])
                    acknowledged.append(f"d{number}")
                except StoreError as error:
                    errors.append(error)
                    time.sleep(0.05)
                number += 1

        writer = threading.Thread(target=write)
        writer.start()
        try:
            wait_until(lambda: len(acknowledged) >= 20, 30, "writes before the crash")
            server.stop("immediate")  # no shutdown checkpoint: recovery replays the WAL
            wait_until(lambda: len(errors) >= 2, 30, "writes to fail")
            with pytest.raises(StoreUnavailableError, match="unavailable"):
                store.count()
            with pytest.raises(StoreUnavailableError, match="lost the LISTEN connection"):
                listener.wait(5)
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError, match="cannot listen"):
                listener.wait(0.3)  # cannot reconnect yet: raises after the timeout
            assert time.monotonic() - started >= 0.29
            before_restart = len(acknowledged)
            server.start()
            wait_until(lambda: len(acknowledged) >= before_restart + 20, 60, "writes to resume")
        finally:
            stop.set()
            writer.join(timeout=60)
        assert all(isinstance(error, StoreUnavailableError) for error in errors), errors
        assert all("hunter2" not in str(error) for error in errors)
        assert "postgresql://postgres:***@127.0.0.1" in str(errors[0])
        assert store.existing_ids(acknowledged) == set(acknowledged)
        assert store.storage_errors() == []
        feed = store.changes_since(0, limit=10**6)
        assert [change.seq for change in feed] == list(range(1, store.last_seq() + 1))
        assert {change.id for change in feed} == store.existing_ids([c.id for c in feed])
        assert listener.wait(1) is True  # reconnected: the caller catches up
        store.upsert([doc("after")])
        assert listener.wait(5) is True
        listener.close()
        store.close()
