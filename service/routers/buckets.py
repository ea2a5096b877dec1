"""`/v1/buckets/{code}`: the documents that share one code."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from docbits.index.codes import code_to_hex, hex_to_code
from docbits.service.auth import require_read
from docbits.service.errors import ApiError
from docbits.service.routers import service_state, snippet
from docbits.service.schemas import (
    MAX_OFFSET,
    MIN_SEQ_DESCRIPTION,
    BucketMember,
    BucketResponse,
)

router = APIRouter(prefix="/v1/buckets", tags=["buckets"], dependencies=[Depends(require_read)])


@router.get("/{code}", response_model=BucketResponse, summary="List one bucket's members")
def bucket(
    request: Request,
    code: str,
    limit: Annotated[int, Query(ge=1)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    min_seq: Annotated[int | None, Query(ge=0, description=MIN_SEQ_DESCRIPTION)] = None,
) -> BucketResponse:
    """Members of the bucket whose code is `code` (hex, bits/4 characters), in index order."""
    state = service_state(request)
    state.require_applied(min_seq)
    active = state.require_model()
    try:
        packed = hex_to_code(code, active.bits)
    except ValueError as exc:
        raise ApiError(
            422, "invalid_code", f"bad code {code!r}: {exc}", {"bits": active.bits}
        ) from exc
    limit = min(limit, state.settings.max_limit)
    members = active.index.bucket(packed)
    page = members[offset : offset + limit]
    docs = state.require_ready().get_many(page) if page else {}
    chars = state.settings.snippet_chars
    return BucketResponse(
        code=code_to_hex(packed),
        size=len(members),
        documents=[
            BucketMember(id=i, metadata=docs[i].metadata, snippet=snippet(docs[i].text, chars))
            for i in page
            if i in docs
        ],
    )
