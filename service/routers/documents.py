"""`/v1/documents`: batch upsert, read one, delete one or many."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from docbits.index.codes import code_to_hex
from docbits.service.auth import require_read, require_write
from docbits.service.errors import ApiError
from docbits.service.routers import service_state
from docbits.service.schemas import (
    MIN_SEQ_DESCRIPTION,
    DeleteRequest,
    DeleteResponse,
    DocumentOut,
    IngestedDocument,
    IngestMode,
    IngestRequest,
    IngestResponse,
)
from docbits.service.writes import NewDocument, delete, ingest

router = APIRouter(prefix="/v1/documents", tags=["documents"])


def _check_batch(count: int, limit: int, what: str) -> None:
    if count > limit:
        raise ApiError(
            413,
            "payload_too_large",
            f"{count} {what} in one request; the limit is {limit}",
            {"limit": limit},
        )


def _validated(body: IngestRequest, max_docs: int, max_text_bytes: int) -> list[NewDocument]:
    """Apply the per-request limits, reject repeated ids, and give ids to the id-less."""
    _check_batch(len(body.documents), max_docs, "documents")
    docs: list[NewDocument] = []
    seen: set[str] = set()
    for position, doc in enumerate(body.documents):
        size = len(doc.text.encode())
        if size > max_text_bytes:
            raise ApiError(
                413,
                "payload_too_large",
                f"document {position} has {size} bytes of text; the limit is {max_text_bytes}",
                {"position": position, "max_text_bytes": max_text_bytes},
            )
        doc_id = doc.id if doc.id is not None else uuid.uuid4().hex
        if doc_id in seen:
            raise ApiError(
                422, "duplicate_id", f"id {doc_id!r} appears twice in the batch", {"id": doc_id}
            )
        seen.add(doc_id)
        docs.append(NewDocument(id=doc_id, text=doc.text, metadata=doc.metadata))
    return docs


@router.post(
    "",
    response_model=IngestResponse,
    dependencies=[Depends(require_write)],
    summary="Upsert a batch of documents",
    responses={
        409: {"description": "insert_only and an id exists"},
        413: {"description": "too big"},
    },
)
def ingest_documents(
    request: Request, body: IngestRequest, mode: IngestMode = IngestMode.upsert
) -> IngestResponse:
    """Encode and store the batch; durable and searchable once this returns."""
    state = service_state(request)
    settings = state.settings
    docs = _validated(body, settings.max_batch_docs, settings.max_text_bytes)
    done = ingest(state, docs, insert_only=mode is IngestMode.insert_only)
    return IngestResponse(
        documents=[
            IngestedDocument(id=d.id, code=c) for d, c in zip(docs, done.codes, strict=True)
        ],
        model_fingerprint=done.fingerprint,
        seq=done.seq,
    )


def not_found(doc_id: str) -> ApiError:
    """The 404 of an id no document has."""
    return ApiError(404, "not_found", f"no document with id {doc_id!r}", {"id": doc_id})


@router.get(
    "/{doc_id:path}",
    response_model=DocumentOut,
    dependencies=[Depends(require_read)],
    summary="Read one document",
)
def get_document(
    request: Request,
    doc_id: str,
    min_seq: Annotated[int | None, Query(ge=0, description=MIN_SEQ_DESCRIPTION)] = None,
) -> DocumentOut:
    """The stored text, metadata and code of one document."""
    state = service_state(request)
    state.require_applied(min_seq)
    doc = state.require_ready().get(doc_id)
    if doc is None:
        raise not_found(doc_id)
    return DocumentOut(
        id=doc.id,
        text=doc.text,
        metadata=doc.metadata,
        code=code_to_hex(doc.code) if doc.code is not None else None,
        model_fingerprint=doc.fingerprint,
        created_at=doc.created_at,
        updated_at=doc.updated_at,
    )


@router.delete(
    "/{doc_id:path}",
    response_model=DeleteResponse,
    dependencies=[Depends(require_write)],
    summary="Delete one document",
)
def delete_document(request: Request, doc_id: str) -> DeleteResponse:
    """Remove a document from the store and the index; 404 if it was not there."""
    done = delete(service_state(request), [doc_id])
    if not done.ids:
        raise not_found(doc_id)
    return DeleteResponse(deleted=[doc_id], not_found=[], seq=done.seq)


@router.post(
    "/delete",
    response_model=DeleteResponse,
    dependencies=[Depends(require_write)],
    summary="Delete many documents",
)
def delete_documents(request: Request, body: DeleteRequest) -> DeleteResponse:
    """Remove every listed id that exists; reports the ones that did not."""
    state = service_state(request)
    _check_batch(len(body.ids), state.settings.max_batch_docs, "ids")
    ids = list(dict.fromkeys(body.ids))
    done = delete(state, ids)
    deleted = set(done.ids)
    return DeleteResponse(
        deleted=[i for i in ids if i in deleted],
        not_found=[i for i in ids if i not in deleted],
        seq=done.seq,
    )
