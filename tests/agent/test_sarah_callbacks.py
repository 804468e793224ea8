"""Sarah's `schedule_callback` through `AgentSession.run()` with a scripted LLM: she reads the
concrete date and number back before anything is scheduled, schedules only once confirmed, in
the customer's time zone; without a way to schedule she promises nothing; and her prompt no
longer forbids a callback. A callback's call opens with why Sarah calls (the opening the agent
reads from the API) and carries what the earlier call said into her instructions."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from agent.api_client import AgentApi
from agent.callbacks import CallbackRefused
from agent.dealership import Dealership
from agent.greetings import callback_greeting_parts
from agent.opening import fetch_opening
from agent.sarah import Sarah, instructions
from core.call_links import CallOpening
from core.models import new_call_id
from core.settings import RecordingConsent
from devstack.services import free_port
from tests.agent.fake_llm import Call, Say, ScriptedLLM
from tests.agent.stand_in_api import serve
from tests.agent.test_sarah import TZ, RecordedSignals, dealership, text_session  # noqa: F401

DENVER = ZoneInfo("America/Denver")


class Booker:
    def __init__(self, refuse: str = "") -> None:
        self.booked: list[tuple[str, datetime, str, str]] = []
        self.via: list[str] = []
        self.refuse = refuse

    async def schedule(self, phone: str, at: datetime, timezone: str, reason: str,
                       via: str = "") -> str:  # fmt: skip
        if self.refuse:
            raise CallbackRefused(self.refuse)
        self.booked.append((phone, at, timezone, reason))
        self.via.append(via)
        return "cb0123456789"


def sarah(dealership: Dealership, booker: Booker | None) -> Sarah:  # noqa: F811
    return Sarah(call_id=new_call_id(), dealership=dealership, signals=RecordedSignals(),
                 consent_policy=RecordingConsent.ANNOUNCE, timezone=TZ, callbacks=booker)  # fmt: skip


def tomorrow() -> str:
    return (datetime.now(DENVER).date() + timedelta(days=1)).isoformat()


def args(**kw: Any) -> dict[str, Any]:
    return {"phone": "(312) 555-0142", "date": tomorrow(), "time": "15:00",
            "reason": "Silverado test drive", "timezone": "America/Denver", **kw}  # fmt: skip


async def run(sarah: Sarah, *calls: dict[str, Any]) -> list[str]:
    script = [x for a in calls for x in (Call("schedule_callback", a), Say("Okay."))]
    outputs = []
    async with text_session(ScriptedLLM(*script)) as session:
        await session.start(sarah)
        for _ in calls:
            result = await session.run(user_input="Call me back tomorrow at three, my time.")
            result.expect.next_event().is_function_call(name="schedule_callback")
            out = result.expect.next_event().is_function_call_output().event().item
            outputs.append(out.output)
    return outputs


async def test_she_reads_the_date_back_and_schedules_only_once_confirmed(
    dealership: Dealership,  # noqa: F811
) -> None:
    booker = Booker()
    asked, done = await run(sarah(dealership, booker), args(), args(confirmed=True))
    day = datetime.fromisoformat(tomorrow())
    assert f"{day:%A, %B} {day.day} at 3:00 PM" in asked and "+13125550142" in asked
    assert "Scheduled" not in asked
    assert [b[0] for b in booker.booked] == ["+13125550142"]
    _, at, zone, reason = booker.booked[0]
    assert at == datetime(day.year, day.month, day.day, 15, 0, tzinfo=DENVER)
    assert (zone, reason) == ("America/Denver", "Silverado test drive")
    assert done.startswith("Scheduled") and "3:00 PM" in done
    assert booker.via == [""], "her own offer, not the desk's"


async def test_a_callback_accepted_after_the_desk_offered_one_is_the_queues(
    dealership: Dealership,  # noqa: F811
) -> None:
    """The desk said no one can come and Sarah offered a callback (agent/desk.py): the one the
    customer then accepts goes to the API `via="queue"`; the next is her own again."""
    booker = Booker()
    agent = sarah(dealership, booker)
    agent.desk_said("max_wait")
    await run(agent, args(confirmed=True), args(confirmed=True))
    assert booker.via == ["queue", ""]
    agent.desk_said("joining")
    await run(agent, args(confirmed=True))
    assert booker.via[-1] == ""


async def test_without_a_way_to_schedule_she_promises_nothing(dealership: Dealership) -> None:  # noqa: F811
    [out] = await run(sarah(dealership, None), args(confirmed=True))
    assert "Scheduled" not in out and "request_human" in out


async def test_a_refusal_is_told_to_the_customer(dealership: Dealership) -> None:  # noqa: F811
    booker = Booker(refuse="phone: the number is on the do-not-call list")
    [out] = await run(sarah(dealership, booker), args(confirmed=True))
    assert "do-not-call" in out and "Scheduled" not in out


def test_the_prompt_no_longer_forbids_a_callback() -> None:
    text = instructions(RecordingConsent.ANNOUNCE, datetime.now(TZ).date())
    assert "Never promise a callback" not in text and "schedule_callback" in text


# --- a callback's call: Sarah opens with why she calls --------------------------------------

OPENING = CallOpening(
    origin_call_id="c" * 20, callback_id="cb0123456789", reason="the Silverado test drive",
    summary='The customer said: "I\'d like to test drive the 2022 Chevrolet Silverado".',
    earlier=["Customer: call me back tomorrow.", "Sarah: Of course."],
)  # fmt: skip


@pytest.mark.parametrize("policy", list(RecordingConsent))
async def test_a_callback_call_opens_with_the_reason(
    dealership: Dealership,  # noqa: F811
    policy: RecordingConsent,
) -> None:
    agent = Sarah(call_id=new_call_id(), dealership=dealership, signals=RecordedSignals(),
                  consent_policy=policy, timezone=TZ, opening=OPENING)  # fmt: skip
    async with text_session(ScriptedLLM()) as session:
        run = await session.start(agent, capture_run=True)
        run.expect.skip_next_event_if(type="agent_handoff")
        said = [run.expect.next_event().is_message(role="assistant").event().item.text_content]
        if policy is RecordingConsent.ANNOUNCE:
            said.append(
                run.expect.next_event().is_message(role="assistant").event().item.text_content
            )
        run.expect.no_more_events()
    first = " ".join(said)
    assert "Sarah from CME Auto Sales" in first
    assert "You asked us to call you back about the Silverado test drive." in first
    assert "Welcome to CME Auto Sales" not in first  # she calls them: no welcome
    assert ("this call is recorded" in said[0]) is (policy is RecordingConsent.ANNOUNCE)
    # What was said before is hers to continue from, and stays there after a consent answer.
    assert "2022 Chevrolet Silverado" in agent.instructions
    assert "- Customer: call me back tomorrow." in agent.instructions
    again = instructions(policy, datetime.now(TZ).date(), consent="granted", opening=OPENING)
    assert "2022 Chevrolet Silverado" in again


async def test_any_other_call_greets_as_before(dealership: Dealership) -> None:  # noqa: F811
    agent = sarah(dealership, None)
    assert agent.opening is None and "Why you are calling" not in agent.instructions


def test_a_callback_without_a_reason_names_the_earlier_call() -> None:
    _, rest = callback_greeting_parts(RecordingConsent.OFF, "")
    assert "call you back about your earlier call with us." in rest


async def answering(status: int, body: Any) -> AsyncIterator[AgentApi]:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body, status=status)

    async with serve("/internal/calls/{call_id}/opening", handler) as url:
        api = AgentApi(url, lambda: "token", call_id="c" * 20)
        try:
            yield api
        finally:
            await api.aclose()


async def test_the_agent_reads_the_opening_from_the_api() -> None:
    async with contextlib.asynccontextmanager(answering)(
        200, {"opening": OPENING.to_json()}
    ) as api:
        assert await fetch_opening(api) == OPENING
    async with contextlib.asynccontextmanager(answering)(200, {"opening": None}) as api:
        assert await fetch_opening(api) is None
    # An API that fails is no opening: Sarah greets as on any call, she is not held up.
    async with contextlib.asynccontextmanager(answering)(503, {"error": {}}) as api:
        assert await fetch_opening(api) is None
    api = AgentApi(f"http://127.0.0.1:{free_port()}", lambda: "token", call_id="c" * 20)
    assert await fetch_opening(api, timeout_s=2) is None
    await api.aclose()
