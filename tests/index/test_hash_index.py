"""HashIndex against a brute-force oracle (hypothesis), plus argument checks and concurrency."""

from __future__ import annotations

import subprocess
import sys
import threading
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from docbits.index import hash_index, kernels
from docbits.index.bucket_table import bucket_key
from docbits.index.hash_index import BatchHits, HashIndex
from docbits.index.scratch import ScratchPool
from tests.index.oracle import OracleIndex

ID_POOL = ["a", "b", "c", "d", "e", "f", "g", "h", "doc-10", "ü-11", "x" * 40, "12"]


def to_bytes(code: int, bits: int) -> bytes:
    """An int code as the packed big-endian bytes of the shared convention."""
    return code.to_bytes(bits // 8, "big")


def to_array(codes: list[int], bits: int) -> np.ndarray:
    """Int codes as a (n, bits/8) uint8 array."""
    return np.frombuffer(b"".join(to_bytes(c, bits) for c in codes), dtype=np.uint8).reshape(
        len(codes), bits // 8
    )


def keep_some(doc_id: str) -> bool:
    """A deterministic metadata-style filter that drops about half the ids."""
    return sum(map(ord, doc_id)) % 2 == 0


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, list[int], list[tuple[str, object]]]:
    """A code length, a few query codes, and a sequence of upserts/removes with many ties."""
    bits = draw(st.sampled_from([8, 16, 24, 32, 64, 72, 128]))
    bases = draw(st.lists(st.integers(0, 2**bits - 1), min_size=1, max_size=4))

    def near_code() -> st.SearchStrategy[int]:
        flips = st.lists(st.integers(0, bits - 1), max_size=3)
        return st.builds(
            lambda base, positions: base ^ sum({1 << p for p in positions}),
            st.sampled_from(bases),
            flips,
        )

    ops: list[tuple[str, object]] = []
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.booleans()) or not ops:
            pairs = draw(
                st.lists(st.tuples(st.sampled_from(ID_POOL), near_code()), min_size=0, max_size=8)
            )
            ops.append(("upsert", pairs))
        else:
            ops.append(("remove", draw(st.lists(st.sampled_from(ID_POOL), max_size=4))))
    queries = draw(st.lists(near_code(), min_size=1, max_size=3))
    return bits, queries, ops


def check_arrays(result: BatchHits, expected: list[list[tuple[str, int]]]) -> None:
    """An array-form batch answer holds exactly the expected hits, query by query."""
    assert len(result) == len(expected)
    assert result.rows.dtype == np.int32 and result.distances.dtype == np.uint8
    assert result.offsets[0] == 0 and result.offsets[-1] == len(result.rows) == len(
        result.distances
    )
    assert [result.hits(q) for q in range(len(result))] == expected
    assert [result.ids(q) for q in range(len(result))] == [[i for i, _ in e] for e in expected]
    assert result.to_lists() == expected


def check_against_oracle(index: HashIndex, oracle: OracleIndex, queries: list[int]) -> None:
    """Every query form of `index` equals the oracle's answer."""
    bits = index.bits
    assert len(index) == len(oracle.entries)
    for doc_id in ID_POOL:
        assert (doc_id in index) == (doc_id in oracle.entries)
        expected = oracle.entries.get(doc_id)
        assert index.code_of(doc_id) == (None if expected is None else to_bytes(expected[1], bits))
    batch = to_array(queries, bits)
    for radius in (0, 1, 2, 3):
        expected_balls = [oracle.ball(q, radius) for q in queries]
        assert index.ball_many(batch, radius) == expected_balls
        check_arrays(index.ball_many_arrays(batch, radius), expected_balls)
        for q, expected in zip(queries, expected_balls, strict=True):
            assert index.ball(to_bytes(q, bits), radius) == expected
            assert index.ball(to_bytes(q, bits), radius, keep_some) == oracle.ball(
                q, radius, keep_some
            )
    assert index.bucket_many(batch) == [[i for i, _ in oracle.ball(q, 0)] for q in queries]
    check_arrays(index.bucket_many_arrays(batch), [oracle.ball(q, 0) for q in queries])
    for q in queries:
        assert index.bucket(to_bytes(q, bits)) == [i for i, _ in oracle.ball(q, 0)]
        assert index.bucket(to_bytes(q, bits), keep_some) == [
            i for i, _ in oracle.ball(q, 0, keep_some)
        ]
    for k in (1, 3, 20):
        assert index.nearest_many(batch, k) == [oracle.nearest(q, k) for q in queries]
        check_arrays(index.nearest_many_arrays(batch, k), [oracle.nearest(q, k) for q in queries])
        for q in queries:
            assert index.nearest(to_bytes(q, bits), k) == oracle.nearest(q, k)
            assert index.nearest(to_bytes(q, bits), k, keep_some) == oracle.nearest(q, k, keep_some)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenario=scenarios(),
    probe_cost=st.sampled_from([0, 10**9]),
    merge_after=st.sampled_from([0, 3, 4096]),
)
def test_matches_oracle_through_upserts_and_removes(
    scenario: tuple[int, list[int], list[tuple[str, object]]], probe_cost: int, merge_after: int
) -> None:
    """Probing and scanning paths, with and without merges, agree with brute force after each op."""
    bits, queries, ops = scenario
    with (
        mock.patch.object(hash_index, "PROBE_COST_IN_CODES", probe_cost),
        mock.patch.object(hash_index, "MIN_DELTA_BEFORE_MERGE", merge_after),
        mock.patch.object(hash_index, "MAX_NEAREST_PROBES", 300),
    ):
        index, oracle = HashIndex(bits), OracleIndex()
        for kind, payload in ops:
            if kind == "upsert":
                pairs = list(payload)
                index.upsert([i for i, _ in pairs], to_array([c for _, c in pairs], bits))
                oracle.upsert(pairs)
            else:
                assert index.remove(list(payload)) == oracle.remove(list(payload))
            check_against_oracle(index, oracle, queries)


