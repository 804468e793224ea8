"""Sarah's `schedule_callback` through `AgentSession.run()` with a scripted LLM: she reads the
concrete date and number back before anything is scheduled, schedules only once confirmed, in
the customer's time zone; without a way to schedule she promises nothing; and her prompt no
longer forbids a callback."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from agent.callbacks import CallbackRefused
from agent.dealership import Dealership
from agent.sarah import Sarah, instructions
from core.models import new_call_id
from core.settings import RecordingConsent
from tests.agent.fake_llm import Call, Say, ScriptedLLM
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
