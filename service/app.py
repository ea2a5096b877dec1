"""`create_app(settings)`: the FastAPI application, its middleware, routers and lifespan."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from docbits.service.errors import StartupError, install_error_handlers
from docbits.service.metrics import RequestMetricsMiddleware
from docbits.service.request_rules import (
    RequestBodyMiddleware,
    check_request_target,
    query_parameter_table,
)
from docbits.service.routers import buckets, docs, documents, health, metrics, model, page, search
from docbits.service.routers.health import VERSION
from docbits.service.schemas import ErrorResponse
from docbits.service.settings import Settings
from docbits.service.state import ServiceState
from docbits.service.training import TrainingManager

log = logging.getLogger("docbits.service")
# Documented on every route, so the schema shows the error shape the handlers really send.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "Invalid request"},
    "4XX": {"model": ErrorResponse, "description": "Client error"},
    "5XX": {"model": ErrorResponse, "description": "Server error or unavailable"},
}


def refuse_open_exposure(settings: Settings) -> None:
    """Refuse to listen beyond loopback with no API key unless `allow_open` says so."""
    if settings.open_without_key_beyond_loopback():
        raise StartupError(
            f"refusing to listen on {settings.host} with no API key: set DOCBITS_API_KEY, or "
            "DOCBITS_ALLOW_OPEN=true (--allow-open) to serve an open API on purpose"
        )


def build_state(settings: Settings) -> ServiceState:
    """The state with its training manager wired in (nothing opened yet)."""
    state = ServiceState(settings)
    state.trainer = TrainingManager(
        store=state.require_store,
        owner=state.process_id,
        store_url=settings.store_url and settings.store_url.get_secret_value(),
        data_dir=settings.data_dir,
        default_config={
            key: value
            for key, value in {
                "bits": settings.train_bits,
                "variant": settings.train_variant,
                "epochs": settings.train_epochs,
                "time_budget_s": settings.train_budget_s or None,
            }.items()
            if value is not None
        },
        lease_s=settings.training_lease_s,
        activate=state.activate,
        metrics=state.metrics,
    )
    return state


def configure_logging(level: str) -> None:
    """Send docbits' own log lines to stderr at `level`, under any entry point (CLI or uvicorn)."""
    logger = logging.getLogger("docbits")
    logger.setLevel(level.upper())
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


def create_worker_app() -> FastAPI:
    """The app of one `docbits serve --workers N` process: settings from DOCBITS_* (the parent
    put its flags there), its own store connection and feed follower."""
    return create_app(Settings())


def create_app(settings: Settings | None = None, state: ServiceState | None = None) -> FastAPI:
    """Build the app; the store opens at start-up and the index loads in a background thread."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    state = state or build_state(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        refuse_open_exposure(settings)
        if state.store is None:
            state.open()
        if settings.api_key is None:
            log.warning("no DOCBITS_API_KEY set: the API is open to anyone who can reach it")
        query_parameter_table(app)
        loader = threading.Thread(target=state.load, name="docbits-load", daemon=True)
        loader.start()
        try:
            yield
        finally:
            state.closing.set()  # a start-up still waiting for the store gives up
            loader.join(timeout=30)
            state.close()

    # FastAPIOffline: FastAPI that also serves the Swagger UI and ReDoc assets its package ships
    # (at docs.ASSETS_URL); the docs router's pages use them, not a CDN.
    app = FastAPIOffline(
        docs_url=None,
        redoc_url=None,
        static_url=docs.ASSETS_URL,
        title="docbits",
        version=VERSION,
        summary="Semantic hashing: documents to short binary codes, codes to hash buckets.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(check_request_target)],
    )
    app.state.settings = settings
    app.state.service = state
    install_error_handlers(app)
    # The search router comes before documents: /v1/documents/{id}/similar before /{id}.
    for router in (search, documents, buckets, model, health, metrics, page, docs):
        app.include_router(router.router)
    app.mount("/web", StaticFiles(directory=page.WEB_DIR), name="web")
    app.router.routes[:0] = search.HOT_ROUTES
    app.add_middleware(RequestBodyMiddleware, limit=settings.max_request_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=state.metrics)
    return app
