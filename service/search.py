"""Search: one query code to a page of ranked hits, rescoring, and the metadata filter.

A `nearest` search with the query's rescoring form re-ranks the first `RESCORE_OVERSAMPLE` ×
`limit` candidates of the codes by their forms (`docbits.model.rescore`), as Qdrant's
binary quantization and FAISS's refine step do; candidates past that window follow in Hamming
order, like Elasticsearch's rescore window, so pages of one `limit` never overlap. The
candidates' forms are held by the index beside their codes; the filter reads the candidates'
metadata from the store (nothing else per document is kept in memory), a store read per chunk
of candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from docbits.index.hash_index import Keep
from docbits.index.store import DocumentStore
from docbits.model.rescore import DEFAULT_OVERSAMPLE, rescore
from docbits.service.models import ActiveModel

RESCORE_OVERSAMPLE = DEFAULT_OVERSAMPLE


@dataclass(frozen=True)
class Ranked:
    """One query's outcome before documents are fetched: its code, how many candidates were
    found, and the page as (id, distance, rescoring score or None)."""

    query_code: bytes
    candidates: int
    page: list[tuple[str, int, float | None]]


def rank(
    active: ActiveModel,
    code: bytes,
    *,
    radius: int,
    limit: int,
    offset: int,
    nearest: bool,
    keep: Keep | None,
    form: np.ndarray | None = None,
) -> Ranked:
    """Collect candidates for one code (bucket, ball or nearest) and cut out the page; a
    nearest search given the query's packed `form` is rescored within its window."""
    index = active.index
    wanted = offset + limit
    if nearest and form is not None:
        window = RESCORE_OVERSAMPLE * limit
        found, forms = index.nearest_with_forms(code, max(window, wanted), keep=keep)
        ranked = rescored(form, found[:window], forms[:window]) + [
            (doc_id, distance, None) for doc_id, distance in found[window:wanted]
        ]
    else:
        if nearest:
            found = index.nearest(code, wanted, keep=keep)
        elif radius == 0:
            found = [(doc_id, 0) for doc_id in index.bucket(code, keep=keep)]
        else:
            found = index.ball(code, radius, keep=keep)
        ranked = [(doc_id, distance, None) for doc_id, distance in found]
    return Ranked(code, len(found), ranked[offset:wanted])


def rescored(
    form: np.ndarray, found: list[tuple[str, int]], forms: np.ndarray
) -> list[tuple[str, int, float | None]]:
    """`found` re-ranked by the cosine of each candidate's packed form (`forms`, row by row)
    with the query's; a candidate without a form (all zeros: written by an older process) comes
    last."""
    present = forms.any(axis=1)
    flags = present.tolist()
    with_form = [hit for hit, has in zip(found, flags, strict=True) if has]
    without: list[tuple[str, int, float | None]] = [
        (*hit, None) for hit, has in zip(found, flags, strict=True) if not has
    ]
    order, scores = rescore(form, forms[present], len(with_form))
    ranked: list[tuple[str, int, float | None]] = [
        (*with_form[position], score)
        for position, score in zip(order.tolist(), scores.tolist(), strict=True)
    ]
    return ranked + without


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