@settings(max_examples=30, deadline=None)
@given(scenario=scenarios())
def test_from_arrays_equals_incremental_build(
    scenario: tuple[int, list[int], list[tuple[str, object]]],
) -> None:
    """A bulk-built index answers like one built by upserts (same rows, same order)."""
    bits, queries, ops = scenario
    oracle = OracleIndex()
    for kind, payload in ops:
        if kind == "upsert":
            oracle.upsert(list(payload))
        else:
            oracle.remove(list(payload))
    ordered = sorted(oracle.entries.items(), key=lambda item: item[1][0])
    ids = [doc_id for doc_id, _ in ordered]
    index = HashIndex.from_arrays(bits, ids, to_array([code for _, (_, code) in ordered], bits))
    check_against_oracle(index, oracle, queries)
    assert index.to_arrays()[0] == ids


def test_upsert_that_moves_a_document_keeps_its_tie_position() -> None:
    """An id moved to another bucket and back still ranks by its first insertion."""
    index = HashIndex(8)
    index.upsert(["first", "second"], to_array([1, 1], 8))
    index.upsert(["first"], to_array([2], 8))
    assert index.bucket(bytes([1])) == ["second"]
    index.upsert(["first"], to_array([1], 8))
    assert index.bucket(bytes([1])) == ["first", "second"]
    index.remove(["first"])
    index.upsert(["first"], to_array([1], 8))
    assert index.bucket(bytes([1])) == ["second", "first"]


def test_repeated_id_in_one_batch_takes_the_last_code() -> None:
    """Within a batch, the last code given for an id wins."""
    index = HashIndex(16)
    index.upsert(["a", "b", "a"], to_array([1, 2, 3], 16))
    assert index.code_of("a") == to_bytes(3, 16)
    assert len(index) == 2


@pytest.mark.parametrize("count", [0, 1, 3000])
def test_bulk_built_index_accepts_writes(count: int) -> None:
    """An index built by from_arrays (as at start-up, even from an empty store) grows and moves."""
    ids = [f"d{i}" for i in range(count)]
    index = HashIndex.from_arrays(72, ids, np.zeros((count, 9), dtype=np.uint8))
    index.upsert(["new", *ids[:1]], np.full((1 + min(count, 1), 9), 7, dtype=np.uint8))
    assert index.bucket(bytes([7] * 9)) == [*ids[:1], "new"]
    assert index.remove(["new"]) == 1
    assert len(index) == count
    expected = {0: [], 1: [("d0", 27)], 3000: [("d1", 0)]}[count]  # 0x07 has 3 bits set
    assert index.nearest(bytes(9), 1) == expected


