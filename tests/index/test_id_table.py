"""The compact id table: rows in insertion order, lookups, and ids read back in bulk."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docbits.index.id_table import SMALL_LOOKUP, IdTable


def test_id_table_add_find_discard_and_bulk() -> None:
    """Rows are insertion order, survive growth and tombstones; bulk build rejects duplicates."""
    ids = [f"id-{i}" for i in range(3000)] + ["ü", "x" * 300, "lone \ud800 surrogate"]
    table = IdTable(capacity=4)
    assert [table.add(i) for i in ids] == list(range(len(ids)))
    for doc_id in ids[::3]:
        assert table.discard(doc_id) == ids.index(doc_id)
    assert table.discard(ids[0]) == -1
    assert [table.find(i) for i in ids] == [-1 if n % 3 == 0 else n for n in range(len(ids))]
    assert len(table) == len(ids) - len(ids[::3])
    assert table.add(ids[0]) == len(ids)
    assert table.ids_of([1, len(ids) - 1, len(ids)]) == [ids[1], ids[-1], ids[0]]
    bulk = IdTable.from_ids(ids)
    assert [bulk.find(i) for i in ids] == list(range(len(ids)))
    assert bulk.find("missing") == -1
    with pytest.raises(ValueError, match="unique"):
        IdTable.from_ids(["a", "b", "a"])


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=40, unique=True),
    data=st.data(),
)
def test_ids_of_reads_back_any_ids_in_any_order(ids: list[str], data: st.DataObject) -> None:
    """Any Unicode ids (the ASCII fast path and the per-id path), built in bulk or one by one,
    come back for any rows, repeats included, as a list or an array."""
    rows = data.draw(st.lists(st.integers(0, len(ids) - 1), max_size=3 * SMALL_LOOKUP))
    grown = IdTable()
    for doc_id in ids:
        grown.add(doc_id)
    for table in (IdTable.from_ids(ids), grown):
        assert table.ids_of(rows) == [ids[row] for row in rows]
        assert table.ids_of(np.array(rows, dtype=np.int64)) == [ids[row] for row in rows]


def test_one_non_ascii_id_turns_off_the_ascii_path_for_good() -> None:
    """An id whose bytes hold the separator byte (0x80 in UTF-8) reads back whole, even after
    it is removed (its bytes stay)."""
    ids = [f"doc-{i}" for i in range(20)]
    table = IdTable.from_ids(ids)
    assert table.ids_of(range(20)) == ids
    table.add("\u0100")  # UTF-8 c4 80
    table.discard("\u0100")
    assert table.ids_of([*range(20), 20]) == [*ids, "\u0100"]
    assert IdTable.from_ids(["\u0100", *ids]).ids_of(range(21)) == ["\u0100", *ids]
