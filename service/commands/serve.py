"""`docbits serve`: run the HTTP service with uvicorn (settings from DOCBITS_* and these flags)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command; every flag overrides its DOCBITS_* variable."""
    p = sub.add_parser("serve", help="run the HTTP API (FastAPI + uvicorn)")
    p.add_argument("--data-dir", type=Path, help="store and models folder (DOCBITS_DATA_DIR)")
    p.add_argument(
        "--store-url",
        help="PostgreSQL URL of a shared store (prefer DOCBITS_STORE_URL: flags show up in `ps`)",
    )
    p.add_argument("--host", help="listen address (DOCBITS_HOST, default 127.0.0.1)")
    p.add_argument(
        "--workers",
        type=int,
        help="server processes sharing the port, each following the store (DOCBITS_WORKERS)",
    )
    p.add_argument("--port", type=int, help="listen port (DOCBITS_PORT, default 8000)")
    p.add_argument("--model", dest="model_path", type=Path, help="import a model trained offline")
    p.add_argument("--max-batch-docs", type=int, help="documents per ingest request")
    p.add_argument("--max-request-bytes", type=int, help="raw request body limit")
    p.add_argument("--max-text-bytes", type=int, help="UTF-8 bytes of one document's text")
    p.add_argument("--radius-cap", type=int, help="largest Hamming radius a search may ask")
    p.add_argument("--max-limit", type=int, help="largest `limit` a search may ask")
    p.add_argument(
        "--api-key", help="write/admin key (prefer DOCBITS_API_KEY: flags show up in `ps`)"
    )
    p.add_argument("--read-api-key", help="read key (prefer DOCBITS_READ_API_KEY)")
    p.add_argument("--autotrain-min-docs", type=int, help="train by itself at this many docs")
    p.add_argument(
        "--retrain-growth",
        type=float,
        help="retrain at this multiple of the documents the model learned from (0: never)",
    )
    p.add_argument("--train-bits", type=int, help="code length of models trained by the service")
    p.add_argument("--train-epochs", type=int, help="epochs of models trained by the service")
    p.add_argument(
        "--train-budget-s", type=float, help="seconds a training job may take (0: no limit)"
    )
    p.add_argument("--train-variant", help="autoencoder variant trained by the service")
    p.add_argument("--allow-open", action="store_true", default=None, help="no key, any host")
    p.add_argument("--log-level", help="debug, info, warning, error")
    p.set_defaults(handler=run)


def settings_from_args(args: argparse.Namespace) -> Any:
    """Environment settings with the flags that were given laid on top."""
    from docbits.service.settings import Settings

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "handler")}
    return Settings(**{k: v for k, v in flags.items() if v is not None})


def settings_environment(settings: Any) -> dict[str, str]:
    """The settings as DOCBITS_* variables, for worker processes that read their own."""
    environment = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None or name == "model_path":  # the parent imports the model, once
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        environment[f"DOCBITS_{name.upper()}"] = str(value)
    return environment


def run(args: argparse.Namespace) -> int:
    """Open the store and model first (clear refusals), then serve until interrupted."""
    import logging

    import uvicorn

    from docbits.index.store import StoreError
    from docbits.service.app import build_state, create_app, refuse_open_exposure
    from docbits.service.errors import StartupError
    from docbits.service.http_protocol import JSONErrorsHttpToolsProtocol

    settings = settings_from_args(args)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    state = build_state(settings)
    try:
        refuse_open_exposure(settings)
        state.open()
        if settings.workers > 1:
            prepare_workers(state)
    except (StartupError, StoreError) as exc:
        raise SystemExit(f"docbits serve: {exc}") from exc
    if settings.workers == 1:
        app: Any = create_app(settings, state)
    else:  # each worker builds its own app (store connection, follower) from the environment
        os.environ.update(settings_environment(settings))
        os.environ.pop("DOCBITS_MODEL_PATH", None)
        app = "docbits.service.app:create_worker_app"
    uvicorn.run(
        app,
        factory=settings.workers > 1,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        workers=settings.workers,
        http=JSONErrorsHttpToolsProtocol,
    )
    return 0


def prepare_workers(state: Any) -> None:
    """Before starting workers: switch to an imported model here, once, then let go of the
    store (each worker opens its own and loads the store's active model)."""
    from docbits.service.errors import StartupError

    if state.settings.model_path is not None:
        if state.store is None:
            raise StartupError(f"cannot import the model: {state.load_error}")
        state.switch_pending()
    state.close()
