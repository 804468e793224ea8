"""Sarah's behaviour through `AgentSession.run()` with a scripted LLM and the seeded inventory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from livekit.agents import AgentSession

from agent.dealership import Dealership
from agent.greetings import greeting, greeting_parts
from agent.sarah import Sarah, instructions
from core.models import (
    SIGNAL_AGENT_ALERT,
    SIGNAL_RECORDING_CONSENT,
    AgentAlert,
    RecordingConsentSignal,
    new_call_id,
)
from core.settings import RecordingConsent
from tests.agent.fake_llm import Call, Say, ScriptedLLM, last_tool_output

TZ = ZoneInfo("America/New_York")


class RecordedSignals:
    """Stands in for the bridge: the signals Sarah asked to send, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def send(self, name: str, payload: Any) -> None:
        self.sent.append((name, payload))


@pytest.fixture
async def dealership(pg_dsn: str) -> AsyncIterator[Dealership]:
    d = Dealership(pg_dsn)
    yield d
    await d.aclose()


def text_session(llm: ScriptedLLM) -> AgentSession:
    """A session with text in and out: no audio models, so no turn detector either."""
    return AgentSession(llm=llm, vad=None, turn_handling={"turn_detection": None})


def make_sarah(
    dealership: Dealership,
    signals: RecordedSignals,
    policy: RecordingConsent = RecordingConsent.ANNOUNCE,
    call_id: str | None = None,
) -> Sarah:
    return Sarah(
        call_id=call_id or new_call_id(),
        dealership=dealership,
        signals=signals,
        consent_policy=policy,
        timezone=TZ,
    )


def next_weekday_at(hour: int, weeks_ahead: int = 1) -> datetime:
    """A slot inside opening hours (a Tuesday) a week or more from now."""
    day = datetime.now(TZ).date() + timedelta(weeks=weeks_ahead)
    day += timedelta(days=(1 - day.weekday()) % 7)
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=TZ)


async def test_greeting_discloses_the_recording(dealership: Dealership) -> None:
    signals = RecordedSignals()
    async with text_session(ScriptedLLM()) as session:
        run = await session.start(make_sarah(dealership, signals), capture_run=True)
        run.expect.skip_next_event_if(type="agent_handoff")
        first = run.expect.next_event().is_message(role="assistant").event().item
        second = run.expect.next_event().is_message(role="assistant").event().item
        run.expect.no_more_events()
    disclosure, rest = greeting_parts(RecordingConsent.ANNOUNCE)
    assert (first.text_content, second.text_content) == (disclosure, rest)
    assert first.text_content.startswith("Hello! Welcome to CME Auto Sales.")
    assert "this call is recorded" in disclosure and "recorded" not in rest
    assert signals.sent == []  # announcing needs no answer from the customer


@pytest.mark.parametrize("policy", [RecordingConsent.OFF, RecordingConsent.ASK])
def test_only_a_recording_policy_says_the_call_is_recorded(policy: RecordingConsent) -> None:
    today = datetime.now(TZ).date()
    assert "is recorded" not in greeting(policy)
    assert "This call is recorded." not in instructions(policy, today)
    refused = instructions(policy, today, consent="refused")
    assert "This call is not recorded" in refused
    assert "This call is recorded." in instructions(RecordingConsent.ANNOUNCE, today)
    assert "This call is recorded." in instructions(RecordingConsent.ASK, today, consent="granted")


async def test_ask_policy_asks_and_records_the_answer(dealership: Dealership) -> None:
    signals = RecordedSignals()
    llm = ScriptedLLM(
        Call("recording_consent", {"granted": False}),
        Say("No problem, this call won't be recorded. How can I help you today?"),
    )
    async with text_session(llm) as session:
        run = await session.start(
            make_sarah(dealership, signals, RecordingConsent.ASK), capture_run=True
        )
        run.expect.skip_next_event_if(type="agent_handoff")
        asked = run.expect.next_event().is_message(role="assistant").event().item
        assert "Is that okay with you?" in (asked.text_content or "")

        await declines(session, "I'd rather you didn't record it.")
    assert_declined(signals)


async def declines(session: AgentSession, said: str) -> None:
    """The customer says `said`: Sarah records a refusal with the tool, then answers."""
    result = await session.run(user_input=said)
    result.expect.next_event().is_function_call(
        name="recording_consent", arguments={"granted": False}
    )
    result.expect.next_event().is_function_call_output()
    result.expect.next_event().is_message(role="assistant")
    result.expect.no_more_events()


