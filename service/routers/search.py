"""`/v1/search` (GET one query, POST one or a batch with a filter) and `/similar`."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from docbits.index.codes import code_to_hex
from docbits.index.hash_index import Keep
from docbits.service.auth import require_read
from docbits.service.errors import ApiError
from docbits.service.models import ActiveModel
from docbits.service.routers import (
    JSONBytesResponse,
    json_bytes,
    parse_query,
    query_parameters,
    service_state,
    snippet,
)
from docbits.service.schemas import (
    BatchSearchResponse,
    SearchOptions,
    SearchQuery,
    SearchRequest,
    SearchResponse,
)
from docbits.service.search import Ranked, metadata_keep, rank
from docbits.service.state import ServiceState

router = APIRouter(prefix="/v1", tags=["search"], dependencies=[Depends(require_read)])


def _hits_bodies(
    state: ServiceState, active: ActiveModel, ranked: list[Ranked], include_text: bool
) -> list[dict[str, Any]]:
    """`SearchResponse` bodies: the page's documents fetched in ONE store call for all queries.

    Plain dicts in the schema's field order; pydantic would only re-check what is built here.
    """
    wanted = [doc_id for result in ranked for doc_id, _, _ in result.page]
    docs = state.require_ready().get_many(wanted) if wanted else {}
    bits = active.bits
    chars = state.settings.snippet_chars
    bodies = []
    for result in ranked:
        hits = []
        for doc_id, distance, form_score in result.page:
            doc = docs.get(doc_id)
            if doc is None:
                continue
            hits.append(
                {
                    "id": doc_id,
                    "distance": distance,
                    "score": 1.0 - distance / bits,
                    "form_score": form_score,
                    "metadata": doc.metadata,
                    "text": doc.text if include_text else None,
                    "snippet": None if include_text else snippet(doc.text, chars),
                }
            )
        bodies.append(
            {
                "query_code": code_to_hex(result.query_code),
                "model_fingerprint": active.fingerprint,
                "candidates": result.candidates,
                "hits": hits,
            }
        )
    return bodies


def check_caps(state: ServiceState, options: SearchOptions) -> None:
    """422 for a radius or limit beyond what the settings allow."""
    settings = state.settings
    if options.radius > settings.radius_cap:
        raise ApiError(
            422,
            "radius_too_large",
            f"radius {options.radius} exceeds the configured cap of {settings.radius_cap}",
            {"radius_cap": settings.radius_cap},
        )
    if options.limit > settings.max_limit:
        raise ApiError(
            422,
            "limit_too_large",
            f"limit {options.limit} exceeds the configured maximum of {settings.max_limit}",
            {"max_limit": settings.max_limit},
        )


def _ranked(
    state: ServiceState,
    active: ActiveModel,
    options: SearchOptions,
    code: bytes,
    form: np.ndarray | None,
    keep: Keep | None,
) -> Ranked:
    """`rank` as `options` ask (the form only when they rescore), counted in the metrics."""
    ranked = rank(
        active,
        code,
        radius=options.radius,
        limit=options.limit,
        offset=options.offset,
        nearest=options.nearest,
        keep=keep,
        form=form if options.rescore else None,
    )
    state.metrics.candidates.observe(ranked.candidates)
    return ranked


def _rank_and_render(
    state: ServiceState,
    active: ActiveModel,
    options: SearchOptions,
    wanted: dict[str, Any] | None,
    batch: bool,
    encoded: np.ndarray,
) -> bytes:
    """In the worker thread: rank each query (rows of `ActiveModel.encode_queries`), fetch the
    hits, serialise the JSON body."""
    store = state.require_ready()
    keep = metadata_keep(store, wanted)
    ranked = [_ranked(state, active, options, *active.split_query(row), keep) for row in encoded]
    bodies = _hits_bodies(state, active, ranked, options.include_text)
    return json_bytes({"results": bodies} if batch else bodies[0])


async def _search_texts(
    state: ServiceState,
    texts: list[str],
    options: SearchOptions,
    wanted: dict[str, Any] | None,
    batch: bool = False,
) -> Response:
    """Validate, then encode, rank, fetch and serialise in one micro-batched worker-thread call.

    Encoding and SQLite reads never run on the event loop, so one slow query cannot stall
    others, and the request pays one thread hop (shared with the searches batched with it).
    """
    for position, text in enumerate(texts):
        if "\x00" in text or not text.strip():
            raise ApiError(
                422,
                "validation_error",
                f"query {position} has no words (empty, whitespace only, or NUL characters)",
                {"position": position},
            )
    check_caps(state, options)
    if options.min_seq is not None:
        await state.require_applied_async(options.min_seq)
    active = state.require_model()
    finish = partial(_rank_and_render, state, active, options, wanted, batch)
    return JSONBytesResponse(await state.search_queries(active, texts, finish))


@router.get(
    "/search",
    response_model=SearchResponse,
    summary="Search with one query",
    openapi_extra={"parameters": query_parameters(SearchQuery)},
)
async def search(request: Request) -> Response:
    """The query's bucket (radius 0), its Hamming ball, or its `limit` nearest."""
    query = parse_query(request, SearchQuery)
    return await _search_texts(service_state(request), [query.q], query, None)


