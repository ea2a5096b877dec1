"""`/livez`, `/readyz` and `/v1/info`."""

from __future__ import annotations

import platform

from fastapi import APIRouter, Depends, Request

from docbits.service.auth import require_read
from docbits.service.routers import service_state
from docbits.service.schemas import InfoResponse, Status

router = APIRouter(tags=["health"])
VERSION = "0.1.0"


@router.get("/livez", response_model=Status, summary="The process answers")
async def livez() -> Status:
    """Always ok while the event loop runs."""
    return Status(status="ok")


@router.get(
    "/readyz",
    response_model=Status,
    summary="Store and index are loaded",
    responses={503: {"description": "still loading, or loading failed"}},
)
async def readyz(request: Request) -> Status:
    """503 until start-up has loaded the store and the index."""
    service_state(request).require_ready()
    return Status(status="ready")


@router.get(
    "/v1/info",
    response_model=InfoResponse,
    dependencies=[Depends(require_read)],
    summary="Model and index summary",
)
def info(request: Request) -> InfoResponse:
    """Bits, variant, fingerprint, counts, the bucket-size histogram and build metadata."""
    state = service_state(request)
    state.require_ready()
    active = state.active
    latest = state.trainer.latest() if state.trainer else None
    histogram = active.index.bucket_size_histogram() if active else {}
    return InfoResponse(
        bits=active.bits if active else None,
        variant=active.hasher.variant if active else None,
        model_fingerprint=active.fingerprint if active else None,
        documents=state.document_count,
        buckets=active.index.num_buckets() if active else 0,
        bucket_size_histogram={str(size): count for size, count in sorted(histogram.items())},
        build={
            "docbits_version": VERSION,
            "python": platform.python_version(),
            "model_config": active.hasher.config if active else None,
        },
        training_job=latest.to_schema() if latest else None,
    )
