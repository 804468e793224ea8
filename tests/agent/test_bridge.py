"""The bridge against a real Temporal server: session events become the call workflow's
signals, in order, once each; the last line arrives before the hang-up; a Temporal restart
loses nothing and duplicates nothing.

The sequence tests run the real `CallWorkflow` (with the workflow tests' stand-in activities)
and read both what it kept and the raw signals in its history.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from livekit.agents import (
    AgentSession,
    CloseEvent,
    CloseReason,
    ConversationItemAddedEvent,
    UserInputTranscribedEvent,
    UserStateChangedEvent,
)
from livekit.agents.llm import ChatMessage
from livekit.api import TokenVerifier
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agent.api_client import AgentApi
from agent.bridge import CallBridge
from agent.dealership import Dealership
from agent.interim import InterimPoster
from agent.sarah import Sarah, greeting_parts
from agent.signals import SignalQueue
from agent.stt_confidence import FinalTranscripts
from core import models as m
from core.livekit import room_admin_token
from core.models import (
    SIGNAL_AGENT_ALERT,
    SIGNAL_AGENT_JOINED,
    SIGNAL_PARTICIPANT_LEFT,
    SIGNAL_SILENCE,
    SIGNAL_TRANSCRIPT,
    SIGNAL_TRANSCRIPT_BATCH,
    AgentAlert,
    call_workflow_id,
    customer_identity,
    new_call_id,
)
from core.settings import RecordingConsent
from devstack.services import TEMPORAL_BIN, free_port
from testkit.standins import StandIns, until
from tests.agent.fake_llm import Call, Say, ScriptedLLM
from tests.agent.stand_in_api import serve
from workflows.call import CallWorkflow
from workflows.recording import RecordingWorkflow

LK_KEY, LK_SECRET = "devkey", "devsecret-devsecret-devsecret-0123"


def fast_queue(workflow_id: str, client_factory: Any, **kw: Any) -> SignalQueue:
    return SignalQueue(workflow_id, client_factory, backoff_initial_s=0.1, backoff_max_s=0.5, **kw)


def text_session() -> AgentSession:
    return AgentSession(llm=ScriptedLLM(), vad=None, turn_handling={"turn_detection": None})


async def history_signals(handle: WorkflowHandle[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(signal name, payload) of every signal in the workflow's history, in arrival order."""
    conv = DataConverter.default.payload_converter
    out = []
    async for ev in handle.fetch_history_events():
        if ev.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attrs = ev.workflow_execution_signaled_event_attributes
            out.append((attrs.signal_name, conv.from_payload(attrs.input.payloads[0], dict)))
    return out


async def settled_signals(
    handle: WorkflowHandle[Any, Any], at_least: int, timeout: float = 10.0
) -> list[tuple[str, dict[str, Any]]]:
    """The history's signals, batches opened up, once `at_least` are written (a signal that
    arrives while a workflow task runs is written to history when that task completes)."""
    deadline = time.monotonic() + timeout
    while len(got := flatten(await history_signals(handle))) < at_least:
        assert time.monotonic() < deadline, f"only {len(got)} signals in history"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # anything beyond what we expect (a duplicate) would show too
    return flatten(await history_signals(handle))


