"""OpenTelemetry tracing, off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

`setup_tracing(service)` installs a tracer provider exporting spans over OTLP (HTTP/protobuf;
the exporter reads the standard OTEL_EXPORTER_OTLP_* variables itself); tests pass their own
exporter (an in-memory one). `temporal_interceptors()` is temporalio's TracingInterceptor when
tracing is on: given to a client, it also traces the workers built on that client (workflow
and activity spans, linked to the client call that started them).
"""

from __future__ import annotations

import os
from typing import Any

_enabled = False


def otlp_endpoint() -> str:
    return os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()


def tracing_enabled() -> bool:
    return _enabled


def setup_tracing(service: str, exporter: Any = None) -> bool:
    """Install the tracer provider once per process; returns whether tracing is on."""
    global _enabled
    if exporter is None and not otlp_endpoint():
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor: Any = BatchSpanProcessor(OTLPSpanExporter())
    else:
        processor = SimpleSpanProcessor(exporter)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _enabled = True
    return True


def temporal_interceptors() -> list[Any]:
    if not _enabled:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


def tracer(name: str) -> Any:
    from opentelemetry import trace

    return trace.get_tracer(name)
