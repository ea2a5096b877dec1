"""Search: one query code to a page of ranked hits, rescoring, and the metadata filter.

A `nearest` search with the query's rescoring form re-ranks the first `RESCORE_OVERSAMPLE` ×
`limit` candidates of the codes by their stored forms (`docbits.model.rescore`), as Qdrant's
binary quantization and FAISS's refine step do; candidates past that window follow in Hamming
order, like Elasticsearch's rescore window, so pages of one `limit` never overlap. The filter
and the rescoring read the candidates' metadata and forms from the store (nothing per document
is kept in memory besides the index), so they cost a store read per chunk of candidates.
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
    store: DocumentStore | None = None,
    form: np.ndarray | None = None,
) -> Ranked:
    """Collect candidates for one code (bucket, ball or nearest) and cut out the page; a
    nearest search given the query's `form` (and the `store` holding the documents' forms) is
    rescored within its window."""
    index = active.index
    wanted = offset + limit
    if nearest and form is not None and store is not None:
        window = RESCORE_OVERSAMPLE * limit
        found = index.nearest(code, max(window, wanted), keep=keep)
        ranked = rescored(active, store, form, found[:window]) + [
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
    active: ActiveModel, store: DocumentStore, form: np.ndarray, found: list[tuple[str, int]]
) -> list[tuple[str, int, float | None]]:
    """`found` re-ranked by the cosine of each candidate's stored form with the query's; a
    candidate whose form is missing (written meanwhile by an older process) comes last."""
    forms = store.get_forms([doc_id for doc_id, _ in found], active.fingerprint)
    with_form = [hit for hit in found if hit[0] in forms]
    stacked = np.frombuffer(b"".join(forms[doc_id] for doc_id, _ in with_form), dtype=np.int8)
    order, scores = rescore(form, stacked.reshape(len(with_form), active.bits), len(with_form))
    ranked: list[tuple[str, int, float | None]] = [
        (*with_form[position], score)
        for position, score in zip(order.tolist(), scores.tolist(), strict=True)
    ]
    return ranked + [(doc_id, distance, None) for doc_id, distance in found if doc_id not in forms]


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
