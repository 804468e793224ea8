"""Tracing (OpenTelemetry, into an in-memory exporter): off without an OTLP endpoint; with it,
temporalio's interceptor traces a workflow and its activity as one trace, the API opens a span
per request that the Temporal calls it makes hang under, and the agent's turns are spans
tagged with the call id and no conversational content."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from core import telemetry
from tests.api.conftest import ADMIN, ApiStack, run_api


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    exporter = InMemorySpanExporter()
    assert telemetry.setup_tracing("test", exporter=exporter) is not None
    yield exporter
    telemetry.reset_tracing()


def test_off_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert telemetry.setup_tracing("test") is None
    assert not telemetry.tracing_enabled() and telemetry.temporal_interceptors() == []
    assert telemetry.tracer("x") is None and telemetry.trace_agent_turns("c") is False


@activity.defn
async def shout(text: str) -> str:
    return text.upper()


@workflow.defn(sandboxed=False)
class Shout:
    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_activity(
            shout, text, start_to_close_timeout=timedelta(seconds=10)
        )


async def test_workflow_and_activity_are_one_trace(
    api_stack: ApiStack, spans: InMemorySpanExporter
) -> None:
    client = await Client.connect(
        api_stack.temporal_address, interceptors=telemetry.temporal_interceptors()
    )
    queue = f"traced-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[Shout], activities=[shout]):
        assert await client.execute_workflow(Shout.run, "hi", id=queue, task_queue=queue) == "HI"
    got = spans.get_finished_spans()
    names = {s.name for s in got}
    assert {"StartWorkflow:Shout", "RunWorkflow:Shout", "RunActivity:shout"} <= names, names
    assert len({s.context.trace_id for s in got if s.name.endswith(("Shout", "shout"))}) == 1


async def test_api_request_span_parents_its_temporal_calls(
    api_stack: ApiStack, spans: InMemorySpanExporter
) -> None:
    async with run_api(api_stack.settings) as api:  # its Temporal client opens with tracing on
        r = await api.http("POST", "/api/calls", json_body={"customer_name": "Traced"})
        assert r.status == 201, r.body
        assert (await api.http("BREW", "/api/calls")).status < 500
    got = spans.get_finished_spans()
    [server] = [s for s in got if s.name == "POST /api/calls"]
    assert server.attributes is not None and server.attributes["http.response.status_code"] == 201
    children = [
        s for s in got if s.parent is not None and s.parent.span_id == server.context.span_id
    ]
    assert any("Workflow" in s.name for s in children), [s.name for s in got]
    assert any(s.name == "other unmatched" or s.name.startswith("other ") for s in got)


async def test_baggage_from_an_anonymous_caller_never_reaches_temporal(
    api_stack: ApiStack, spans: InMemorySpanExporter
) -> None:
    """An anonymous request's W3C `baggage` is not taken in (its `traceparent` is: the trace
    still continues into Temporal's headers), so nothing a caller chose rides along in the
    call's workflow headers and from there into every process that handles it."""
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = {"baggage": "user.id=mallory-baggage,role=admin", "traceparent": parent}
    async with run_api(api_stack.settings) as api:
        r = await api.http("POST", "/api/calls", json_body={}, headers=headers)
        assert r.status == 201, r.body
    history = await api_stack.raw_client.get_workflow_handle(
        f"call-{r.body['call_id']}"
    ).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert "_tracer-data" in started.header.fields  # the trace context did travel
    assert b"0af7651916cd43dd8448eb211c80319c" in started.header.fields["_tracer-data"].data
    blob = b"".join(e.SerializeToString() for e in history.events)
    assert b"mallory-baggage" not in blob and b"baggage" not in blob
    await api_stack.api.http("POST", f"/api/calls/{r.body['call_id']}/end", token=ADMIN)


async def test_agent_turns_are_spans_with_the_call_id(
    pg_dsn: str, spans: InMemorySpanExporter
) -> None:
    from agent.dealership import Dealership
    from tests.agent.fake_llm import Say, ScriptedLLM
    from tests.agent.test_sarah import RecordedSignals, make_sarah, text_session

    assert telemetry.trace_agent_turns("traced0call0id00000")
    dealership = Dealership(pg_dsn)
    try:
        llm = ScriptedLLM(Say("We open at nine on Saturday."))
        async with text_session(llm) as session:
            await session.start(make_sarah(dealership, RecordedSignals()))
            await session.run(user_input="When do you open on Saturday, Zanzibar branch?")
    finally:
        await dealership.aclose()
    got = spans.get_finished_spans()
    turns = [s for s in got if "turn" in s.name]
    assert turns, sorted({s.name for s in got})
    assert all((s.attributes or {}).get("call_id") == "traced0call0id00000" for s in turns)
    assert not any("Zanzibar" in str(dict(s.attributes or {})) for s in got)


async def test_spans_reach_an_otlp_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """With OTEL_EXPORTER_OTLP_ENDPOINT set, spans are POSTed as OTLP/HTTP protobuf to
    `<endpoint>/v1/traces` (a local receiver stands in for the collector)."""
    import asyncio

    from aiohttp import web

    from devstack.services import free_port

    got: list[tuple[str, str, bytes]] = []

    async def receive(request: web.Request) -> web.Response:
        got.append((request.path, request.content_type, await request.read()))
        return web.Response(status=200, content_type="application/x-protobuf", body=b"")

    app = web.Application()
    app.router.add_post("/v1/traces", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    try:
        provider = telemetry.setup_tracing("callcenter-test")
        assert provider is not None and telemetry.tracing_enabled()
        telemetry.tracer("t").start_span("ops-otlp-check").end()
        assert await asyncio.to_thread(provider.force_flush, 10_000)
        [(path, ctype, body)] = got
        assert path == "/v1/traces" and ctype == "application/x-protobuf"
        assert b"ops-otlp-check" in body and b"callcenter-test" in body
    finally:
        telemetry.reset_tracing()
        await runner.cleanup()