def assert_declined(signals: RecordedSignals) -> None:
    """The workflow was sent one consent signal: granted false."""
    assert [name for name, _ in signals.sent] == [SIGNAL_RECORDING_CONSENT]
    consent = signals.sent[0][1]
    assert isinstance(consent, RecordingConsentSignal)
    assert consent.granted is False and consent.id


@pytest.mark.parametrize("policy", list(RecordingConsent))
async def test_every_policy_offers_the_consent_tool(
    dealership: Dealership, policy: RecordingConsent
) -> None:
    sarah = make_sarah(dealership, RecordedSignals(), policy)
    names = {getattr(t, "id", None) for t in sarah.tools}
    assert {"search_inventory", "book_test_drive", "request_human", "recording_consent"} <= names


async def test_announce_policy_hears_a_customer_who_objects_to_the_recording(
    dealership: Dealership,
) -> None:
    """Under `announce` nobody asks, but "don't record this" is heard: the tool sends the
    workflow a withdrawal (granted false) and the privacy line stops saying it is recorded."""
    today = datetime.now(TZ).date()
    assert "recording_consent" in instructions(RecordingConsent.ANNOUNCE, today)
    signals = RecordedSignals()
    llm = ScriptedLLM(
        Call("recording_consent", {"granted": False}),
        Say("Of course, I've stopped the recording. How can I help you today?"),
    )
    async with text_session(llm) as session:
        sarah = make_sarah(dealership, signals, RecordingConsent.ANNOUNCE)
        run = await session.start(sarah, capture_run=True)
        run.expect.skip_next_event_if(type="agent_handoff")
        run.expect.next_event().is_message(role="assistant")  # the disclosure
        run.expect.next_event().is_message(role="assistant")
        await declines(session, "Please don't record this call.")
        assert "This call is recorded." not in sarah.instructions
    assert_declined(signals)


async def test_inventory_question_searches_and_answers_from_the_result(
    dealership: Dealership,
) -> None:
    llm = ScriptedLLM(
        Call("search_inventory", {"make": "Toyota", "model": "Camry", "max_price": 25000}),
        Say(lambda ctx: "We have this one: " + last_tool_output(ctx).splitlines()[1]),
    )
    async with text_session(llm) as session:
        await session.start(make_sarah(dealership, RecordedSignals()))
        result = await session.run(user_input="Do you have a Toyota Camry for under 25 grand?")

    result.expect.next_event().is_function_call(
        name="search_inventory",
        arguments={"make": "Toyota", "model": "Camry", "max_price": 25000},
    )
    output = result.expect.next_event().is_function_call_output(is_error=False).event().item.output
    # the seeded lot has two Camrys: the 2022 LE at $22,490 fits, the new 2024 SE does not
    assert "2022 Toyota Camry LE" in output and "$22,490" in output
    assert "2024" not in output
    answer = result.expect.next_event().is_message(role="assistant").event().item.text_content
    assert answer is not None and "2022 Toyota Camry LE" in answer and "$22,490" in answer
    result.expect.no_more_events()


async def test_search_with_no_match_says_so(dealership: Dealership) -> None:
    llm = ScriptedLLM(
        Call("search_inventory", {"make": "Ferrari"}),
        Say(lambda ctx: last_tool_output(ctx)),
    )
    async with text_session(llm) as session:
        await session.start(make_sarah(dealership, RecordedSignals()))
        result = await session.run(user_input="Got any Ferraris?")
    result.expect.next_event().is_function_call(name="search_inventory")
    out = result.expect.next_event().is_function_call_output().event().item.output
    assert out.startswith("No matching cars")


async def test_booking_a_test_drive_stores_it(dealership: Dealership, pg_dsn: str) -> None:
    call_id = new_call_id()
    slot = next_weekday_at(10)
    args = {
        "stock_number": "CME23103",  # 2023 Toyota RAV4 XLE Hybrid
        "customer_name": "Dana Whitfield",
        "phone": "(555) 201-7788",
        "date": slot.date().isoformat(),
        "time": "10:00",
    }
    llm = ScriptedLLM(
        Call("book_test_drive", args),
        Say(lambda ctx: "You're all set. " + last_tool_output(ctx).split(" Read")[0]),
    )
    async with text_session(llm) as session:
        await session.start(make_sarah(dealership, RecordedSignals(), call_id=call_id))
        result = await session.run(user_input="Book me for next Tuesday at 10, Dana Whitfield.")

    result.expect.next_event().is_function_call(name="book_test_drive", arguments=args)
    out = result.expect.next_event().is_function_call_output(is_error=False).event().item.output
    reply = result.expect.next_event().is_message(role="assistant").event().item.text_content
    assert "2023 Toyota RAV4 XLE Hybrid" in out and "Reference TD-" in out
    ref = out.split("Reference ")[1].split(".")[0]
    assert reply is not None and ref in reply

    conn = await asyncpg.connect(pg_dsn)
    try:
        row = await conn.fetchrow("SELECT * FROM test_drives WHERE call_id = $1", call_id)
    finally:
        await conn.close()
    assert row is not None
    assert row["reference"] == ref
    assert row["customer_name"] == "Dana Whitfield"
    assert row["customer_phone"] == "5552017788"
    assert row["scheduled_at"] == slot
    assert row["status"] == "booked"