async def search_hot(request: Request) -> Response:
    """`GET /v1/search` as a plain Starlette endpoint: the read-key check, then `search`."""
    await require_read(request)
    return await search(request)


class HotRoute(Route):
    """A plain Starlette route that records itself in the scope as FastAPI's routes do, so
    request metrics label it by its path template like every other route."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        await super().handle(scope, receive, send)


# The busiest route is matched before FastAPI's routes (`create_app` puts it first), sparing it
# FastAPI's per-request dependency solving and endpoint wrapping, which it does not use: it
# parses its own query string and returns JSON serialised in the worker thread. The FastAPI
# declaration above still documents it in OpenAPI; errors go through the same handlers.
HOT_ROUTES = [HotRoute("/v1/search", search_hot, methods=["GET"])]


@router.post(
    "/search",
    response_model=SearchResponse | BatchSearchResponse,
    summary="Search with one query or a batch, with a metadata filter",
)
async def search_body(request: Request, body: SearchRequest) -> Response:
    """`q` answers one `SearchResponse`; `queries` answers `{"results": [...]}` in order."""
    state = service_state(request)
    if (body.q is None) == (body.queries is None):
        raise ApiError(422, "validation_error", "send exactly one of `q` and `queries`")
    if body.queries is not None:
        limit = state.settings.max_batch_queries
        if len(body.queries) > limit:
            raise ApiError(
                413,
                "payload_too_large",
                f"{len(body.queries)} queries in one request; the limit is {limit}",
                {"limit": limit},
            )
        return await _search_texts(state, body.queries, body, body.filter, batch=True)
    return await _search_texts(state, [body.q or ""], body, body.filter)


@router.get(
    "/documents/{doc_id:path}/similar",
    response_model=SearchResponse,
    summary="Documents similar to a stored one",
)
async def similar(
    request: Request, doc_id: str, options: Annotated[SearchOptions, Query()]
) -> Response:
    """Search with the stored document's own code, leaving the document itself out."""
    state = service_state(request)
    check_caps(state, options)
    await state.require_applied_async(options.min_seq)
    active = state.require_model()
    return JSONBytesResponse(await run_in_threadpool(_similar_body, state, active, doc_id, options))


def _similar_body(
    state: ServiceState, active: ActiveModel, doc_id: str, options: SearchOptions
) -> bytes:
    """In a worker thread: rank around the stored document's code (and rescoring form) and
    serialise the body."""
    code = active.index.code_of(doc_id)
    if code is None:
        raise ApiError(404, "not_found", f"no indexed document with id {doc_id!r}", {"id": doc_id})
    store = state.require_ready()
    form = active.index.form_of(doc_id)
    form = form if form is not None and form.any() else None  # zeros: stored without a form
    keep = metadata_keep(store, None, exclude=doc_id)
    ranked = _ranked(state, active, options, code, form, keep)
    return json_bytes(_hits_bodies(state, active, [ranked], options.include_text)[0])
