"""`/livez`, `/readyz` and `/v1/info`."""

from __future__ import annotations

import platform

from fastapi import APIRouter, Depends, Request

from docbits.service.auth import require_read
from docbits.service.errors import ApiError
from docbits.service.routers import service_state
from docbits.service.schemas import FeedInfo, InfoResponse, Status
from docbits.service.state import ServiceState

router = APIRouter(tags=["health"])
VERSION = "0.1.0"


@router.get("/livez", response_model=Status, summary="The process answers")
async def livez() -> Status:
    """Always ok while the event loop runs."""
    return Status(status="ok")


@router.get(
    "/readyz",
    response_model=Status,
    summary="Loaded, and following the store closely",
    responses={503: {"description": "loading or catching up, lagging, or the store is away"}},
)
def readyz(request: Request) -> Status:
    """503 until start-up has loaded the index and caught up with the store's feed, and
    whenever the store cannot be reached or a change waits longer than
    DOCBITS_READY_MAX_LAG_S to be applied here (except while a new model's index loads)."""
    state = service_state(request)
    if state.follower.store_error is not None:
        raise ApiError(503, "unavailable", f"following the store: {state.follower.store_error}")
    feed = feed_info(state)
    bound = state.settings.ready_max_lag_s
    # Loading a new model's index, a process serves the old model whole, as every other does
    # meanwhile: taking them all out of rotation at once would serve nothing.
    if feed.lag_s > bound and state.follower.reloading != "model":
        raise ApiError(
            503,
            "unavailable",
            f"lagging: {feed.lag_changes} changes behind the store, the oldest waiting "
            f"{feed.lag_s:.1f} s (more than {bound:g} s)",
            feed.model_dump(),
        )
    return Status(status="ready")


def feed_info(state: ServiceState) -> FeedInfo:
    """This process's position in the feed against the store's newest (read now); 503 while
    not ready or when the store cannot be reached."""
    newest = state.require_ready().last_seq()
    follower = state.follower
    follower.lag.saw(newest)
    applied = follower.applied_seq
    return FeedInfo(
        process=state.process_id,
        applied_seq=applied,
        store_seq=newest,
        lag_changes=max(0, newest - applied),
        lag_s=round(follower.lag.seconds(), 3),
    )


@router.get(
    "/v1/info",
    response_model=InfoResponse,
    dependencies=[Depends(require_read)],
    summary="Model and index summary",
)
def info(request: Request) -> InfoResponse:
    """Bits, variant, fingerprint, counts, the bucket-size histogram and build metadata."""
    state = service_state(request)
    feed = feed_info(state)
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
        training_job=latest,
        feed=feed,
    )
