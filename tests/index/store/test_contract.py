"""The `DocumentStore` contract, run against every backend (SQLite file, PostgreSQL server):
atomic writes, insertion order, the change feed, model artifacts and training-job leases."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from docbits.index import HashIndex
from docbits.index.store import (
    ACTIVE_MODEL_SETTING,
    Change,
    Deleted,
    DocumentStore,
    DuplicateIdError,
    FeedGapError,
    FeedMovedError,
    JobRunningError,
    ModelArtifact,
    ModelChangedError,
    StoredDocument,
    StoreError,
)
from tests.index.store.conftest import ROOT, Backend, run_together

FP = "f" * 64


def doc(
    doc_id: str, code: int | None = None, text: str = "some text", **metadata
) -> StoredDocument:
    """A 16-bit-coded document (or an uncoded one when `code` is None)."""
    packed = None if code is None else code.to_bytes(2, "big")
    return StoredDocument(doc_id, text, metadata, packed, None if code is None else FP)


def stored_codes(store: DocumentStore) -> dict[str, tuple[bytes | None, str | None]]:
    """Every document's (code, fingerprint), read from the store in insertion order."""
    return {
        d.id: (d.code, d.fingerprint) for batch in store.iter_documents(batch_size=7) for d in batch
    }


def apply(state: dict[str, tuple[bytes | None, str | None]], changes: list[Change]) -> None:
    """Apply document changes to an id -> (code, fingerprint) map, in feed order (a new id goes
    last, an updated one keeps its place, as rows do in the index)."""
    for change in changes:
        if change.kind == "upsert":
            state[change.id] = (change.code, change.fingerprint)
        elif change.kind == "delete":
            state.pop(change.id, None)


# ---- documents ------------------------------------------------------------------------------


def test_round_trip_and_insertion_order(store: DocumentStore) -> None:
    """Documents come back as written, listed in insertion order; unknown ids are absent."""
    store.upsert([doc("b", 1, lang="en"), doc("a", 2, text="ünïcode"), doc("c")])
    assert store.count() == 3
    got = store.get("a")
    assert got is not None and got.text == "ünïcode" and got.code == b"\x00\x02"
    assert got.fingerprint == FP and got.metadata == {}
    assert store.get("b").metadata == {"lang": "en"}
    assert store.get("zzz") is None
    assert set(store.get_many(["a", "c", "zzz"])) == {"a", "c"}
    assert store.get_metadata(["b", "c", "zzz", "b"]) == {"b": {"lang": "en"}, "c": {}}
    assert store.existing_ids(["a", "zzz", "c"]) == {"a", "c"}
    assert [d.id for batch in store.iter_documents(batch_size=2) for d in batch] == ["b", "a", "c"]
    assert store.ids_without_code(FP) == ["c"]
    assert store.ids_without_code("other") == ["b", "a", "c"]


def forms_of(store: DocumentStore, fingerprint: str) -> dict[str, bytes]:
    """Every form `iter_codes` returns for `fingerprint`, by id."""
    return {
        doc_id: form.tobytes()
        for ids, _, forms in store.iter_codes(fingerprint)
        for doc_id, form in zip(ids, forms, strict=True)
    }


def test_rescoring_forms_are_written_with_their_codes(store: DocumentStore) -> None:
    """A form is read (by `iter_codes` and in the feed) with its model's code, zeros when the
    code came without one, and is replaced with it by a switch or `set_codes`."""
    form = bytes(range(16))
    store.upsert(
        [
            StoredDocument("a", "t", {}, b"\x00\x01", FP, form=form),
            StoredDocument("b", "t", {}, b"\x00\x02", FP),
            StoredDocument("c", "t", {}, b"\x00\x03", "other", form=form),
        ]
    )
    assert forms_of(store, FP) == {"a": form, "b": bytes(16)}
    assert [change.form for change in store.changes_since(0)] == [form, None, form]
    assert store.ids_without_code(FP) == ["c"]
    assert store.ids_without_code(FP, form=True) == ["b", "c"]
    forms = np.arange(48, dtype=np.int8).reshape(3, 16)
    store.switch_model("m2", ["a", "b", "c"], np.zeros((3, 2), np.uint8), forms)
    assert forms_of(store, FP) == {}
    assert forms_of(store, "m2") == {
        doc_id: row.tobytes() for doc_id, row in zip("abc", forms, strict=True)
    }
    seq = store.set_codes(["b"], np.ones((1, 2), np.uint8), "m2", forms=-forms[:1])
    assert forms_of(store, "m2")["b"] == (-forms[0]).tobytes()
    assert store.changes_since(seq - 1)[0].form == (-forms[0]).tobytes()
    assert store.ids_without_code("m2", form=True) == []
    with pytest.raises(ValueError, match="int8"):
        store.set_codes(["b"], np.ones((1, 2), np.uint8), "m2", forms=np.zeros((1, 8), np.int8))
    with pytest.raises(ValueError, match="needs a code"):
        store.upsert([StoredDocument("d", "t", {}, form=form)])
    with pytest.raises(ValueError, match="one byte per code bit"):
        store.upsert([StoredDocument("d", "t", {}, b"\x00\x01", FP, form=form[:8])])
    assert store.get("d") is None


