"""OpenTelemetry tracing, off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

- `setup_tracing(service)`: once per process, a tracer provider exporting spans over OTLP
  (HTTP/protobuf; the exporter reads the standard OTEL_EXPORTER_OTLP_* variables itself).
  Tests pass their own exporter (an in-memory one) and `reset_tracing()` after.
- `temporal_interceptors()`: temporalio's TracingInterceptor when tracing is on. Given to a
  client it also traces the workers built on it (workflow and activity spans, linked to the
  client call that started them, across processes through Temporal headers).
- `tracer(name)`: for the API's request spans (`api.tracing`).
- `trace_agent_turns(call_id)`: hands the provider to livekit-agents, whose own spans cover
  each user and agent turn (STT, LLM, TTS, tools), without conversational content (PII off:
  transcripts are customer data and stay in the payload-encrypted path only).
"""

from __future__ import annotations

import os
from typing import Any

_provider: Any = None  # opentelemetry.sdk.trace.TracerProvider when tracing is on


def otlp_endpoint() -> str:
    return os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()


def tracing_enabled() -> bool:
    return _provider is not None


def setup_tracing(service: str, exporter: Any = None) -> Any:
    """Turn tracing on for this process; returns the provider, or None when it stays off."""
    global _provider
    if exporter is None and not otlp_endpoint():
        return None
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
    if _provider is None and exporter is None:
        trace.set_tracer_provider(provider)  # for libraries that use the global one
    _provider = provider
    return provider


def reset_tracing() -> None:
    """Turn tracing off again (tests)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
    _provider = None


def tracer(name: str) -> Any:
    """A tracer of our provider; None when tracing is off."""
    return _provider.get_tracer(name) if _provider is not None else None


def temporal_interceptors() -> list[Any]:
    if _provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(tracer=_provider.get_tracer("temporalio"))]


def trace_agent_turns(call_id: str) -> bool:
    """Send livekit-agents' turn spans, tagged with the call id, to our provider."""
    if _provider is None:
        return False
    from livekit.agents.telemetry import set_tracer_provider

    set_tracer_provider(_provider, metadata={"call_id": call_id}, allow_pii=False)
    return True