async def test_a_taken_slot_is_refused_and_a_retry_is_idempotent(
    dealership: Dealership, pg_dsn: str
) -> None:
    slot = next_weekday_at(15, weeks_ahead=2)
    first, second = new_call_id(), new_call_id()
    booking = await dealership.book_test_drive(
        call_id=first,
        stock_number="CME24110",
        scheduled_at=slot,
        customer_name="Ray",
        customer_phone="5550001111",
    )
    again = await dealership.book_test_drive(
        call_id=first,
        stock_number="CME24110",
        scheduled_at=slot,
        customer_name="Ray",
        customer_phone="5550001111",
    )
    assert again.reference == booking.reference and again.already_booked

    args = {
        "stock_number": "CME24110",
        "customer_name": "Lee",
        "phone": "555 000 2222",
        "date": slot.date().isoformat(),
        "time": "15:00",
    }
    llm = ScriptedLLM(Call("book_test_drive", args), Say("That time is taken, sorry."))
    async with text_session(llm) as session:
        await session.start(make_sarah(dealership, RecordedSignals(), call_id=second))
        result = await session.run(user_input="Book the F-150 then.")
    result.expect.next_event().is_function_call(name="book_test_drive")
    out = result.expect.next_event().is_function_call_output(is_error=True).event().item.output
    assert "already booked" in out

    conn = await asyncpg.connect(pg_dsn)
    try:
        holders = await conn.fetch(
            "SELECT call_id FROM test_drives WHERE reference = $1", booking.reference
        )
    finally:
        await conn.close()
    assert [r["call_id"] for r in holders] == [first]


async def test_booking_outside_opening_hours_is_refused(dealership: Dealership) -> None:
    sunday = next_weekday_at(10) + timedelta(days=5)
    assert sunday.weekday() == 6
    llm = ScriptedLLM(
        Call(
            "book_test_drive",
            {
                "stock_number": "CME23103",
                "customer_name": "Sam",
                "phone": "5551234567",
                "date": sunday.date().isoformat(),
                "time": "10:00",
            },
        ),
        Say("We're closed on Sundays."),
    )
    async with text_session(llm) as session:
        await session.start(make_sarah(dealership, RecordedSignals()))
        result = await session.run(user_input="Sunday at 10?")
    result.expect.next_event().is_function_call(name="book_test_drive")
    out = result.expect.next_event().is_function_call_output(is_error=True).event().item.output
    assert "Monday to Saturday" in out


async def test_asking_for_a_human_raises_the_alert(dealership: Dealership) -> None:
    signals = RecordedSignals()
    llm = ScriptedLLM(
        Call("request_human", {"reason": "customer asked for a manager"}),
        Say("Of course. I've asked for a colleague and will tell you what the desk says."),
        Call("request_human", {"reason": "asked again"}),
        Say("I've asked already; I'll tell you as soon as I know."),
    )
    async with text_session(llm) as session:
        await session.start(make_sarah(dealership, signals))
        result = await session.run(user_input="I want to talk to a manager, now.")
        result.expect.next_event().is_function_call(
            name="request_human", arguments={"reason": "customer asked for a manager"}
        )
        out = result.expect.next_event().is_function_call_output(is_error=False).event().item
        assert "do not say that someone is coming" in out.output  # only what is true
        assert "will join" not in out.output and "shortly" not in out.output
        reply = result.expect.next_event().is_message(role="assistant").event().item
        assert "asked for a colleague" in (reply.text_content or "")
        again = await session.run(user_input="Hello? Is anyone coming?")
        again.expect.contains_function_call(name="request_human")

    alerts = [p for name, p in signals.sent if name == SIGNAL_AGENT_ALERT]
    assert len(alerts) == 1  # asking twice raises one alert
    assert isinstance(alerts[0], AgentAlert)
    assert alerts[0].kind == "handoff_requested"
    assert alerts[0].detail == "customer asked for a manager"
