"""Prometheus metrics: per-route request count and latency, index size, candidates, training."""

from __future__ import annotations

import functools
import re
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
CANDIDATE_BUCKETS = (0, 1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 50000)


class ServiceMetrics:
    """One registry per app, so several apps (tests) never collide on metric names."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "docbits_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "docbits_request_duration_seconds",
            "Time from request start to response end, by route template.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.documents = Gauge("docbits_documents", "Documents stored.", registry=self.registry)
        self.buckets = Gauge(
            "docbits_buckets", "Non-empty buckets in the index.", registry=self.registry
        )
        self.candidates = Histogram(
            "docbits_search_candidates",
            "Candidates collected per search query before paging.",
            buckets=CANDIDATE_BUCKETS,
            registry=self.registry,
        )
        self.query_batch = Histogram(
            "docbits_query_encode_batch_requests",
            "Search requests whose queries were encoded together in one call.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.training_jobs = Counter(
            "docbits_training_jobs",
            "Training jobs by final status.",
            ["status"],
            registry=self.registry,
        )
        self.training_running = Gauge(
            "docbits_training_running", "1 while a training job runs.", registry=self.registry
        )

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


class RequestMetricsMiddleware:
    """Pure ASGI middleware timing each HTTP request under its route template (not its raw path)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route, method = _route_template(scope), scope["method"]
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - started)
            self.metrics.requests.labels(route, method, str(status)).inc()


CONVERTOR = re.compile(r"\{(\w+):\w+\}")  # `{doc_id:path}` is labelled `{doc_id}`, as in OpenAPI


def _route_template(scope: dict[str, Any]) -> str:
    """`/v1/documents/{doc_id}` rather than the id itself, to keep label cardinality bounded."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return _label_of(path) if isinstance(path, str) else "unmatched"


@functools.lru_cache(maxsize=256)
def _label_of(path: str) -> str:
    """A route's path template with converters dropped (the routes are few and fixed)."""
    return CONVERTOR.sub(r"{\1}", path)
