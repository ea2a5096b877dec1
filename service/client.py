"""Typed HTTP clients for every docbits route: `DocbitsClient` (sync) and `AsyncDocbitsClient`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import BaseModel

from docbits.service.schemas import (
    BatchSearchResponse,
    BucketResponse,
    DeleteResponse,
    DocumentIn,
    DocumentOut,
    InfoResponse,
    IngestResponse,
    JobOut,
    JobStatus,
    ModelInfo,
    SearchResponse,
    Status,
)

FINISHED = (JobStatus.succeeded, JobStatus.failed)


class DocbitsError(Exception):
    """An error answer from the service, carrying its status and the JSON error fields."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class Call:
    """One HTTP request and the model its answer parses into (None: raw text)."""

    method: str
    path: str
    model: type[BaseModel] | None
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None


def _documents_payload(documents: Sequence[DocumentIn | Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "documents": [
            doc.model_dump(exclude_none=True) if isinstance(doc, DocumentIn) else dict(doc)
            for doc in documents
        ]
    }


def _search_params(
    radius: int,
    limit: int,
    offset: int,
    nearest: bool,
    include_text: bool,
    min_seq: int | None = None,
) -> dict[str, Any]:
    return {
        "radius": radius,
        "limit": limit,
        "offset": offset,
        "nearest": nearest,
        "include_text": include_text,
        **_consistency(min_seq),
    }


def _consistency(min_seq: int | None) -> dict[str, Any]:
    """`min_seq` when given: answer once the server has applied that feed position."""
    return {} if min_seq is None else {"min_seq": min_seq}


class Routes:
    """Builds the `Call` of each route, shared by the sync and async clients."""

    @staticmethod
    def ingest(documents: Sequence[DocumentIn | Mapping[str, Any]], mode: str) -> Call:
        payload = _documents_payload(documents)
        return Call("POST", "/v1/documents", IngestResponse, {"mode": mode}, payload)

    @staticmethod
    def get_document(doc_id: str, min_seq: int | None) -> Call:
        path = f"/v1/documents/{_quote(doc_id)}"
        return Call("GET", path, DocumentOut, _consistency(min_seq))

    @staticmethod
    def delete_document(doc_id: str) -> Call:
        return Call("DELETE", f"/v1/documents/{_quote(doc_id)}", DeleteResponse)

    @staticmethod
    def delete_documents(ids: Sequence[str]) -> Call:
        return Call("POST", "/v1/documents/delete", DeleteResponse, json={"ids": list(ids)})

    @staticmethod
    def search(q: str, filter: Mapping[str, Any] | None, **options: Any) -> Call:
        params = _search_params(**options)
        if filter is None:
            return Call("GET", "/v1/search", SearchResponse, {"q": q, **params})
        body = {"q": q, "filter": dict(filter), **params}
        return Call("POST", "/v1/search", SearchResponse, json=body)

    @staticmethod
    def search_batch(
        queries: Sequence[str], filter: Mapping[str, Any] | None, **options: Any
    ) -> Call:
        body = {"queries": list(queries), "filter": dict(filter) if filter else None}
        return Call(
            "POST", "/v1/search", BatchSearchResponse, json={**body, **_search_params(**options)}
        )

    @staticmethod
    def similar(doc_id: str, **options: Any) -> Call:
        path = f"/v1/documents/{_quote(doc_id)}/similar"
        return Call("GET", path, SearchResponse, _search_params(**options))

    @staticmethod
    def bucket(code: str, limit: int, offset: int, min_seq: int | None) -> Call:
        params = {"limit": limit, "offset": offset, **_consistency(min_seq)}
        return Call("GET", f"/v1/buckets/{code}", BucketResponse, params)

    @staticmethod
    def train(bits: int | None, variant: str | None, epochs: int | None) -> Call:
        body = {"bits": bits, "variant": variant, "epochs": epochs}
        return Call("POST", "/v1/model/train", JobOut, json=body)

    @staticmethod
    def job(job_id: str) -> Call:
        return Call("GET", f"/v1/model/jobs/{_quote(job_id)}", JobOut)


def _quote(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="")


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _parse(call: Call, response: httpx.Response) -> Any:
    """The parsed body, or DocbitsError for any error status."""
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            error = {"code": "http_error", "message": response.text[:500], "details": {}}
        raise DocbitsError(
            response.status_code, error["code"], error["message"], error.get("details", {})
        )
    if call.model is None:
        return response.text
    return call.model.model_validate_json(response.content)


SEARCH_DEFAULTS: dict[str, Any] = {
    "radius": 0,
    "limit": 10,
    "offset": 0,
    "nearest": False,
    "include_text": False,
}


class DocbitsClient:
    """Blocking client; use as a context manager or call `close()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> DocbitsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def send(self, call: Call) -> Any:
        """Send one call and parse its answer."""
        response = self.http.request(call.method, call.path, params=call.params, json=call.json)
        return _parse(call, response)

    def ingest(
        self, documents: Sequence[DocumentIn | Mapping[str, Any]], mode: str = "upsert"
    ) -> IngestResponse:
        return self.send(Routes.ingest(documents, mode))

    def get_document(self, doc_id: str, min_seq: int | None = None) -> DocumentOut:
        return self.send(Routes.get_document(doc_id, min_seq))

    def delete_document(self, doc_id: str) -> DeleteResponse:
        return self.send(Routes.delete_document(doc_id))

    def delete_documents(self, ids: Sequence[str]) -> DeleteResponse:
        return self.send(Routes.delete_documents(ids))

    def search(
        self, q: str, filter: Mapping[str, Any] | None = None, **options: Any
    ) -> SearchResponse:
        """Options: radius, limit, offset, nearest, include_text (defaults as the API's), and
        min_seq (the `seq` of a write: answered once the server has applied it)."""
        return self.send(Routes.search(q, filter, **{**SEARCH_DEFAULTS, **options}))

    def search_batch(
        self, queries: Sequence[str], filter: Mapping[str, Any] | None = None, **options: Any
    ) -> BatchSearchResponse:
        return self.send(Routes.search_batch(queries, filter, **{**SEARCH_DEFAULTS, **options}))

    def similar(self, doc_id: str, **options: Any) -> SearchResponse:
        return self.send(Routes.similar(doc_id, **{**SEARCH_DEFAULTS, **options}))

    def bucket(
        self, code: str, limit: int = 100, offset: int = 0, min_seq: int | None = None
    ) -> BucketResponse:
        return self.send(Routes.bucket(code, limit, offset, min_seq))

    def info(self) -> InfoResponse:
        return self.send(Call("GET", "/v1/info", InfoResponse))

    def model(self) -> ModelInfo:
        return self.send(Call("GET", "/v1/model", ModelInfo))

    def train(
        self, bits: int | None = None, variant: str | None = None, epochs: int | None = None
    ) -> JobOut:
        return self.send(Routes.train(bits, variant, epochs))

    def job(self, job_id: str) -> JobOut:
        return self.send(Routes.job(job_id))

    def wait_for_job(self, job_id: str, timeout: float = 600.0, poll: float = 0.5) -> JobOut:
        """Poll until the job succeeds or fails; TimeoutError past `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.status in FINISHED:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status.value} after {timeout}s")
            time.sleep(poll)

    def livez(self) -> Status:
        return self.send(Call("GET", "/livez", Status))

    def readyz(self) -> Status:
        return self.send(Call("GET", "/readyz", Status))

    def metrics(self) -> str:
        return self.send(Call("GET", "/metrics", None))


class AsyncDocbitsClient:
    """Asyncio client with the same methods as `DocbitsClient`, awaited."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers=_headers(api_key),
            timeout=timeout,
            transport=transport,
            limits=limits or httpx.Limits(),
        )

    async def __aenter__(self) -> AsyncDocbitsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def send(self, call: Call) -> Any:
        """Send one call and parse its answer."""
        response = await self.http.request(
            call.method, call.path, params=call.params, json=call.json
        )
        return _parse(call, response)

    async def ingest(
        self, documents: Sequence[DocumentIn | Mapping[str, Any]], mode: str = "upsert"
    ) -> IngestResponse:
        return await self.send(Routes.ingest(documents, mode))

    async def get_document(self, doc_id: str, min_seq: int | None = None) -> DocumentOut:
        return await self.send(Routes.get_document(doc_id, min_seq))

    async def delete_document(self, doc_id: str) -> DeleteResponse:
        return await self.send(Routes.delete_document(doc_id))

    async def delete_documents(self, ids: Sequence[str]) -> DeleteResponse:
        return await self.send(Routes.delete_documents(ids))

    async def search(
        self, q: str, filter: Mapping[str, Any] | None = None, **options: Any
    ) -> SearchResponse:
        return await self.send(Routes.search(q, filter, **{**SEARCH_DEFAULTS, **options}))

    async def search_batch(
        self, queries: Sequence[str], filter: Mapping[str, Any] | None = None, **options: Any
    ) -> BatchSearchResponse:
        call = Routes.search_batch(queries, filter, **{**SEARCH_DEFAULTS, **options})
        return await self.send(call)

    async def similar(self, doc_id: str, **options: Any) -> SearchResponse:
        return await self.send(Routes.similar(doc_id, **{**SEARCH_DEFAULTS, **options}))

    async def bucket(
        self, code: str, limit: int = 100, offset: int = 0, min_seq: int | None = None
    ) -> BucketResponse:
        return await self.send(Routes.bucket(code, limit, offset, min_seq))

    async def info(self) -> InfoResponse:
        return await self.send(Call("GET", "/v1/info", InfoResponse))

    async def model(self) -> ModelInfo:
        return await self.send(Call("GET", "/v1/model", ModelInfo))

    async def train(
        self, bits: int | None = None, variant: str | None = None, epochs: int | None = None
    ) -> JobOut:
        return await self.send(Routes.train(bits, variant, epochs))

    async def job(self, job_id: str) -> JobOut:
        return await self.send(Routes.job(job_id))

    async def wait_for_job(self, job_id: str, timeout: float = 600.0, poll: float = 0.5) -> JobOut:
        """Poll until the job succeeds or fails; TimeoutError past `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job.status in FINISHED:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status.value} after {timeout}s")
            await asyncio.sleep(poll)

    async def livez(self) -> Status:
        return await self.send(Call("GET", "/livez", Status))

    async def readyz(self) -> Status:
        return await self.send(Call("GET", "/readyz", Status))

    async def metrics(self) -> str:
        return await self.send(Call("GET", "/metrics", None))