def flatten(signals: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Batches opened up: one (name, payload) per line, as if each had come on its own."""
    out = []
    for name, payload in signals:
        if name == SIGNAL_TRANSCRIPT_BATCH:
            out += [(SIGNAL_TRANSCRIPT, line) for line in payload["lines"]]
        else:
            out.append((name, payload))
    return out


@pytest.fixture
async def live_call(
    temporal_dev_env: WorkflowEnvironment,
) -> AsyncIterator[tuple[str, WorkflowHandle[Any, Any], StandIns]]:
    """A real CallWorkflow, token issued, waiting for its agent."""
    client = temporal_dev_env.client
    fakes = StandIns()
    queue = f"agent-bridge-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[CallWorkflow, RecordingWorkflow],
        activities=fakes.activities(),
    ):
        call_id = new_call_id()
        handle = await client.start_workflow(
            CallWorkflow.run,
            m.CallInput(
                call_id=call_id,
                customer_name="Ada",
                config=m.CallConfig(livekit_url="ws://lk.test", customer_rejoin_grace_s=0),
            ),
            id=call_workflow_id(call_id),
            task_queue=queue,
        )
        await handle.execute_update(CallWorkflow.issue_token, m.IssueTokenRequest("Ada"))
        yield call_id, handle, fakes
        state = await handle.query(CallWorkflow.get_state)
        if m.CallStatus(state.status).is_active:
            await handle.terminate("test over")


class InterimSink:
    """The API's live path, as far as the agent can tell: records what it is POSTed."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posts.append((request.path, request.headers.get("Authorization", ""), body))
        return web.Response(status=204)


@pytest.fixture
async def interim_sink() -> AsyncIterator[tuple[str, InterimSink]]:
    sink = InterimSink()
    async with serve("/internal/calls/{call_id}/interim", sink.handle) as url:
        yield url, sink


def assistant(
    text: str, *, interrupted: bool = False, **metrics: float
) -> ConversationItemAddedEvent:
    return ConversationItemAddedEvent(
        item=ChatMessage(role="assistant", content=[text], interrupted=interrupted, metrics=metrics)  # type: ignore[arg-type]
    )


def customer_final(text: str) -> UserInputTranscribedEvent:
    return UserInputTranscribedEvent(transcript=text, is_final=True)


async def test_session_events_become_signals_in_order_once_each(
    live_call: tuple[str, WorkflowHandle[Any, Any], StandIns],
    temporal_dev_env: WorkflowEnvironment,
    interim_sink: tuple[str, InterimSink],
) -> None:
    call_id, handle, fakes = live_call
    api_url, sink = interim_sink

    async def connect() -> Client:
        return temporal_dev_env.client

    finals = FinalTranscripts()
    queue = fast_queue(handle.id, connect, call_id=call_id)
    queue.start()
    token = room_admin_token(
        LK_KEY, LK_SECRET, room=m.room_name_for(call_id), identity="agent-sarah"
    )
    api = AgentApi(api_url, token, call_id=call_id)
    bridge = CallBridge(
        call_id=call_id,
        customer_identity=customer_identity(call_id),
        signals=queue,
        interim=InterimPoster(api),
        finals=finals,
        away_after_s=30,
    )
    session = text_session()
    bridge.attach(session)
    observed: list[Any] = []
    bridge.on_metrics = observed.append

    t0 = time.time()
    bridge.agent_joined("agent-sarah")
    session.emit(
        "user_state_changed",
        UserStateChangedEvent(old_state="listening", new_state="speaking", created_at=t0),
    )
    session.emit(
        "user_input_transcribed",
        UserInputTranscribedEvent(transcript="I'm looking for", is_final=False),
    )
    finals.note("I'm looking for a truck.", 0.931)  # as Sarah's stt_node notes it
    session.emit("user_input_transcribed", customer_final("I'm looking for a truck."))
    session.emit(
        "conversation_item_added",
        ConversationItemAddedEvent(
            item=ChatMessage(
                role="user",
                content=["I'm looking for a truck."],
                metrics={"end_of_turn_delay": 0.42, "transcription_delay": 0.18},
            )
        ),
    )
    session.emit(
        "conversation_item_added",
        assistant(
            "We have three trucks on the lot.",
            llm_node_ttft=0.31,
            tts_node_ttfb=0.22,
            e2e_latency=1.05,
            started_speaking_at=t0 + 2,
            stopped_speaking_at=t0 + 4,
        ),
    )
    session.emit("conversation_item_added", assistant("The cheapest is a", interrupted=True))
    session.emit(
        "user_state_changed", UserStateChangedEvent(old_state="listening", new_state="away")
    )
    bridge.send(
        SIGNAL_AGENT_ALERT, AgentAlert(id="alert-1", kind="handoff_requested", detail="manager")
    )
    session.emit("user_input_transcribed", customer_final("Never mind, bye."))
    session.emit("close", CloseEvent(reason=CloseReason.PARTICIPANT_DISCONNECTED))
    session.emit("close", CloseEvent(reason=CloseReason.PARTICIPANT_DISCONNECTED))  # said once

    assert await bridge.aclose(timeout=20), "every signal delivered before the end"
    await api.aclose()

    # what reached the workflow, in order, once each
    signals = await settled_signals(handle, 8)
    assert [(n, p.get("speaker")) for n, p in signals] == [
        (SIGNAL_AGENT_JOINED, None),
        (SIGNAL_TRANSCRIPT, "customer"),
        (SIGNAL_TRANSCRIPT, "assistant"),
        (SIGNAL_TRANSCRIPT, "assistant"),
        (SIGNAL_SILENCE, "customer"),
        (SIGNAL_AGENT_ALERT, None),
        (SIGNAL_TRANSCRIPT, "customer"),  # the last line, before the hang-up
        (SIGNAL_PARTICIPANT_LEFT, None),
    ]
    ids = [p["id"] for _, p in signals]
    assert len(set(ids)) == len(ids) and all(ids)
    assert signals[7][1]["identity"] == customer_identity(call_id)
    assert all("I'm looking for" != p.get("text") for _, p in signals)  # no interim in history

    # what the workflow made of it
    page = await handle.query(CallWorkflow.get_transcript, 0)
    assert [(e.speaker, e.text, e.interrupted) for e in page.lines] == [
        ("customer", "I'm looking for a truck.", False),
        ("assistant", "We have three trucks on the lot.", False),
        ("assistant", "The cheapest is a", True),
        ("customer", "Never mind, bye.", False),
    ]
    first, reply, _, last = page.lines
    assert first.confidence == 0.931 and last.confidence == 1.0  # none noted for the last
    assert first.started_at <= first.ended_at < reply.started_at < reply.ended_at

    await until(lambda: fakes.of_kind("status") and fakes.of_kind("status")[-1].data["status"] == "completed",
                timeout=15, what="the call to complete")  # fmt: skip
    state = await handle.query(CallWorkflow.get_state)
    assert state.end_reason == "customer_left" and state.silence_alerts == 1
    assert state.agent_identity == "agent-sarah"
    # the turn's figures ride on the assistant's line (the API stores them with it)
    metrics = signals[2][1]["metrics"]
    assert (metrics["end_of_utterance_delay_s"], metrics["time_to_first_token_s"],
            metrics["time_to_first_audio_s"]) == (0.42, 0.31, 0.22)  # fmt: skip
    # every figure labelled for what it is
    assert (metrics["stt_delay_s"], metrics["end_to_end_latency_s"]) == (0.18, 1.05)
    assert observed and observed[0].end_to_end_latency_s == 1.05
    assert [e.data["kind"] for e in fakes.of_kind("handoff_requested")] == ["handoff_requested"]
    # the workflow logs what it decided, never what was said
    assert fakes.of_kind("final_transcript") == [] and fakes.of_kind("agent_metrics") == []

    # interims went to the API's live path only, with the service token
    assert [(path, body) for path, _, body in sink.posts] == [
        (
            f"/internal/calls/{call_id}/interim",
            {"speaker": "customer", "text": "I'm looking for", "id": "interim-1"},
        )
    ]
    # the bearer is what the API checks: a LiveKit JWT with roomAdmin on this call's room
    claims = TokenVerifier(LK_KEY, LK_SECRET).verify(sink.posts[0][1].removeprefix("Bearer "))
    assert claims.video is not None and claims.video.room_admin
    assert claims.video.room == m.room_name_for(call_id)


async def test_a_real_session_run_is_transcribed(
    live_call: tuple[str, WorkflowHandle[Any, Any], StandIns],
    temporal_dev_env: WorkflowEnvironment,
    pg_dsn: str,
) -> None:
    """The same wiring on a running session: greeting, the tool's alert and the reply, in order."""
    call_id, handle, fakes = live_call

    async def connect() -> Client:
        return temporal_dev_env.client

    queue = fast_queue(handle.id, connect, call_id=call_id)
    queue.start()
    bridge = CallBridge(
        call_id=call_id, customer_identity=customer_identity(call_id), signals=queue
    )
    dealership = Dealership(pg_dsn)
    llm = ScriptedLLM(
        Call("request_human", {"reason": "wants a manager"}), Say("A colleague is on the way.")
    )
    async with AgentSession(llm=llm, vad=None, turn_handling={"turn_detection": None}) as session:
        bridge.attach(session)
        sarah = Sarah(
            call_id=call_id,
            dealership=dealership,
            signals=bridge,
            consent_policy=RecordingConsent.ANNOUNCE,
            timezone=ZoneInfo("UTC"),
        )
        bridge.agent_joined("agent-sarah")
        await session.start(sarah)
        await session.run(user_input="Get me a manager.")
    assert await bridge.aclose(timeout=20)
    await dealership.aclose()

    signals = await settled_signals(handle, 5)
    assert [(n, p.get("speaker") or p.get("kind")) for n, p in signals] == [
        (SIGNAL_AGENT_JOINED, None),
        (SIGNAL_TRANSCRIPT, "assistant"),  # the disclosure, heard in full
        (SIGNAL_TRANSCRIPT, "assistant"),  # the rest of the greeting, interruptible
        (SIGNAL_AGENT_ALERT, "handoff_requested"),
        (SIGNAL_TRANSCRIPT, "assistant"),
    ]
    page = await handle.query(CallWorkflow.get_transcript, 0)
    assert [e.text for e in page.lines] == [
        *greeting_parts(RecordingConsent.ANNOUNCE),
        "A colleague is on the way.",
    ]
    assert signals[4][1]["metrics"]["time_to_first_token_s"] is not None
    await until(lambda: fakes.of_kind("handoff_requested"), what="the handoff event")
    # the greeting said the call is recorded, so the workflow started the recording
    await until(lambda: fakes.count("start_egress") == 1, what="egress after the greeting")


async def test_undeliverable_signal_is_skipped_not_blocking(
    temporal_dev_env: WorkflowEnvironment,
) -> None:
    async def connect() -> Client:
        return temporal_dev_env.client

    queue = fast_queue(call_workflow_id(new_call_id()), connect)  # no such workflow
    queue.start()
    queue.send(SIGNAL_AGENT_ALERT, AgentAlert(id="a1", kind="handoff_requested"))
    assert await queue.aclose(timeout=10)
    assert queue.dropped == 1 and queue.delivered == 0


async def test_an_unencodable_signal_is_dropped_and_an_unknown_failure_retried(
    live_call: tuple[str, WorkflowHandle[Any, Any], StandIns],
    temporal_dev_env: WorkflowEnvironment,
) -> None:
    """Only a payload that can never be encoded is dropped; any other failure keeps the line."""
    call_id, handle, _ = live_call
    real = temporal_dev_env.client
    failures = {"left": 1}

    class FlakyClient:  # the real client, but its first signal fails in an unforeseen way
        def get_workflow_handle(self, workflow_id: str) -> Any:
            inner = real.get_workflow_handle(workflow_id)

            class Handle:
                async def signal(self, *args: Any, **kw: Any) -> None:
                    if failures["left"]:
                        failures["left"] -= 1
                        raise RuntimeError("something nobody foresaw")
                    await inner.signal(*args, **kw)

            return Handle()

    async def connect() -> Any:
        return FlakyClient()

    queue = fast_queue(handle.id, connect, call_id=call_id)
    queue.start()
    queue.send(SIGNAL_TRANSCRIPT, m.TranscriptLine(id="kept", speaker="customer", text="hello"))
    queue.send(SIGNAL_AGENT_ALERT, AgentAlert(id="bad", kind="x", detail=object()))  # type: ignore[arg-type]
    queue.send(SIGNAL_TRANSCRIPT, m.TranscriptLine(id="after", speaker="customer", text="bye"))
    assert await queue.aclose(timeout=10)
    assert failures["left"] == 0 and queue.dropped == 1
    assert [p["id"] for _, p in await settled_signals(handle, 2)] == ["kept", "after"]


async def test_a_full_queue_refuses_new_signals_and_says_so() -> None:
    async def never() -> Client:
        raise RuntimeError("not started")

    queue = SignalQueue("call-x", never, max_pending=3)  # not started: nothing leaves
    for n in range(5):
        queue.send(SIGNAL_TRANSCRIPT, {"id": str(n)})
    assert [p.payload["id"] for p in queue._queue] == ["0", "1", "2"]
    assert queue.dropped == 2


async def test_interim_failures_are_tolerated() -> None:
    api = AgentApi(f"http://127.0.0.1:{free_port()}", lambda: "t", call_id="c")
    poster = InterimPoster(api, timeout_s=0.5)
    poster.post("hello")
    poster.post("hello there")
    await poster.aclose()
    await api.aclose()
    assert poster.sent == 0 and poster.failures >= 1


async def test_interim_lines_faster_than_the_api_send_only_the_newest() -> None:
    received: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        received.append((await request.json())["text"])
        first_in.set()
        await release.wait()  # the API is slow: the next lines arrive meanwhile
        return web.json_response({}, status=202)

    async with serve("/internal/calls/{call_id}/interim", handle) as url:
        api = AgentApi(url, lambda: "t", call_id="c")
        poster = InterimPoster(api, timeout_s=10)
        poster.post("I")
        await first_in.wait()
        for text in ("I want", "I want a", "I want a truck"):
            poster.post(text)
        release.set()
        await poster.aclose()
        await api.aclose()
    assert received == ["I", "I want a truck"]
    assert (poster.sent, poster.failures) == (2, 0)


async def test_temporal_restart_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    """Stop the server mid-call, keep talking, restart it: every signal arrives, in order, once."""
    port = free_port()
    db = str(tmp_path / "temporal.db")

    async def start() -> WorkflowEnvironment:
        return await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(TEMPORAL_BIN),
            port=port,
            dev_server_database_filename=db,
            ui=False,
        )

    env = await start()
    try:
        call_id = new_call_id()
        # No worker: the signals are checked in the server's history, where a duplicate or a
        # gap would show even if a workflow would have hidden it by deduplicating.
        handle = await env.client.start_workflow(
            m.WORKFLOW_CALL, id=call_workflow_id(call_id), task_queue=f"nobody-{uuid.uuid4().hex}"
        )

        async def connect() -> Client:
            return await Client.connect(f"127.0.0.1:{port}")

        queue = fast_queue(handle.id, connect, call_id=call_id)
        queue.start()
        bridge = CallBridge(
            call_id=call_id, customer_identity=customer_identity(call_id), signals=queue
        )
        session = AgentSession(llm=ScriptedLLM(), vad=None, turn_handling={"turn_detection": None})
        bridge.attach(session)

        bridge.agent_joined("agent-sarah")
        session.emit("user_input_transcribed", customer_final("Hi, line one."))
        session.emit("conversation_item_added", assistant("Hello! Line two."))
        assert await queue.drain(timeout=10)
        before = queue.delivered

        await env.shutdown()  # Temporal goes away mid-call
        lines = [f"Line {n} while Temporal is down." for n in range(3, 9)]
        for n, text in enumerate(lines):
            event = customer_final(text) if n % 2 == 0 else assistant(text)
            session.emit(
                "user_input_transcribed" if n % 2 == 0 else "conversation_item_added", event
            )
        await asyncio.sleep(1.0)
        assert queue.pending == len(lines)  # kept, in order, while the agent goes on
        assert queue.delivered == before

        env = await start()  # back, same database
        session.emit("user_input_transcribed", customer_final("Line nine, after the restart."))
        session.emit("close", CloseEvent(reason=CloseReason.PARTICIPANT_DISCONNECTED))
        assert await bridge.aclose(timeout=60)

        raw = await history_signals(env.client.get_workflow_handle(handle.id))
        assert any(n == SIGNAL_TRANSCRIPT_BATCH for n, _ in raw)  # the backlog went as batches
        got = flatten(raw)
        ids = [p["id"] for _, p in got]
        assert len(ids) == len(set(ids)), "a signal arrived twice"
        assert [n for n, _ in got] == (
            [SIGNAL_AGENT_JOINED] + [SIGNAL_TRANSCRIPT] * 9 + [SIGNAL_PARTICIPANT_LEFT]
        )
        assert [p["text"] for n, p in got if n == SIGNAL_TRANSCRIPT] == [
            "Hi, line one.",
            "Hello! Line two.",
            *lines,
            "Line nine, after the restart.",
        ]
        assert queue.dropped == 0
    finally:
        await env.shutdown()


