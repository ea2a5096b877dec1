"""Scratch buffers lent to batch kernels (`docbits.index.scratch`)."""

from __future__ import annotations

import mmap
import threading

import numpy as np

from docbits.index.scratch import ScratchPool

PAGE = mmap.PAGESIZE


def test_lends_writable_uint32_buffers_of_the_capacity() -> None:
    pool = ScratchPool(capacity=4 * PAGE, retained_bytes=PAGE, keep=2)
    with pool.lend(3) as buffers:
        assert len(buffers) == 3
        for buffer in buffers:
            assert buffer.dtype == np.uint32 and len(buffer) == 4 * PAGE
            buffer[:] = 7
        assert len({buffer.ctypes.data for buffer in buffers}) == 3


def test_returned_buffers_are_reused_up_to_keep() -> None:
    pool = ScratchPool(capacity=PAGE, retained_bytes=PAGE, keep=2)
    with pool.lend(3) as buffers:
        first = {buffer.ctypes.data for buffer in buffers}
    with pool.lend(3) as buffers:
        again = {buffer.ctypes.data for buffer in buffers}
    assert len(first & again) == 2  # two kept, the third made anew


def test_pages_past_the_retained_prefix_are_handed_back() -> None:
    """The kept prefix keeps its contents; the rest reads as fresh zero pages next time."""
    retained_entries = 2 * PAGE // 4
    pool = ScratchPool(capacity=4 * PAGE, retained_bytes=2 * PAGE, keep=1)
    with pool.lend(1) as (buffer,):
        buffer[:] = 9
    with pool.lend(1) as (buffer,):
        assert (buffer[:retained_entries] == 9).all()
        assert (buffer[retained_entries:] == 0).all()


def test_concurrent_lends_get_distinct_buffers() -> None:
    pool = ScratchPool(capacity=PAGE, retained_bytes=PAGE, keep=4)
    seen: list[int] = []
    inside = threading.Barrier(4)

    def borrow() -> None:
        with pool.lend(1) as (buffer,):
            seen.append(buffer.ctypes.data)
            inside.wait(timeout=10)

    threads = [threading.Thread(target=borrow) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 4
