"""The `backend` and `store` fixtures: every contract test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from docbits.index.store import DocumentStore, open_store

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Backend:
    """One fresh, empty store location: `url` None is the SQLite file in `data_dir`."""

    name: str
    url: str | None
    data_dir: Path
    opened: list[DocumentStore] = field(default_factory=list)

    def open(self) -> DocumentStore:
        """Open (another instance of) the store, as a process would with `open_store`."""
        self.opened.append(open_store(self.url, self.data_dir))
        return self.opened[-1]

    def args(self) -> list[str]:
        """The location as two command-line arguments for a child process (see `open_from`)."""
        return [self.url or "", str(self.data_dir)]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh store location of the parametrised backend; what it opened is closed after."""
    url = None
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        url = server.create_database()
    location = Backend(request.param, url, tmp_path / "data")
    yield location
    for store in location.opened:
        store.close()
    if url is not None:
        server.drop_database(url)


@pytest.fixture
def store(backend: Backend) -> DocumentStore:
    """A fresh, empty store of the parametrised backend."""
    return backend.open()


# A child process's start: open the store named by argv[2:4], say "ready", wait for the go file
# argv[1], then run the test's own code (which reads its arguments from argv[4:]).
CHILD_PRELUDE = """
import sys, time
from pathlib import Path
from docbits.index.store import open_store
go = Path(sys.argv[1])
def open_from():
    return open_store(sys.argv[2] or None, Path(sys.argv[3]))
OPEN_FIRST = {open_first}
store = open_from() if OPEN_FIRST else None
print("ready", flush=True)
while not go.exists():
    time.sleep(0.002)
"""


def run_together(
    script: str,
    backend: Backend,
    per_process_args: list[list[str]],
    go_file: Path,
    open_first: bool = True,
    timeout_s: float = 120,
) -> list[str]:
    """Start one child per argument list, wait until each is ready (store opened, unless
    `open_first` is False), release them all at once, and return each child's output after
    "ready". A child that fails fails the test with its stderr."""
    code = CHILD_PRELUDE.format(open_first=open_first) + script
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(go_file), *backend.args(), *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in per_process_args
    ]
    try:
        for child in children:
            line = child.stdout.readline()
            if line.strip() != "ready":
                child.wait(timeout=timeout_s)
                pytest.fail(f"a child failed to start: {line}{child.stderr.read()}")
        go_file.touch()
        outputs = []
        for child in children:
            out, err = child.communicate(timeout=timeout_s)
            assert child.returncode == 0, f"a child failed:\n{err}"
            outputs.append(out)
        return outputs
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
