"""A throwaway PostgreSQL server for tests and benchmarks, started and stopped by the caller.

It is pytest-postgresql's executor over the distribution's binaries (`postgresql` package,
/usr/lib/postgresql/<version>/bin). PostgreSQL refuses to run as root, so when we are root (CI
is) pg_ctl runs as the `postgres` user that the package creates, in a folder that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import port_for
import psycopg
from mirakuru import TCPExecutor
from mirakuru.exceptions import ProcessFinishedWithError
from pytest_postgresql.executors import PostgreSQLExecutor

SUPERUSER = "postgres"
INSTALL_HINT = "install the distribution's PostgreSQL server (apt-get install postgresql)"


def find_pg_ctl() -> Path:
    """The newest /usr/lib/postgresql/*/bin/pg_ctl, else pg_ctl on PATH; fails loudly if none."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1])
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path)
    raise RuntimeError(f"PostgreSQL's pg_ctl was not found: {INSTALL_HINT}")


class _Executor(PostgreSQLExecutor):
    """pytest-postgresql's executor, with pg_ctl's shutdown mode chosen by the caller."""

    stop_mode = "fast"

    def stop(self, sig: int | None = None, exp_sig: int | None = None) -> _Executor:
        """`pg_ctl stop -m <stop_mode>`, then mirakuru's clean-up of the launcher's processes."""
        subprocess.run(
            [self.executable, "stop", "-D", self.datadir, "-m", self.stop_mode],
            check=True,
            capture_output=True,
            timeout=self._timeout,
        )
        with contextlib.suppress(ProcessFinishedWithError):  # the launcher exited long ago
            TCPExecutor.stop(self, sig, exp_sig)
        return self


def memory_folder() -> str | None:
    """/dev/shm when it is a writable tmpfs with room for a test cluster, else None."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= 1 << 30:
        return str(shm)
    return None


class PostgresServer:
    """One PostgreSQL cluster on 127.0.0.1 and a free port, in its own temporary folder.

    `port` defaults to a free one. `in_memory` puts the cluster in /dev/shm when there is room
    (initdb's thousand files and their removal take seconds on a slow disk); benchmarks pass
    False to measure a real disk.
    pytest-postgresql's executor runs the server with fsync off (`-F`); `postgres_options`
    such as "-c fsync=on" override that.
    """

    def __init__(
        self, postgres_options: str = "", in_memory: bool = True, port: int | None = None
    ) -> None:
        parent = memory_folder() if in_memory else None
        self.folder = Path(tempfile.mkdtemp(prefix="docbits-pg-", dir=parent))
        self.port = port or port_for.select_random()
        pg_ctl = find_pg_ctl()
        executable = str(pg_ctl)
        if os.geteuid() == 0:
            shutil.chown(self.folder, SUPERUSER, SUPERUSER)
            wrapper = self.folder / "pg_ctl-as-postgres"
            wrapper.write_text(f'#!/bin/sh\ncd /\nexec runuser -u {SUPERUSER} -- {pg_ctl} "$@"\n')
            wrapper.chmod(stat.S_IRWXU)
            executable = str(wrapper)
        self.executor = _Executor(
            executable=executable,
            host="127.0.0.1",
            port=self.port,
            datadir=str(self.folder / "data"),
            unixsocketdir=str(self.folder),
            logfile=str(self.folder / "server.log"),
            startparams="-w",
            dbname="postgres",
            user=SUPERUSER,
            timeout=60,
            postgres_options=postgres_options,
        )
        self._databases = 0

    def start(self) -> PostgresServer:
        """Start the server (initialising its data folder the first time) and wait until ready."""
        self.executor.start()
        launcher = self.executor.process
        if launcher is not None:
            launcher.wait(timeout=60)  # `pg_ctl start -w` returns once the server accepts work
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (clean) or `immediate` (like a crash: no shutdown checkpoint)."""
        self.executor.stop_mode = mode
        self.executor.stop()

    def url(self, dbname: str = "postgres", password: str | None = None) -> str:
        """A postgresql:// URL of one database (the server trusts loopback, any password works)."""
        secret = f":{password}" if password else ""
        return f"postgresql://{SUPERUSER}{secret}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, password: str | None = None) -> str:
        """A new empty database; returns its URL (with `password` in it, if given)."""
        self._databases += 1
        name = f"test_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name, password)

    def drop_database(self, url: str) -> None:
        """Drop a database made by create_database, closing its remaining sessions."""
        name = url.rsplit("/", 1)[1].split("?")[0]
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def close(self) -> None:
        """Stop the server if it runs and remove its folder."""
        try:
            if self.executor.running():
                self.executor.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
