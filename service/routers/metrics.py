"""`/metrics`: Prometheus text exposition."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from docbits.service.routers import service_state

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Request counts and latency per route, documents, buckets, candidates, training jobs."""
    return Response(service_state(request).metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
