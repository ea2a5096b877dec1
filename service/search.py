"""Search: one query code to a page of ranked (id, distance) hits, and the metadata filter.

The filter reads the candidates' metadata from the store in batches (no per-document metadata is
kept in memory), so a filtered search costs a store read per chunk of candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from docbits.index.hash_index import Keep
from docbits.index.store import DocumentStore
from docbits.service.models import ActiveModel


@dataclass(frozen=True)
class Ranked:
    """One query's outcome before documents are fetched: its code, candidates, the page."""

    query_code: bytes
    candidates: int
    page: list[tuple[str, int]]


def rank(
    active: ActiveModel,
    code: bytes,
    *,
    radius: int,
    limit: int,
    offset: int,
    nearest: bool,
    keep: Keep | None,
) -> Ranked:
    """Collect candidates for one code (bucket, ball or nearest) and cut out the page."""
    index = active.index
    if nearest:
        found = index.nearest(code, offset + limit, keep=keep)
    elif radius == 0:
        found = [(doc_id, 0) for doc_id in index.bucket(code, keep=keep)]
    else:
        found = index.ball(code, radius, keep=keep)
    return Ranked(code, len(found), found[offset : offset + limit])


def matches(metadata: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Each wanted key's value (or any item of a list of wanted values) is the document's value,
    or an item of it when the document's value is a list."""
    for key, value in wanted.items():
        if key not in metadata:
            return False
        choices = value if isinstance(value, list) else [value]
        held = metadata[key]
        if isinstance(held, list):
            if not any(item in choices for item in held):
                return False
        elif held not in choices:
            return False
    return True


def metadata_keep(
    store: DocumentStore, wanted: dict[str, Any] | None, exclude: str | None = None
) -> Keep | None:
    """The index filter for a metadata filter (read from the store), leaving out `exclude`."""
    if not wanted and exclude is None:
        return None

    def keep(ids: list[str]) -> list[bool]:
        metadata = (
            store.get_metadata([doc_id for doc_id in ids if doc_id != exclude]) if wanted else {}
        )
        return [
            doc_id != exclude and (not wanted or matches(metadata.get(doc_id, {}), wanted))
            for doc_id in ids
        ]

    return keep