async def test_a_turn_travels_as_one_signal_when_coalescing(
    live_call: tuple[str, WorkflowHandle[Any, Any], StandIns],
    temporal_dev_env: WorkflowEnvironment,
) -> None:
    """The customer's line waits for Sarah's reply: one `transcript_batch` carries the turn;
    a customer line with no reply within the window still goes, alone, once the window ends."""
    call_id, handle, _ = live_call

    async def connect() -> Client:
        return temporal_dev_env.client

    queue = fast_queue(handle.id, connect, call_id=call_id, coalesce_s=1.5)
    queue.start()
    line = lambda i, who: m.TranscriptLine(id=f"l{i}", speaker=who, text=f"line {i}")  # noqa: E731
    queue.send(SIGNAL_TRANSCRIPT, line(1, "customer"))
    await asyncio.sleep(0.3)
    assert queue.pending == 1  # held back for the reply
    queue.send(SIGNAL_TRANSCRIPT, line(2, "assistant"))
    assert await queue.drain(5)
    started = time.monotonic()
    queue.send(SIGNAL_TRANSCRIPT, line(3, "customer"))  # nobody answers
    assert await queue.drain(5)
    waited = time.monotonic() - started
    await queue.aclose(5)
    assert [p["id"] for _, p in await settled_signals(handle, 3)] == ["l1", "l2", "l3"]
    signals = await history_signals(handle)  # as sent, batches not opened up
    assert [n for n, _ in signals] == [SIGNAL_TRANSCRIPT_BATCH, SIGNAL_TRANSCRIPT]
    assert [ln["id"] for ln in signals[0][1]["lines"]] == ["l1", "l2"]
    assert signals[1][1]["id"] == "l3" and 1.2 <= waited < 4
    page = await handle.query(CallWorkflow.get_transcript, 0)
    assert [e.text for e in page.lines] == ["line 1", "line 2", "line 3"]
