"""The agent heals: a failing provider gets an apology from a file and a hand-off, never a
hang-up; a replacement agent picks up the conversation from the workflow's transcript."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from livekit.agents import AgentSession, APIConnectOptions, APIStatusError, llm
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

from agent.dealership import Dealership
from agent.resilience import APOLOGY_TEXT, ProviderGuard, apology_audio, session_connect_options
from agent.resume import RESUME_INSTRUCTIONS, chat_context, wants_resume
from agent.sarah import Sarah, greeting_parts
from core.models import SIGNAL_AGENT_ALERT, TranscriptEntry, new_call_id
from core.settings import RecordingConsent
from tests.agent.fake_llm import Say, ScriptedLLM

TZ = ZoneInfo("America/New_York")


class Signals:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def send(self, name: str, payload: Any) -> None:
        self.sent.append((name, payload))


class DownLLM(llm.LLM):
    """A provider that answers every request with a 503 (the plugin boundary)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name
        self.requests = 0

    @property
    def model(self) -> str:
        return self._name

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **_: Any,
    ) -> llm.LLMStream:
        self.requests += 1
        return _DownStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class _DownStream(llm.LLMStream):
    async def _run(self) -> None:
        raise APIStatusError("service unavailable", status_code=503, retryable=True)


@pytest.fixture
async def dealership(pg_dsn: str) -> AsyncIterator[Dealership]:
    d = Dealership(pg_dsn)
    yield d
    await d.aclose()


def sarah(dealership: Dealership, signals: Signals, **kw: Any) -> Sarah:
    return Sarah(
        call_id=new_call_id(),
        dealership=dealership,
        signals=signals,
        consent_policy=kw.pop("policy", RecordingConsent.OFF),
        timezone=TZ,
        **kw,
    )


async def test_every_llm_down_apologises_hands_off_and_keeps_the_line(
    dealership: Dealership,
) -> None:
    primary, secondary = DownLLM("primary"), DownLLM("secondary")
    adapter = llm.FallbackAdapter([primary, secondary], attempt_timeout=2, retry_interval=0)
    signals = Signals()
    session = AgentSession(
        llm=adapter,
        vad=None,
        turn_handling={"turn_detection": None},
        conn_options=session_connect_options(),
    )
    guard = ProviderGuard(session, signals, call_id="c1", apology_every_s=0)
    guard.attach()
    closed: list[Any] = []
    session.on("close", closed.append)
    said: list[str] = []
    session.on(
        "conversation_item_added",
        lambda ev: said.append(ev.item.text_content or "") if ev.item.role == "assistant" else None,
    )
    async with session:
        await session.start(sarah(dealership, signals))
        for n in range(5):  # more than the session's default of 3 errors before it closes
            try:
                await session.run(user_input=f"Hello? ({n})")
            except RuntimeError:
                pass  # the run reports the failed turn; the session must stay up regardless
        assert not closed, "a provider failure must never close the session"
        assert primary.requests >= 1 and secondary.requests >= 1  # the adapter fell back
    assert guard.failures >= 5 and guard.apologies >= 5
    assert said.count(APOLOGY_TEXT) >= 1
    alerts = [p for name, p in signals.sent if name == SIGNAL_AGENT_ALERT]
    assert len(alerts) == 1 and alerts[0].kind == "handoff_requested"  # one hand-off a call
    assert "llm_error" in alerts[0].detail


async def test_the_apology_plays_from_its_file_without_tts() -> None:
    frames = [f async for f in apology_audio()]
    seconds = sum(f.samples_per_channel / f.sample_rate for f in frames)
    assert 5.0 < seconds < 12.0
    assert all(f.sample_rate == 24000 and f.num_channels == 1 for f in frames)


def test_resume_is_asked_for_by_the_dispatch() -> None:
    assert wants_resume('{"call_id": "x", "serial": 2, "resume": true}')
    assert not wants_resume('{"call_id": "x"}') and not wants_resume("nonsense")


async def test_a_replacement_picks_up_the_thread(dealership: Dealership) -> None:
    lines = [
        TranscriptEntry(1, "l1", "assistant", "Hello! Welcome to CME Auto Sales."),
        TranscriptEntry(2, "l2", "customer", "Do you have a Camry under 30 thousand?"),
        TranscriptEntry(3, "l3", "supervisor", "Sarah will be right back."),
    ]
    model = ScriptedLLM(Say("Sorry about that! You were asking about a Camry under 30,000."))
    async with AgentSession(llm=model, vad=None, turn_handling={"turn_detection": None}) as s:
        run = await s.start(
            sarah(dealership, Signals(), resume=chat_context(lines)), capture_run=True
        )
        run.expect.skip_next_event_if(type="agent_handoff")
        msg = run.expect.next_event().is_message(role="assistant").event().item
        run.expect.no_more_events()
    assert "Camry" in (msg.text_content or "")
    assert all(p not in (msg.text_content or "") for p in greeting_parts(RecordingConsent.OFF) if p)
    (ctx,) = model.requests
    texts = [i.text_content for i in ctx.items if i.type == "message"]
    assert "Do you have a Camry under 30 thousand?" in texts
    assert "(supervisor) Sarah will be right back." in texts
    assert any(RESUME_INSTRUCTIONS in (t or "") for t in texts)
