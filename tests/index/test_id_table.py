"""The compact id table: rows in insertion order, lookups, and ids read back in bulk."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docbits.index.id_table import IdTable


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
    """Any Unicode ids, built in bulk or one by one, come back for any rows, repeats included,
    as a list or an array."""
    rows = data.draw(st.lists(st.integers(0, len(ids) - 1), max_size=24))
    grown = IdTable()
    for doc_id in ids:
        grown.add(doc_id)
    for table in (IdTable.from_ids(ids), grown):
        assert table.ids_of(rows) == [ids[row] for row in rows]
        assert table.ids_of(np.array(rows, dtype=np.int64)) == [ids[row] for row in rows]
