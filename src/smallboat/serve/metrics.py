"""The prediction service's Prometheus metrics (`GET /metrics`, text exposition format).

Each app owns its registry, so two apps in one process (tests) never share counters. Requests are
labelled by route template (`/v1/sessions/{session_id}/events`, never the raw path) so a label
cannot grow without bound; paths that match no route count as `unmatched`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smallboat.serve.scoring import Batch

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5
)  # fmt: skip
PROBABILITY_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServeMetrics:
    def __init__(self, *, sections: bool = False) -> None:
        """`sections`: also export where a request's time goes (SMALLBOAT_SERVE_SECTIONS)."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.sections = (
            Counter(
                "smallboat_serve_section_seconds",
                "Seconds spent in each section of the prediction routes "
                "(SMALLBOAT_SERVE_SECTIONS): parse (request start to scoring: body read, "
                "parsing, validation, and on /v1/sessions the session store's round trip), the "
                "scoring batch's collapse, encode, summary, forward, next_items and answers, log "
                "(the prediction log's row), respond (serializing and sending the answer).",
                ["section"],
                registry=r,
            )
            if sections
            else None
        )
        self.requests = Counter(
            "smallboat_requests",
            "HTTP requests answered.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "smallboat_request_duration_seconds",
            "Time from request to the end of the answer.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.probability = Histogram(
            "smallboat_purchase_probability",
            "Purchase probabilities answered.",
            buckets=PROBABILITY_BUCKETS,
            registry=r,
        )
        self.unscored = Counter(
            "smallboat_sessions_without_prediction",
            "Sessions answered with a null probability (no events before a purchase).",
            registry=r,
        )
        self.oov = Counter(
            "smallboat_oov_sku_events", "Window events whose SKU the model never saw.", registry=r
        )
        self.batch_sessions = Histogram(
            "smallboat_batch_sessions",
            "Sessions per forward pass (concurrent requests are batched).",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.forward = Histogram(
            "smallboat_forward_seconds",
            "Time of the model's forward pass per batch.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "smallboat_model_info", "The model being served (value 1).", ["version"], registry=r
        )
        self.reloads = Counter(
            "smallboat_model_reloads", "Model reloads by outcome.", ["outcome"], registry=r
        )

    def serving(self, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version=version).set(1)

    def section(self, name: str, seconds: float) -> None:
        """Add `seconds` to section `name` when sections are on (else nothing)."""
        if self.sections is not None:
            self.sections.labels(name).inc(seconds)

    def batch(self, batch: Batch) -> None:
        if self.sections is not None:
            for name, seconds in batch.sections.items():
                self.sections.labels(name).inc(seconds)
        self.batch_sessions.observe(batch.sessions)
        self.forward.observe(batch.forward_seconds)
        for outcomes in batch.outcomes:
            for outcome in outcomes:
                if outcome.purchase_probability is None:
                    self.unscored.inc()
                else:
                    self.probability.observe(outcome.purchase_probability)
                if outcome.oov_skus:
                    self.oov.inc(outcome.oov_skus)

    def watch_log(self, written: Callable[[], float], dropped: Callable[[], float]) -> None:
        """Export the prediction log's counters (read when scraped)."""
        Gauge(
            "smallboat_prediction_log_written",
            "Predictions made durable in the prediction log.",
            registry=self.registry,
        ).set_function(written)
        Gauge(
            "smallboat_prediction_log_dropped",
            "Predictions the log dropped (log off, failing, or too far behind).",
            registry=self.registry,
        ).set_function(dropped)

    def watch_sessions(self, rebuilds: Callable[[], float], conflicts: Callable[[], float]) -> None:
        """Export the session store's state counters (read when scraped)."""
        Gauge(
            "smallboat_session_state_rebuilds",
            "Session-route appends whose model state was rebuilt from the stored raw rows (a row "
            "older than the state's frozen head, or one that may bridge a 30-minute gap).",
            registry=self.registry,
        ).set_function(rebuilds)
        Gauge(
            "smallboat_session_state_conflicts",
            "Session-route appends whose cached state was stale (another replica wrote the "
            "session since) and were applied again to the stored state (Redis store).",
            registry=self.registry,
        ).set_function(conflicts)

    def render(self) -> bytes:
        return generate_latest(self.registry)


STARTED_KEY = "smallboat.started"
"""ASGI scope key of the request's start (perf_counter), for the prediction log's latency."""
SCORED_KEY = "smallboat.scored"
"""ASGI scope key of the moment a prediction route had its answers ready to send (perf_counter):
the `respond` section runs from there to the end of the request, less the prediction log's row
(`routes.predict.log_timed` takes it out, whether the row is written before the answer or, on the
fast lane, after it)."""


class MetricsMiddleware:
    """Counts and times every HTTP request by route template and status (pure ASGI: cheaper
    than a BaseHTTPMiddleware on a path where every 100 us counts)."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope[STARTED_KEY] = started
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            ended = time.perf_counter()
            self.metrics.latency.labels(template).observe(ended - started)
            scored = scope.get(SCORED_KEY)
            if scored is not None:
                self.metrics.section("respond", ended - scored)
