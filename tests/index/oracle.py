"""Brute-force reference model of the hash index, used by the property tests."""

from __future__ import annotations

from collections.abc import Callable


class OracleIndex:
    """Dict of id → (insertion row, code as int); every query scans everything."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[int, int]] = {}
        self.next_row = 0

    def upsert(self, pairs: list[tuple[str, int]]) -> None:
        """Apply pairs in order: a known id keeps its row, a new id takes the next one."""
        for doc_id, code in pairs:
            if doc_id in self.entries:
                self.entries[doc_id] = (self.entries[doc_id][0], code)
            else:
                self.entries[doc_id] = (self.next_row, code)
                self.next_row += 1

    def remove(self, ids: list[str]) -> int:
        """Delete ids; re-adding one later gives it a new row."""
        return sum(self.entries.pop(doc_id, None) is not None for doc_id in set(ids))

    def ranked(self, code: int, keep: Callable[[str], bool] | None = None) -> list[tuple[str, int]]:
        """Every (id, distance) ordered by (distance, row)."""
        scored = sorted(
            ((code ^ other).bit_count(), row, doc_id)
            for doc_id, (row, other) in self.entries.items()
            if keep is None or keep(doc_id)
        )
        return [(doc_id, dist) for dist, _, doc_id in scored]

    def ball(self, code: int, radius: int, keep: Callable[[str], bool] | None = None):
        """Ids within `radius`, ranked."""
        return [hit for hit in self.ranked(code, keep) if hit[1] <= radius]

    def nearest(self, code: int, k: int, keep: Callable[[str], bool] | None = None):
        """The first k ranked ids."""
        return self.ranked(code, keep)[:k]
