"""`open_store`: the URL picks the backend; a bad or unreachable URL is a clear error naming it
with its password masked, never a traceback from the driver."""

from __future__ import annotations

from pathlib import Path

import port_for
import pytest

from docbits.index.store import (
    SQLiteStore,
    StoreError,
    StoreUnavailableError,
    mask_url,
    open_store,
)


@pytest.mark.parametrize("url", [None, ""])
def test_no_url_is_the_sqlite_file_in_the_data_folder(url: str | None, tmp_path: Path) -> None:
    store = open_store(url, tmp_path / "data")
    try:
        assert isinstance(store, SQLiteStore)
        assert store.path == tmp_path / "data" / "docbits.sqlite3" and store.path.exists()
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://docbits:hunter2@db:3306/docs", "unsupported"),
        ("sqlite:///var/lib/docbits.sqlite3", "unsupported"),
        ("docbits:hunter2@db/docs", "unsupported"),
        ("postgresql://docbits:hunter2@db:port/docs", "malformed"),
        ("postgresql://docbits:hunter2@db:99999/docs", "malformed"),
        ("postgres://docbits:hunter2@db/docs?no_such_option=1", "malformed"),
        ("postgresql://docbits:hunter2@[::1/docs", "malformed"),
    ],
)
def test_a_bad_url_is_a_clear_error_with_the_password_masked(
    url: str, reason: str, tmp_path: Path
) -> None:
    with pytest.raises(StoreError, match=reason) as raised:
        open_store(url, tmp_path)
    message = str(raised.value)
    assert "hunter2" not in message and mask_url(url) in message
    assert not isinstance(raised.value, StoreUnavailableError)
    assert not list(tmp_path.iterdir())  # nothing was created on the way


def test_an_unreachable_server_is_refused_naming_the_masked_url(tmp_path: Path) -> None:
    port = port_for.select_random()  # free: nothing listens there
    for url, masked in [
        (
            f"postgresql://docbits:hunter2@127.0.0.1:{port}/docs",
            f"docbits:***@127.0.0.1:{port}/docs",
        ),
        (f"postgres://docbits@127.0.0.1:{port}/docs?password=hunter2", "password=***"),
    ]:
        with pytest.raises(StoreUnavailableError) as raised:
            open_store(url, tmp_path)
        message = str(raised.value)
        assert message.startswith("cannot connect to PostgreSQL at postgres")
        assert masked in message and "hunter2" not in message and "refused" in message


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("postgresql://u:p%40ss@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert mask_url("postgres://u@h/db?password=x&a=1") == "postgres://u@h/db?password=***&a=1"
    assert mask_url("postgresql://h1:5432,h2:5433/db") == "postgresql://h1:5432,h2:5433/db"
