"""Switching models while other processes write: nothing written meanwhile keeps an old code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from docbits.index.store import ACTIVE_MODEL_SETTING, SQLiteStore, StoredDocument
from docbits.service.models import load_hasher, switch_to


class RacedStore(SQLiteStore):
    """A store another process writes to at the worst moments of a switch: while its codes are
    being computed, and just before each of its first `refusals` flips."""

    def __init__(self, path: Path, old: Any, refusals: int) -> None:
        super().__init__(path)
        self.old, self.refusals = old, refusals
        self.raced = 0

    def write_as_another_process(self) -> None:
        self.raced += 1
        texts = [f"late orbit shuttle {self.raced}", "rewritten puck goal"]
        codes = self.old.encode(texts)
        self.upsert(
            [
                StoredDocument(
                    f"late{self.raced}", texts[0], {}, bytes(codes[0]), self.old.fingerprint
                ),
                StoredDocument("d1", texts[1], {}, bytes(codes[1]), self.old.fingerprint),
            ],
            check_model=True,
        )
        self.delete(["d2"])

    def get_many(self, ids: Any) -> Any:
        if self.raced == 0:
            self.write_as_another_process()
        return super().get_many(ids)

    def switch_model(self, *args: Any, **kwargs: Any) -> int:
        if self.refusals > 0:
            self.refusals -= 1
            self.write_as_another_process()
        return super().switch_model(*args, **kwargs)


def test_a_switch_encodes_what_other_processes_write_meanwhile(
    tmp_path: Path, model_dir: Path, other_model_dir: Path, corpus: list[dict[str, Any]]
) -> None:
    old, new = load_hasher(model_dir), load_hasher(other_model_dir)
    store = RacedStore(tmp_path / "docbits.sqlite3", old, refusals=0)
    try:
        texts = [doc["text"] for doc in corpus[:30]]
        store.switch_model(old.fingerprint, [], np.zeros((0, 2), np.uint8))
        codes = old.encode(texts)
        store.upsert(
            [
                StoredDocument(f"d{i}", text, {}, bytes(codes[i]), old.fingerprint)
                for i, text in enumerate(texts)
            ]
        )
        store.refusals = 2
        seq = switch_to(store, new, encode_batch_size=7)
        assert store.raced == 3  # while encoding, then before each of two refused flips
        assert store.get_setting(ACTIVE_MODEL_SETTING) == new.fingerprint
        assert store.ids_without_code(new.fingerprint, form=True) == []  # codes and forms
        assert store.last_seq() == seq and store.get("d2") is None
        everyone = {doc.id: doc for batch in store.iter_documents() for doc in batch}
        assert len(everyone) == 30 - 1 + 3
        for doc in everyone.values():
            assert doc.code == bytes(new.encode([doc.text])[0]), doc.id
    finally:
        store.close()
