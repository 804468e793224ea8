"""Prometheus metrics of the API (served at `/metrics`).

Every label comes from a fixed set, so nothing a client sends can add a series: the route is
the matched route's pattern (never the raw path; "unmatched" otherwise), the method one of
`METHODS` ("other" for anything else, e.g. a flood of made-up verbs), the status a number
Sanic itself chose. `render()` builds the body in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY, Counter, Histogram, generate_latest
from sanic import Request
from sanic.response import HTTPResponse

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

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
WEBHOOK_VERIFICATION_FAILURES = Counter(
    "api_webhook_verification_failures_total",
    "LiveKit webhooks refused: unsigned or not matching their signature",
    ["reason"],
)
CALLS_STARTED = Counter("api_calls_started_total", "Calls started through the API")


def route_label(request: Request) -> str:
    route = request.route
    return f"/{route.path}" if route is not None else "unmatched"


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


def status_label(response: HTTPResponse | None) -> str:
    if response is None or not 100 <= response.status <= 599:
        return "none"
    return str(response.status)


def observe_request(request: Request, response: HTTPResponse | None) -> None:
    started = getattr(request.ctx, "started", None)
    label = route_label(request)
    REQUESTS.labels(label, method_label(request.method), status_label(response)).inc()
    if started is not None:
        LATENCY.labels(label).observe(time.perf_counter() - started)


async def render() -> bytes:
    """The exposition text of every metric of this process, built in a worker thread."""
    return await asyncio.to_thread(generate_latest, REGISTRY)