@pytest.mark.parametrize("scratch_entries", [64, 1 << 16])
def test_batch_probes_on_threads_equal_single_queries(scratch_entries: int) -> None:
    """Chunks claimed by three threads, hits appended to each thread's scratch buffer or moved
    to a grown array when it is full (64 entries): the same answers as one query at a time."""
    rng = np.random.default_rng(7)
    centres = rng.integers(0, 256, size=(3, 4), dtype=np.uint8)
    flips = np.packbits(rng.random((3000, 32)) < 0.05, axis=1)
    codes = centres[rng.integers(0, 3, size=3000)] ^ flips
    index = HashIndex.from_arrays(32, [f"r{row}" for row in range(3000)], codes)
    # Costly queries (stored codes, big balls) first, then cheap random ones.
    queries = np.concatenate([codes[:100], rng.integers(0, 256, size=(100, 4), dtype=np.uint8)])
    with (
        mock.patch.object(hash_index, "PROBE_COST_IN_CODES", 0),  # never scan
        mock.patch.object(hash_index, "MIN_PROBES_PER_THREAD", 1),
        mock.patch.object(hash_index, "_CPUS", 3),
        mock.patch.object(hash_index, "SCRATCH", ScratchPool(scratch_entries, 4096, keep=3)),
    ):
        result = index.ball_many_arrays(queries, 2)
    expected = [index.ball(query.tobytes(), 2) for query in queries]
    assert sum(map(len, expected)) > 10_000
    check_arrays(result, expected)


def test_batch_arrays_resolve_ids_after_the_documents_are_removed() -> None:
    """Rows are never reused, so an answer read after a remove still names the right ids."""
    index = HashIndex(32)
    index.upsert(["a", "b", "c"], to_array([5, 5, 4], 32))
    result = index.ball_many_arrays(to_array([5, 9], 32), 1)
    index.remove(["a", "c"])
    index.upsert(["d"], to_array([5], 32))
    assert result.hits(0) == [("a", 0), ("b", 0), ("c", 1)]
    assert result.hits(1) == []
    assert result.offsets.tolist() == [0, 3, 3]


WARM_UP_CHECK = """
import sys
from docbits.index import hash_index, id_table, kernels, single_query, substring_scan
hash_index.HashIndex(int(sys.argv[1])).warm_up()
kernels_used = {
    "probe_balls": kernels.probe_balls,
    "scan_distances": kernels.scan_distances,
    "smallest_rows": kernels.smallest_rows,
    "split_hits_into": kernels.split_hits_into,
    "probe_one": single_query.probe_one,
    "scan_chunk": substring_scan.scan_chunk,
    "place_hits": substring_scan.place_hits,
    "fill_distances": substring_scan.fill_distances,
    "query_tables": substring_scan.query_tables,
    "_gather": id_table._gather,
}
print(" ".join(name for name, kernel in kernels_used.items() if not kernel.signatures))
"""


@pytest.mark.parametrize("bits", [32, 64])
def test_warm_up_compiles_the_query_kernels(bits: int) -> None:
    """In a fresh process, warm_up alone leaves every query kernel compiled (or loaded from
    the disk cache) for these codes, so no first query pays for it."""
    done = subprocess.run(
        [sys.executable, "-c", WARM_UP_CHECK, str(bits)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert done.stdout.strip() == "", f"not compiled by warm_up: {done.stdout.strip()}"


def test_bucket_statistics() -> None:
    """Histogram counts buckets per size."""
    index = HashIndex(8)
    index.upsert(["a", "b", "c", "d"], to_array([5, 5, 7, 9], 8))
    assert index.num_buckets() == 3
    assert index.bucket_size_histogram() == {1: 2, 2: 1}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda idx: idx.bucket(b"\x00"), "2 bytes"),
        (lambda idx: idx.ball(b"\x00\x00", -1), "radius"),
        (lambda idx: idx.nearest(b"\x00\x00", 0), "k must"),
        (lambda idx: idx.upsert(["a"], np.zeros((1, 3), np.uint8)), "shape"),
        (lambda idx: idx.upsert(["a", "b"], np.zeros((1, 2), np.uint8)), "2 ids"),
        (lambda idx: idx.upsert([""], np.zeros((1, 2), np.uint8)), "non-empty"),
        (lambda idx: HashIndex.from_arrays(16, ["a", "a"], np.zeros((2, 2), np.uint8)), "unique"),
    ],
)
def test_bad_arguments_raise_value_error(call, message: str) -> None:
    """Wrong code lengths, radii, k and shapes are ValueErrors with a clear message."""
    with pytest.raises(ValueError, match=message):
        call(HashIndex(16))


