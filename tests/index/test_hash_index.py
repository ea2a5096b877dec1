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

from docbits.index import hash_index
from docbits.index.bucket_table import bucket_key
from docbits.index.hash_index import HashIndex
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


def kept(doc_id: str) -> bool:
    """A deterministic metadata-style filter that drops about half the ids."""
    return sum(map(ord, doc_id)) % 2 == 0


def keep_some(ids: list[str]) -> list[bool]:
    """`kept` as the index takes it: one answer per id of a batch."""
    return [kept(doc_id) for doc_id in ids]


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


def check_against_oracle(index: HashIndex, oracle: OracleIndex, queries: list[int]) -> None:
    """Every query form of `index` equals the oracle's answer."""
    bits = index.bits
    assert len(index) == len(oracle.entries)
    for doc_id in ID_POOL:
        assert (doc_id in index) == (doc_id in oracle.entries)
        expected = oracle.entries.get(doc_id)
        assert index.code_of(doc_id) == (None if expected is None else to_bytes(expected[1], bits))
    for radius in (0, 1, 2, 3):
        for q in queries:
            expected = oracle.ball(q, radius)
            assert index.ball(to_bytes(q, bits), radius) == expected
            assert index.ball(to_bytes(q, bits), radius, keep_some) == oracle.ball(q, radius, kept)
    for q in queries:
        assert index.bucket(to_bytes(q, bits)) == [i for i, _ in oracle.ball(q, 0)]
        assert index.bucket(to_bytes(q, bits), keep_some) == [i for i, _ in oracle.ball(q, 0, kept)]
    for k in (1, 3, 20):
        for q in queries:
            assert index.nearest(to_bytes(q, bits), k) == oracle.nearest(q, k)
            assert index.nearest(to_bytes(q, bits), k, keep_some) == oracle.nearest(q, k, kept)


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


def test_forms_follow_their_documents() -> None:
    """Each document's packed form comes back with it from `nearest_with_forms` and `form_of`,
    through moves, growth past the first capacity, a bulk build and removals; a document
    written without a form has zeros."""
    bits, count = 16, 3000
    ids = [f"d{i}" for i in range(count)]
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, size=(count, 2)).astype(np.uint8)
    forms = rng.integers(0, 256, size=(count, 8)).astype(np.uint8)
    grown = HashIndex(bits)
    for start in range(0, count, 700):
        grown.upsert(
            ids[start : start + 700], codes[start : start + 700], forms[start : start + 700]
        )
    built = HashIndex.from_arrays(bits, ids, codes, forms)
    for index in (grown, built):
        index.upsert(["d5", "d6"], np.zeros((2, 2), np.uint8), forms[:2])  # moved, new forms
        index.upsert(["plain"], np.zeros((1, 2), np.uint8))
        index.remove(["d7"])
        expected = {doc_id: forms[row] for row, doc_id in enumerate(ids)}
        expected.update({"d5": forms[0], "d6": forms[1], "plain": np.zeros(8, np.uint8)})
        for query in (bytes(2), codes[9].tobytes()):
            for keep in (None, keep_some):
                hits, hit_forms = index.nearest_with_forms(query, 50, keep)
                assert hits == index.nearest(query, 50, keep)
                assert hit_forms.shape == (len(hits), 8)
                for (doc_id, _), form in zip(hits, hit_forms, strict=True):
                    np.testing.assert_array_equal(form, expected[doc_id])
        np.testing.assert_array_equal(index.form_of("d5"), forms[:1])
        assert index.form_of("d7") is None and not index.form_of("plain").any()
    with pytest.raises(ValueError, match="packed forms"):
        HashIndex(bits).upsert(["a"], codes[:1], np.zeros((1, 4), np.uint8))


WARM_UP_CHECK = """
import sys
from docbits.index import hash_index, kernels
hash_index.HashIndex(int(sys.argv[1])).warm_up()
kernels_used = {
    "probe": kernels.probe,
    "distances": kernels.distances,
    "smallest_rows": kernels.smallest_rows,
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

    def reader() -> None:
        while not stop.is_set():
            for code in (0, 1, 2):
                size = len(index.bucket(to_bytes(code, 32)))
                if size not in (0, len(group)):
                    errors.append(f"bucket {code} held {size}")
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
def test_long_codes_sharing_a_bucket_key_are_told_apart(removed: bool) -> None:
    """The key of a 128-bit code is a hash of its two words: two codes with one key share a run
    of the bucket table, and probes confirm each candidate's code."""
    rng = np.random.default_rng(5)
    high, low, other_low = (int(word) for word in rng.integers(0, 2**63, size=3))
    first = high << 64 | low
    second_high = code_with_key(bucket_key([high, low]) ^ bucket_key([0, other_low]))
    second = second_high << 64 | other_low
    assert first != second and bucket_key([high, low]) == bucket_key([second_high, other_low])
    others = [int(code) for code in rng.integers(0, 2**63, size=50)]
    codes = [first, second, first, second, *others]
    ids = [f"d{i}" for i in range(len(codes))]
    index = HashIndex.from_arrays(128, ids, to_array(codes, 128))
    oracle = OracleIndex()
    oracle.upsert(list(zip(ids, codes, strict=True)))
    if removed:
        index.remove(["d0"])
        oracle.remove(["d0"])
    check_against_oracle(index, oracle, [first, second, first ^ 1, second ^ 4])