def test_upsert_keeps_created_at_and_changes_updated_at(store: DocumentStore) -> None:
    """Rewriting an id updates its content and updated_at, not its created_at or its order."""
    store.upsert([doc("a", 1), doc("b", 2)])
    first = store.get("a")
    time.sleep(0.01)
    store.upsert([doc("a", 3, text="new")])
    second = store.get("a")
    assert second.text == "new" and second.code == b"\x00\x03"
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert [ids for ids, _, _ in store.iter_codes(FP)] == [["a", "b"]]


def test_a_repeated_id_keeps_its_first_place_and_last_content(store: DocumentStore) -> None:
    """Within one (not insert-only) batch, the last copy of an id wins, at the first's place."""
    store.upsert([doc("x", 1), doc("y", 2), doc("x", 3, text="last")])
    assert [d.id for batch in store.iter_documents() for d in batch] == ["x", "y"]
    assert store.get("x").text == "last" and store.get("x").code == b"\x00\x03"


def test_insert_only_rejects_existing_and_repeated_ids_writing_nothing(
    store: DocumentStore,
) -> None:
    """DuplicateIdError names the clashing ids and none of the batch is written."""
    store.upsert([doc("a", 1)])
    seq = store.last_seq()
    with pytest.raises(DuplicateIdError) as raised:
        store.upsert([doc("new1", 1), doc("a", 2)], insert_only=True)
    assert raised.value.ids == ["a"]
    with pytest.raises(DuplicateIdError) as raised:
        store.upsert([doc("new2", 1), doc("new2", 2)], insert_only=True)
    assert raised.value.ids == ["new2"]
    assert store.count() == 1 and store.get("a").code == b"\x00\x01"
    assert store.last_seq() == seq


def test_invalid_documents_write_nothing(store: DocumentStore) -> None:
    """A bad document anywhere in a batch is a ValueError and nothing of the batch is stored."""
    store.upsert([doc("keep", 1)])
    with pytest.raises(ValueError, match="JSON"):
        store.upsert([doc("x3", 1), doc("x4", 1, bad=float("nan"))])
    with pytest.raises(ValueError, match="UTF-8"):
        store.upsert([doc("x5", 1), doc("bad \ud800 id", 1)])
    with pytest.raises(ValueError, match="NUL"):
        store.upsert([doc("x6", 1), doc("nul", 1, text="a\x00b")])
    with pytest.raises(ValueError, match="together"):
        store.upsert([StoredDocument("x7", "t", {}, b"\x00\x01", None)])
    assert store.count() == 1 and store.last_seq() == 1
    store.upsert([doc("x8", 1, note="\ud800 and \x00 survive as JSON")])
    assert store.get("x8").metadata == {"note": "\ud800 and \x00 survive as JSON"}


def test_set_codes_and_switch_model_are_atomic(store: DocumentStore) -> None:
    """An unknown id aborts the whole code batch and leaves the active model unchanged."""
    store.upsert([doc("a"), doc("b")])
    codes = np.array([[0, 1], [0, 2]], dtype=np.uint8)
    with pytest.raises(StoreError, match="unknown"):
        store.switch_model("m2", ["a", "ghost"], codes)
    assert store.get_setting(ACTIVE_MODEL_SETTING) is None
    assert store.ids_without_code("m2") == ["a", "b"]
    assert store.last_seq() == 2
    store.switch_model("m2", ["a", "b"], codes)
    assert store.get_setting(ACTIVE_MODEL_SETTING) == "m2"
    ids, stored, _ = next(store.iter_codes("m2"))
    assert ids == ["a", "b"] and np.array_equal(stored, codes)
    store.set_codes(["b"], np.array([[7, 7]], dtype=np.uint8), "m3")
    assert store.ids_without_code("m2") == ["b"]
    with pytest.raises(ValueError, match="shape"):
        store.set_codes(["a", "b"], np.zeros((1, 2), np.uint8), "m2")


