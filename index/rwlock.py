"""A readers-writer lock: many concurrent readers, one writer, writers preferred."""

from __future__ import annotations

import threading
from types import TracebackType


class ReadWriteLock:
    """Readers share the lock; a writer waits for them to leave and blocks new ones meanwhile.

    Use `with lock.reading():` or `with lock.writing():`. Not re-entrant: a thread holding the
    read side must not ask for it again (a waiting writer would deadlock it).
    """

    def __init__(self) -> None:
        # The bare mutex guards the counters (C-level enter/exit); the condition shares it.
        self.mutex = threading.Lock()
        self.condition = threading.Condition(self.mutex)
        self.readers = 0
        self.writing_now = False
        self.writers_waiting = 0
        self._read_side = _ReadSide(self)
        self._write_side = _WriteSide(self)

    def reading(self) -> _ReadSide:
        """The shared side, as a context manager."""
        return self._read_side

    def writing(self) -> _WriteSide:
        """The exclusive side, as a context manager."""
        return self._write_side


class _ReadSide:
    """Enter: wait while a writer holds or waits for the lock, then count in as a reader.

    The logic sits in `__enter__`/`__exit__` themselves: one Python frame per query each way.
    """

    __slots__ = ("_lock",)

    def __init__(self, lock: ReadWriteLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        lock = self._lock
        with lock.mutex:
            while lock.writing_now or lock.writers_waiting:
                lock.condition.wait()
            lock.readers += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        lock = self._lock
        with lock.mutex:
            lock.readers -= 1
            if not lock.readers:
                lock.condition.notify_all()


class _WriteSide:
    """Enter: announce a waiting writer, wait until no reader or writer holds the lock."""

    __slots__ = ("_lock",)

    def __init__(self, lock: ReadWriteLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        lock = self._lock
        with lock.mutex:
            lock.writers_waiting += 1
            while lock.writing_now or lock.readers:
                lock.condition.wait()
            lock.writers_waiting -= 1
            lock.writing_now = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        lock = self._lock
        with lock.mutex:
            lock.writing_now = False
            lock.condition.notify_all()
