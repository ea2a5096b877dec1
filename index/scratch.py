"""Scratch buffers that batch kernels borrow and that stay allocated between calls.

On a virtual machine a page the process has not touched before can cost microseconds: the
guest zeroes it and the host may have to back it first. A batch scan that wrote ~36 MB of
temporary hits into new memory spent 0 to 60 ms in the kernel doing that, more than the scan
itself on a bad call. Buffers lent from here are anonymous mappings reused call after call, so
their pages are touched once. Each keeps at most `retained_bytes` of touched pages when it
comes back (the rest goes back to the system with MADV_DONTNEED), which bounds what stays
resident between batches.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


class ScratchPool:
    """Lends uint32 arrays of `capacity` entries; keeps up to `keep` of them for later calls."""

    def __init__(self, capacity: int, retained_bytes: int, keep: int) -> None:
        self.capacity = capacity
        self.keep = keep
        page = mmap.PAGESIZE
        self._retained = min(capacity * 4, retained_bytes) // page * page
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    @contextmanager
    def lend(self, count: int) -> Iterator[list[np.ndarray]]:
        """`count` buffers for the duration of the block, each `capacity` uint32 entries."""
        with self._lock:
            taken = [self._free.pop() for _ in range(min(count, len(self._free)))]
        taken += [self._new() for _ in range(count - len(taken))]
        try:
            yield [np.frombuffer(memory, dtype=np.uint32) for memory in taken]
        finally:
            for memory in taken:
                self._trim(memory)
            with self._lock:
                self._free.extend(taken[: max(0, self.keep - len(self._free))])

    def _new(self) -> mmap.mmap:
        # Private, so MADV_DONTNEED frees the pages (a shared mapping would keep them).
        return mmap.mmap(-1, self.capacity * 4, flags=mmap.MAP_PRIVATE)

    def _trim(self, memory: mmap.mmap) -> None:
        """Hand back the pages past the retained prefix (a no-op where none were touched)."""
        if len(memory) > self._retained:
            memory.madvise(mmap.MADV_DONTNEED, self._retained, len(memory) - self._retained)


# The pool the batch kernels share: buffers of 32 MiB of address space (pages are touched only as
# far as a call writes), one per thread that may run a chunk, 32 MiB kept between calls in all.
SCRATCH_ENTRIES = 1 << 23
RETAINED_SCRATCH_BYTES = 32 << 20
_CPUS = os.cpu_count() or 1
SCRATCH = ScratchPool(SCRATCH_ENTRIES, RETAINED_SCRATCH_BYTES // _CPUS, keep=_CPUS)
