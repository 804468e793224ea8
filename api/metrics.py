"""Prometheus metrics of the API (served at `/metrics`). Labels use the route pattern, never the
raw path, so an id in a URL cannot explode the number of series."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from sanic import Request
from sanic.response import HTTPResponse

REQUESTS = Counter("api_requests_total", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram(
    "api_request_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WEBHOOKS = Counter(
    "api_webhooks_total", "LiveKit webhooks by event and outcome", ["event", "outcome"]
)
CALLS_STARTED = Counter("api_calls_started_total", "Calls started through the API")


def route_label(request: Request) -> str:
    route = request.route
    return f"/{route.path}" if route is not None else "unmatched"


def observe_request(request: Request, response: HTTPResponse | None) -> None:
    started = getattr(request.ctx, "started", None)
    label = route_label(request)
    status = str(response.status) if response is not None else "none"
    REQUESTS.labels(label, request.method, status).inc()
    if started is not None:
        LATENCY.labels(label).observe(time.perf_counter() - started)