def test_readers_never_see_half_a_batch() -> None:
    """While one thread moves a whole group between buckets, each read sees it in one bucket."""
    group = [f"doc{i}" for i in range(300)]
    index = HashIndex(32)
    index.upsert(group, to_array([0] * len(group), 32))
    rounds = 60
    errors: list[str] = []
    stop = threading.Event()

    every_bucket = to_array([0, 1, 2], 32)

    def reader() -> None:
        while not stop.is_set():
            buckets = index.bucket_many(every_bucket)
            sizes = sorted(len(ids) for ids in buckets)
            if sizes != [0, 0, len(group)]:
                errors.append(f"bucket sizes {sizes}")
            near = index.nearest(to_bytes(0, 32), 1000)
            if len(near) != len(group) or len({hit[1] for hit in near}) != 1:
                errors.append(f"nearest saw {len(near)} hits at {sorted({h[1] for h in near})}")

    threads = [threading.Thread(target=reader) for _ in range(3)]
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often so a torn read would be caught
    try:
        for thread in threads:
            thread.start()
        with mock.patch.object(hash_index, "MIN_DELTA_BEFORE_MERGE", 0):
            for step in range(rounds):
                index.upsert(group, to_array([step % 3] * len(group), 32))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        sys.setswitchinterval(switch_interval)
    assert not errors, errors[:5]
    assert index.bucket(to_bytes((rounds - 1) % 3, 32)) == group


@pytest.mark.parametrize("bits", [16, 64, 128])
def test_large_index_matches_numpy_oracle(bits: int) -> None:
    """At 40 k skewed codes with removals and moves, default probing/scanning stays exact."""
    rng = np.random.default_rng(bits)
    n = 40_000
    centres = rng.integers(0, 256, size=(50, bits // 8), dtype=np.uint8)
    flips = np.packbits(rng.random((n, bits)) < 2 / bits, axis=1)
    codes = centres[rng.integers(0, len(centres), size=n)] ^ flips
    ids = [f"d{i}" for i in range(n)]
    index = HashIndex.from_arrays(bits, ids, codes)
    removed = rng.choice(n, size=500, replace=False)
    index.remove([ids[i] for i in removed])
    moved = rng.choice(np.setdiff1d(np.arange(n), removed), size=500, replace=False)
    codes[moved] = rng.integers(0, 256, size=(len(moved), bits // 8), dtype=np.uint8)
    index.upsert([ids[i] for i in moved], codes[moved])
    alive = np.ones(n, dtype=bool)
    alive[removed] = False
    queries = np.concatenate(
        [codes[:5], centres[:3], rng.integers(0, 256, (2, bits // 8), np.uint8)]
    )
    for query in queries:
        distances = np.bitwise_count(codes ^ query).sum(axis=1)
        distances[~alive] = bits + 1
        order = np.argsort(distances, kind="stable")
        for k in (1, 10, 1000):
            expected = [(ids[i], int(distances[i])) for i in order[:k]]
            assert index.nearest(query.tobytes(), k) == expected
        for radius in (0, 2):
            expected = [(ids[i], int(distances[i])) for i in order if distances[i] <= radius]
            assert index.ball(query.tobytes(), radius) == expected


def code_with_key(key: int) -> int:
    """The 64-bit code whose bucket key is `key`, by inverting the unit-triangular map bit by bit
    from the least significant one (input bit i changes output bits i and above only)."""
    code = 0
    for bit in range(64):
        if (bucket_key([code]) ^ key) >> bit & 1:
            code ^= 1 << bit
    assert bucket_key([code]) == key
    return code


@pytest.mark.parametrize("removed", [False, True])
def test_codes_sharing_a_tag_are_confirmed_one_by_one(removed: bool) -> None:
    """Two 64-bit codes whose keys differ only below the 32 tag bits share a run of equal tags:
    the table lists that run as mixed, probes check its candidates one by one (other runs once
    each), and stay exact."""
    rng = np.random.default_rng(5)
    first = int(rng.integers(0, 2**63))
    second = code_with_key(bucket_key([first]) ^ 1)
    others = [int(code) for code in rng.integers(0, 2**63, size=50)]
    codes = [first, second, first, second, *others]
    ids = [f"d{i}" for i in range(len(codes))]
    index = HashIndex.from_arrays(64, ids, to_array(codes, 64))
    assert index._main.mixed_runs.tolist() == [index._main.tags.tolist().index(tag_of(first))]
    oracle = OracleIndex()
    oracle.upsert(list(zip(ids, codes, strict=True)))
    if removed:
        index.remove(["d0"])
        oracle.remove(["d0"])
    check_against_oracle(index, oracle, [first, second, first ^ 1, second ^ 4])
    spread = HashIndex.from_arrays(64, ids[4:], to_array(others, 64))
    assert not len(spread._main.mixed_runs) and spread._confirm == kernels.CONFIRM_RUN


def tag_of(code: int) -> int:
    """The 32-bit tag of a one-word code's bucket key."""
    return bucket_key([code]) >> 32