def test_delete_is_atomic_and_reports_existing(store: DocumentStore) -> None:
    """delete returns the ids that existed, in the order asked, and the feed position."""
    store.upsert([doc("a", 1), doc("b", 2), doc("c", 3)])
    deleted = store.delete(["c", "ghost", "a", "c"])
    assert deleted == Deleted(["c", "a"], 5)
    assert [d.id for batch in store.iter_documents() for d in batch] == ["b"]
    assert store.delete(["ghost"]) == Deleted([], 5)


def test_writes_survive_reopen_and_a_closed_store_refuses(backend: Backend) -> None:
    """Documents, settings and the feed are there for the next instance; a closed one refuses."""
    first = backend.open()
    first.upsert([doc("a", 1), doc("b", 2)])
    first.set_setting("colour", "blue")
    with pytest.raises(ValueError, match="switch_model"):
        first.set_setting(ACTIVE_MODEL_SETTING, FP)  # it would bypass the feed
    first.close()
    with pytest.raises(StoreError, match="closed"):
        first.count()
    second = backend.open()
    assert second.count() == 2 and second.get_setting("colour") == "blue"
    assert second.last_seq() == 2 and [c.id for c in second.changes_since(0)] == ["a", "b"]


WRITER = """
i = 0
while True:
    store.upsert([StoredDocument(f"doc{i}", "text " * 20, {"i": i})])
    print(i, flush=True)
    i += 1
"""


