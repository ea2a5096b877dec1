"""`/v1/model`: the active model, training jobs and their progress."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request

from docbits.service.auth import require_read, require_write
from docbits.service.errors import ApiError
from docbits.service.routers import service_state
from docbits.service.schemas import JobOut, ModelInfo, TrainRequest

router = APIRouter(prefix="/v1/model", tags=["model"])


def refuse_unknown_variant(variant: str | None) -> None:
    """422 now, rather than a job that fails later in its worker."""
    from docbits.model.autoencoders import VARIANTS

    if variant is not None and variant not in VARIANTS:
        raise ApiError(
            422,
            "validation_error",
            f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}",
            {"variants": list(VARIANTS)},
        )


@router.get(
    "",
    response_model=ModelInfo,
    dependencies=[Depends(require_read)],
    summary="The active model's description",
)
def active_model(request: Request) -> ModelInfo:
    """Fingerprint, bits, variant and training configuration of the model in use."""
    active = service_state(request).require_model()
    return ModelInfo(
        model_fingerprint=active.fingerprint,
        bits=active.bits,
        variant=active.hasher.variant,
        config=active.hasher.config,
    )


@router.post(
    "/train",
    response_model=JobOut,
    status_code=202,
    dependencies=[Depends(require_write)],
    summary="Train a new model on the stored documents (admin)",
    responses={409: {"description": "a job is already running"}},
)
def train(request: Request, body: Annotated[TrainRequest | None, Body()] = None) -> JobOut:
    """Start a training job in a worker process; the service switches to it when done."""
    state = service_state(request)
    state.require_ready()
    if state.trainer is None:
        raise ApiError(503, "unavailable", "training is not available in this process")
    if state.document_count == 0:
        raise ApiError(409, "no_documents", "no documents are stored; ingest some first")
    overrides = body.model_dump(exclude_none=True) if body else {}
    refuse_unknown_variant(overrides.get("variant"))
    return state.trainer.start(overrides=overrides)


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    dependencies=[Depends(require_read)],
    summary="A training job's progress",
)
def job(request: Request, job_id: str) -> JobOut:
    """Status, last epoch's loss and ETA, and the new fingerprint once switched; read from the
    store, so any process answers for a job another one runs."""
    state = service_state(request)
    state.require_store()
    found = state.trainer.get(job_id) if state.trainer else None
    if found is None:
        raise ApiError(404, "not_found", f"no training job {job_id!r}", {"id": job_id})
    return found
