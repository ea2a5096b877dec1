"""A readers-writer lock: many concurrent readers, one writer, writers preferred."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType


class ReadWriteLock:
    """Readers share the lock; a writer waits for them to leave and blocks new ones meanwhile.

    Use `with lock.reading():` or `with lock.writing():`. Not re-entrant: a thread holding the
    read side must not ask for it again (a waiting writer would deadlock it).
    """

    def __init__(self) -> None:
        # Readers take the bare mutex (C-level enter/exit); the condition shares it for waiting.
        self._mutex = threading.Lock()
        self._condition = threading.Condition(self._mutex)
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0
        self._read_side = _Side(self._acquire_read, self._release_read)
        self._write_side = _Side(self._acquire_write, self._release_write)

    def reading(self) -> _Side:
        """The shared side, as a context manager."""
        return self._read_side

    def writing(self) -> _Side:
        """The exclusive side, as a context manager."""
        return self._write_side

    def _acquire_read(self) -> None:
        with self._mutex:
            while self._writing or self._writers_waiting:
                self._condition.wait()
            self._readers += 1

    def _release_read(self) -> None:
        with self._mutex:
            self._readers -= 1
            if not self._readers:
                self._condition.notify_all()

    def _acquire_write(self) -> None:
        with self._condition:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._condition.wait()
            self._writers_waiting -= 1
            self._writing = True

    def _release_write(self) -> None:
        with self._condition:
            self._writing = False
            self._condition.notify_all()


class _Side:
    """A stateless context manager calling one side's acquire and release (shared by threads)."""

    __slots__ = ("_acquire", "_release")

    def __init__(self, acquire: Callable[[], None], release: Callable[[], None]) -> None:
        self._acquire = acquire
        self._release = release

    def __enter__(self) -> None:
        self._acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._release()