def test_acknowledged_writes_survive_sigkill(backend: Backend, tmp_path: Path) -> None:
    """Every upsert that returned before the writer was SIGKILLed is stored afterwards."""
    code = (
        "import sys\nfrom pathlib import Path\nfrom docbits.index.store import open_store, "
        "StoredDocument\nstore = open_store(sys.argv[1] or None, Path(sys.argv[2]))\n" + WRITER
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", code, *backend.args()], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    acknowledged = -1
    try:
        for line in writer.stdout:
            acknowledged = int(line)
            if acknowledged >= 30:
                break
    finally:
        writer.kill()
        writer.wait(timeout=30)
        writer.stdout.close()
    assert acknowledged >= 30
    reopened = backend.open()
    expected = {f"doc{i}" for i in range(acknowledged + 1)}
    assert reopened.count() >= acknowledged + 1
    assert reopened.existing_ids(sorted(expected)) == expected
    assert reopened.storage_errors() == []


def test_reload_equals_the_live_index(store: DocumentStore) -> None:
    """An index rebuilt from the store has the same ids, codes, order and answers."""
    rng = np.random.default_rng(3)
    live = HashIndex(16)
    for step in range(5):
        ids = [f"d{i}" for i in rng.choice(60, size=15, replace=False)]
        codes = rng.integers(0, 4, size=(15, 2), dtype=np.uint8)
        store.upsert(
            [StoredDocument(i, "t", {}, c.tobytes(), FP) for i, c in zip(ids, codes, strict=True)]
        )
        live.upsert(ids, codes)
        gone = [f"d{step}", f"d{step + 30}"]
        store.delete(gone)
        live.remove(gone)
    store.upsert([doc("uncoded")])
    reloaded = store.load_index(FP, 16)
    live_ids, live_codes = live.to_arrays()
    reloaded_ids, reloaded_codes = reloaded.to_arrays()
    assert reloaded_ids == live_ids and np.array_equal(reloaded_codes, live_codes)
    for query in (b"\x00\x00", b"\x03\x01"):
        assert reloaded.nearest(query, 20) == live.nearest(query, 20)
    assert store.integrity_check(reloaded, FP).ok


def test_integrity_check_finds_each_disagreement(store: DocumentStore) -> None:
    """Missing, extra and mismatched ids are each reported."""
    store.upsert([doc(f"d{i}", i) for i in range(10)])
    index = store.load_index(FP, 16)
    report = store.integrity_check(index, FP)
    assert report.ok and report.documents == report.indexed == 10
    index.remove(["d3"])
    index.upsert(["d5", "stray"], np.array([[0, 99], [0, 1]], dtype=np.uint8))
    report = store.integrity_check(index, FP)
    assert not report.ok
    assert (report.missing, report.extra, report.mismatched) == (["d3"], ["stray"], ["d5"])


def test_concurrent_writers_and_readers(store: DocumentStore) -> None:
    """Threads writing and reading at once lose nothing and never see an error."""
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(20):
                store.upsert([doc(f"w{worker}-{i}", i), doc(f"w{worker}-{i}b", i)])
                assert store.get(f"w{worker}-{i}") is not None
                store.count()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert store.count() == 4 * 20 * 2
    assert store.last_seq() == 4 * 20 * 2 and store.storage_errors() == []


# ---- the change feed ------------------------------------------------------------------------


def test_every_write_is_numbered_in_the_feed(store: DocumentStore) -> None:
    """Each changed document gets the next number, a switch one `model` change; each write
    returns its last number; reading pages through the feed in order."""
    assert store.last_seq() == 0 and store.changes_since(0) == []
    assert store.upsert([doc("a", 1), doc("b")]) == 2
    assert store.set_codes(["b"], np.array([[0, 9]], np.uint8), FP) == 3
    assert store.delete(["a", "ghost"]).seq == 4
    assert store.switch_model("m2", ["b"], np.array([[1, 1]], np.uint8)) == 5
    assert store.upsert([]) == 5 and store.last_seq() == 5
    changes = store.changes_since(0)
    assert [(c.seq, c.kind, c.id, c.code, c.fingerprint) for c in changes] == [
        (1, "upsert", "a", b"\x00\x01", FP),
        (2, "upsert", "b", None, None),
        (3, "upsert", "b", b"\x00\x09", FP),
        (4, "delete", "a", None, None),
        (5, "model", None, None, "m2"),
    ]
    assert all(abs(c.written_at - time.time()) < 60 for c in changes)
    assert store.changes_since(1, limit=2) == changes[1:3]
    assert store.changes_since(5) == []


class Follower:
    """What a serving process keeps: the active model and its index (id -> code), started cold
    (position first, then the model, then its codes) and kept up to date by the feed."""

    def __init__(self, store: DocumentStore) -> None:
        self.store = store
        self.position = store.last_seq()
        self.active = store.get_setting(ACTIVE_MODEL_SETTING)
        self.index = self.codes_of(self.active)

    def codes_of(self, fingerprint: str | None) -> dict[str, bytes]:
        if fingerprint is None:
            return {}
        return {
            doc_id: code.tobytes()
            for ids, codes, _ in self.store.iter_codes(fingerprint, batch_size=7)
            for doc_id, code in zip(ids, codes, strict=True)
        }

    def catch_up(self) -> None:
        while changes := self.store.changes_since(self.position, limit=5):
            for change in changes:
                if change.kind == "model":  # rebuild: the new model's codes, none of the old
                    self.active, self.index = change.fingerprint, self.codes_of(change.fingerprint)
                elif change.kind == "upsert" and change.fingerprint == self.active:
                    self.index[change.id] = change.code
                else:  # deleted, uncoded, or coded by another model: not searchable here
                    self.index.pop(change.id, None)
                self.position = change.seq


def test_followers_started_at_any_point_converge_on_the_store(store: DocumentStore) -> None:
    """Followers started cold between writes, across a model switch and stale writes of the
    old model, all end with the store's active model and exactly its codes."""
    rng = random.Random(5)
    store.switch_model(FP, [], np.zeros((0, 2), np.uint8))
    followers = [Follower(store)]
    model = FP
    for step in range(40):
        ids = [f"d{i}" for i in rng.sample(range(25), 4)]
        if rng.random() < 0.3:
            store.delete(ids[:2])
        else:
            fingerprint = model if rng.random() < 0.8 else "stale"
            code = rng.randrange(1 << 16).to_bytes(2, "big")
            docs = [StoredDocument(i, "t", {}, code, fingerprint) for i in ids]
            store.upsert(docs + ([doc("uncoded")] if step % 10 == 3 else []))
        if step == 25:  # re-encode everything with the new model, then switch
            everyone = [d.id for batch in store.iter_documents() for d in batch]
            codes = np.array([[7, n % 256] for n in range(len(everyone))], np.uint8)
            store.switch_model("m2", everyone, codes)
            model = "m2"
        followers.append(Follower(store))
        if step % 7 == 0:
            followers[step // 2].catch_up()
    fresh = Follower(store)
    assert fresh.active == "m2" and len(fresh.index) > 5
    for follower in followers:
        follower.catch_up()
        assert (follower.active, follower.index) == (fresh.active, fresh.index)


def test_check_model_refuses_codes_of_another_model(store: DocumentStore) -> None:
    """With check_model, a write whose codes are not the active model's writes nothing."""
    store.upsert([doc("plain")], check_model=True)  # no model yet, no code: fine
    with pytest.raises(ModelChangedError, match="active model is now none"):
        store.upsert([doc("coded", 1)], check_model=True)
    store.switch_model(FP, ["plain"], np.array([[0, 1]], np.uint8))
    store.upsert([doc("coded", 1)], check_model=True)
    seq = store.last_seq()
    with pytest.raises(ModelChangedError) as raised:
        store.upsert([doc("stale", 2), StoredDocument("s2", "t", {}, b"\x00\x02", "old")],
                     check_model=True)  # fmt: skip
    assert (raised.value.written, raised.value.active) == ("old", FP)
    with pytest.raises(ModelChangedError):
        store.set_codes(["coded"], np.array([[9, 9]], np.uint8), "old", check_model=True)
    assert store.existing_ids(["stale", "s2"]) == set() and store.get("coded").code == b"\x00\x01"
    assert store.last_seq() == seq
    assert store.set_codes(["coded"], np.array([[9, 9]], np.uint8), FP, check_model=True) > seq


def test_a_switch_conditioned_on_the_feed_refuses_once_it_moved(store: DocumentStore) -> None:
    """`switch_model(expect_seq=N)` writes nothing once any change landed after N, so codes
    computed as of N cannot miss a document written meanwhile."""
    seq = store.upsert([doc("a", 1), doc("b", 2)])
    codes = np.array([[7, 7], [8, 8]], np.uint8)
    store.upsert([doc("late", 3)])
    with pytest.raises(FeedMovedError) as raised:
        store.switch_model("m2", ["a", "b"], codes, expect_seq=seq)
    assert (raised.value.expected, raised.value.actual) == (seq, seq + 1)
    assert store.get_setting(ACTIVE_MODEL_SETTING) is None and store.last_seq() == seq + 1
    assert store.get("a").code == b"\x00\x01"
    everyone = np.array([[7, 7], [8, 8], [9, 9]], np.uint8)
    switched = store.switch_model("m2", ["a", "b", "late"], everyone, expect_seq=seq + 1)
    assert switched == seq + 2 and store.ids_without_code("m2") == []


def test_compacted_or_restored_feed_raises_a_gap(store: DocumentStore) -> None:
    """Reading from below the compacted part, or from beyond the newest change, is FeedGapError;
    from the compaction point on the feed reads as before."""
    for i in range(6):
        store.upsert([doc(f"d{i}", i)])
    assert store.compact_feed(4) == 3
    assert store.compact_feed(2) == 0  # never moves back
    with pytest.raises(FeedGapError, match="compacted"):
        store.changes_since(2)
    assert [c.seq for c in store.changes_since(3)] == [4, 5, 6]
    with pytest.raises(FeedGapError, match="beyond"):
        store.changes_since(7)
    assert store.compact_feed(100) == 3  # capped at the newest: the feed is empty, not broken
    assert store.changes_since(6) == [] and store.storage_errors() == []
    store.upsert([doc("after", 1)])
    assert [c.id for c in store.changes_since(6)] == ["after"]
    assert store.count() == 7


def test_a_listener_wakes_on_another_instances_write(backend: Backend) -> None:
    """A write through one store instance wakes a listener made from another; silence times out."""
    follower, writer = backend.open(), backend.open()
    with follower.change_listener() as listener:
        started = time.monotonic()
        assert listener.wait(0.2) is False
        assert time.monotonic() - started >= 0.19
        threading.Timer(0.1, lambda: writer.upsert([doc("a", 1)])).start()
        started = time.monotonic()
        assert listener.wait(10) is True
        assert time.monotonic() - started < 5
        assert [c.id for c in follower.changes_since(0)] == ["a"]


FEED_WRITER = """
import random
from docbits.index.store import StoredDocument
worker, rounds = int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(worker)
for number in range(rounds):
    ids = [f"d{i}" for i in rng.sample(range(40), 4)]
    if rng.random() < 0.25:
        deleted = store.delete(ids[:2])
        print(deleted.seq, len(deleted.ids), flush=True)
    else:
        code = bytes([worker, number % 256])
        fresh = f"new-{worker}-{number}"  # always new: insertion order is at stake too
        docs = [StoredDocument(i, f"{worker}/{number}", {}, code, "fp") for i in [*ids, fresh]]
        print(store.upsert(docs), len(docs), flush=True)
store.close()
"""


def test_concurrent_writer_processes_feed_in_commit_order(backend: Backend, tmp_path: Path) -> None:
    """Writers in three OS processes hit overlapping ids while this process follows the feed:
    it sees every number once, in order, with no hole, and ends holding exactly the store, in
    the store's insertion order (so its index ranks ties as a freshly loaded one would)."""
    follower = backend.open()
    applied = 0
    state: dict[str, tuple[bytes | None, str | None]] = {}
    listener = follower.change_listener()
    outputs: list[str] = []
    runner = threading.Thread(
        target=lambda: outputs.extend(
            run_together(FEED_WRITER, backend, [[str(w), "120"] for w in range(3)], tmp_path / "go")
        )
    )
    runner.start()
    try:
        while True:
            writing = runner.is_alive()
            listener.wait(0.05)
            while changes := follower.changes_since(applied, limit=25):
                for change in changes:
                    assert change.seq == applied + 1, (applied, change)
                    apply(state, [change])
                    applied = change.seq
            if not writing:
                break
    finally:
        runner.join()
        listener.close()
    returned = [tuple(map(int, line.split())) for out in outputs for line in out.splitlines()]
    assert len(returned) == 3 * 120
    changing = [seq for seq, changed in returned if changed]
    assert len(set(changing)) == len(changing)  # no two writes end at the same number
    assert applied == follower.last_seq() == max(changing)
    assert state == stored_codes(follower)
    assert list(state) == [d.id for batch in follower.iter_documents() for d in batch]
    replayed: dict[str, tuple[bytes | None, str | None]] = {}
    apply(replayed, follower.changes_since(0, limit=10**6))
    assert replayed == state
    assert follower.storage_errors() == []


# ---- model artifacts ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (untrained) 16-bit Hasher saved as its three files."""
    from docbits.model.autoencoders import build_autoencoder
    from docbits.model.featurizer import Featurizer
    from docbits.model.hasher import Hasher
    from tests.synthetic import topical_documents

    texts = [d["text"] for d in topical_documents(40, seed=1)]
    featurizer = Featurizer.fit(texts, min_df=1)
    model = build_autoencoder("undercomplete", len(featurizer), 16, hidden_sizes=(8,))
    directory = tmp_path_factory.mktemp("model")
    Hasher(featurizer, model, "undercomplete").save(directory)
    return directory


def test_a_model_stored_by_one_instance_loads_in_another(
    backend: Backend, model_dir: Path, tmp_path: Path
) -> None:
    """put_model then get_model elsewhere gives the same files; Hasher loads them and encodes
    the same codes as the original."""
    from docbits.model.hasher import Hasher

    artifact = ModelArtifact.from_directory(model_dir)
    first, second = backend.open(), backend.open()
    assert first.get_model(artifact.fingerprint) is None
    assert not second.has_model(artifact.fingerprint)
    first.put_model(artifact)
    first.put_model(artifact)  # again: a no-op
    assert second.has_model(artifact.fingerprint) and not second.has_model("0" * 64)
    fetched = second.get_model(artifact.fingerprint)
    assert fetched == artifact
    loaded = Hasher.load(fetched.write_to(tmp_path / "fetched"))
    original = Hasher.load(model_dir)
    assert loaded.fingerprint == original.fingerprint == artifact.fingerprint
    texts = ["orbit launch shuttle", "puck goalie rink season"]
    assert np.array_equal(loaded.encode(texts), original.encode(texts))


def test_a_model_whose_weights_do_not_match_its_fingerprint_is_refused(
    store: DocumentStore,
) -> None:
    """put_model checks the weights' sha256 against the fingerprint before storing."""
    artifact = ModelArtifact("0" * 64, "{}", "{}", b"not the weights")
    with pytest.raises(ValueError, match="sha256"):
        store.put_model(artifact)
    assert store.get_model("0" * 64) is None


# ---- training-job leases --------------------------------------------------------------------


def test_a_job_lease_is_claimed_renewed_and_finished(store: DocumentStore) -> None:
    """One running job at a time; its owner renews and finishes it; others cannot."""
    job = store.claim_training_job("j1", {"bits": 32}, "alpha", lease_s=60)
    assert (job.status, job.owner, job.config) == ("running", "alpha", {"bits": 32})
    assert job.lease_expires_at > time.time() + 30
    with pytest.raises(JobRunningError) as raised:
        store.claim_training_job("j2", {}, "beta", lease_s=60)
    assert raised.value.job.id == "j1"
    assert store.renew_training_job("j1", "beta", 60) is False  # not the owner
    assert store.renew_training_job("j1", "alpha", 60, {"epoch": 3}, documents=120)
    assert store.finish_training_job("j1", "beta", "succeeded") is False
    with pytest.raises(ValueError, match="succeeded"):
        store.finish_training_job("j1", "alpha", "paused")
    assert store.finish_training_job("j1", "alpha", "succeeded", fingerprint=FP)
    done = store.get_training_job("j1")
    assert (done.status, done.progress, done.documents, done.fingerprint) == (
        "succeeded",
        {"epoch": 3},
        120,
        FP,
    )
    assert done.finished_at is not None and store.running_training_job() is None
    assert store.finish_training_job("j1", "alpha", "failed") is False
    with pytest.raises(StoreError, match="exists"):
        store.claim_training_job("j1", {}, "alpha", lease_s=60)
    assert store.claim_training_job("j2", {}, "beta", lease_s=60).status == "running"


def test_an_expired_lease_fails_its_job_and_frees_the_slot(store: DocumentStore) -> None:
    """A job whose owner stopped renewing is failed, naming the owner, and a new one can start."""
    store.claim_training_job("dead", {}, "gone-process", lease_s=0.2)
    assert store.expire_training_jobs() == []
    time.sleep(0.3)
    assert store.renew_training_job("dead", "gone-process", 60) is False
    assert store.running_training_job().id == "dead"  # nobody noticed yet
    fresh = store.claim_training_job("next", {}, "alive", lease_s=60)
    dead = store.get_training_job("dead")
    assert dead.status == "failed" and "gone-process" in dead.error and dead.finished_at
    assert fresh.status == "running" and store.running_training_job().id == "next"
    assert store.finish_training_job("dead", "gone-process", "succeeded") is False
    store.expire_training_jobs()
    assert store.get_training_job("next").status == "running"


CLAIMER = """
from docbits.index.store import JobRunningError
worker = sys.argv[4]
try:
    store.claim_training_job(f"job-{worker}", {"worker": worker}, f"owner-{worker}", 60)
    print("won")
except JobRunningError:
    print("lost")
"""


def test_racing_claims_in_several_processes_elect_one_job(backend: Backend, tmp_path: Path) -> None:
    """Four processes claim at the same moment: exactly one job runs, the others are refused."""
    outputs = run_together(CLAIMER, backend, [[str(w)] for w in range(4)], tmp_path / "go")
    assert sorted(out.strip() for out in outputs) == ["lost", "lost", "lost", "won"]
    winner = outputs.index("won\n")
    running = backend.open().running_training_job()
    assert running is not None and running.owner == f"owner-{winner}"


INSERTER = """
from docbits.index.store import DuplicateIdError, StoredDocument
try:
    store.upsert([StoredDocument(f"id{i}", sys.argv[4], {}) for i in range(50)], insert_only=True)
    print("inserted")
except DuplicateIdError as error:
    print("duplicate", len(error.ids))
"""


def test_racing_insert_only_writes_of_the_same_ids_let_one_through(
    backend: Backend, tmp_path: Path
) -> None:
    """Three processes insert the same new ids at once: one batch lands whole, the others are
    DuplicateIdError naming every id, and the feed holds that one batch."""
    outputs = run_together(INSERTER, backend, [[str(w)] for w in range(3)], tmp_path / "go")
    assert sorted(out.strip() for out in outputs) == ["duplicate 50", "duplicate 50", "inserted"]
    store = backend.open()
    winner = str(outputs.index("inserted\n"))
    assert {d.text for batch in store.iter_documents() for d in batch} == {winner}
    assert store.last_seq() == 50 and store.storage_errors() == []
