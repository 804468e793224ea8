"""A server span per API request when tracing is on (`core.telemetry`), named by the matched
route's pattern and a bounded method (as the metrics' labels), so Temporal client calls made
while handling it (the TracingInterceptor's spans) are its children. A caller's `traceparent`
continues its trace; its `baggage` is ignored (it would ride into Temporal's headers)."""

from __future__ import annotations

import contextlib

from sanic import Request
from sanic.response import HTTPResponse

from api.metrics import method_label, route_label
from core.telemetry import tracer


def start_request_span(request: Request) -> None:
    t = tracer("callcenter.api")
    if t is None:
        return
    from opentelemetry import context, trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    method, route = method_label(request.method), route_label(request)
    # `traceparent` only, never `baggage`: the TracingInterceptor copies the context into
    # Temporal headers, and a caller (most are anonymous) must not put anything there.
    parent = TraceContextTextMapPropagator().extract(dict(request.headers))
    span = t.start_span(
        f"{method} {route}",
        context=parent,
        kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": method, "http.route": route},
    )
    request.ctx.otel_span = span
    request.ctx.otel_token = context.attach(trace.set_span_in_context(span, parent))


def end_request_span(request: Request, response: HTTPResponse | None) -> None:
    span = getattr(request.ctx, "otel_span", None)
    if span is None:
        return
    from opentelemetry import context
    from opentelemetry.trace import Status, StatusCode

    status = response.status if response is not None else 0
    span.set_attribute("http.response.status_code", status)
    if status >= 500 or response is None:
        span.set_status(Status(StatusCode.ERROR))
    span.end()
    request.ctx.otel_span = None
    # The response may be sent from another task than the request's (streaming): then the
    # context was never attached there and detaching is not needed.
    with contextlib.suppress(ValueError):
        context.detach(request.ctx.otel_token)
