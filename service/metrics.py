"""Prometheus metrics: per-route request count and latency, index size, candidates, training."""

from __future__ import annotations

import functools
import re
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from docbits.service.state import ServiceState

POOL_STATES = ("size", "available", "waiting", "max")
RELOAD_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
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

        # The change feed: how far this process has applied it and how far behind it is.
        self.applied_seq = Gauge(
            "docbits_feed_applied_seq",
            "Feed position applied to this process's index.",
            registry=self.registry,
        )
        self.store_seq = Gauge(
            "docbits_feed_store_seq",
            "Newest feed position this process has seen in the store.",
            registry=self.registry,
        )
        self.lag_changes = Gauge(
            "docbits_feed_lag_changes",
            "Changes seen in the store and not yet applied here.",
            registry=self.registry,
        )
        self.lag_seconds = Gauge(
            "docbits_feed_lag_seconds",
            "How long the oldest change seen and not yet applied has been waiting.",
            registry=self.registry,
        )
        self.feed_wakeups = Counter(
            "docbits_feed_wakeups",
            "Follower wake-ups: `notified` by the store (NOTIFY, or a poll that saw a change) or "
            "`timeout`.",
            ["cause"],
            registry=self.registry,
        )
        self.feed_apply = Histogram(
            "docbits_feed_apply_seconds",
            "Time to apply one batch of feed changes to the index.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.feed_reloads = Counter(
            "docbits_feed_reloads",
            "Index reloads from the store, by reason: start, model (a switch), gap.",
            ["reason"],
            registry=self.registry,
        )
        self.feed_reload_seconds = Histogram(
            "docbits_feed_reload_seconds",
            "Time to load a model's index from the store and catch up with the feed.",
            buckets=RELOAD_BUCKETS,
            registry=self.registry,
        )
        self.pool_connections = Gauge(
            "docbits_store_pool_connections",
            "The store's connection pool (PostgreSQL): open, idle, callers waiting, the maximum.",
            ["state"],
            registry=self.registry,
        )

    def watch(self, state: ServiceState) -> None:
        """Read the gauges that describe the state from it at each scrape."""
        follower = state.follower
        self.documents.set_function(lambda: state.document_count)
        self.buckets.set_function(lambda: state.active.index.num_buckets() if state.active else 0)
        self.applied_seq.set_function(lambda: follower.applied_seq)
        self.store_seq.set_function(lambda: follower.lag.store_seq)
        self.lag_changes.set_function(follower.lag.changes)
        self.lag_seconds.set_function(follower.lag.seconds)
        for name in POOL_STATES:
            self.pool_connections.labels(name).set_function(
                lambda name=name: state.store.pool_stats().get(name, 0) if state.store else 0
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
