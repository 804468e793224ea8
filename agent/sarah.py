"""Sarah of CME Auto Sales: the `Agent` whose instructions live in prompts/sarah.md and whose
tools are the dealership's inventory, test-drive bookings and a hand-off to a human.

Sarah never talks to Temporal herself: alerts and consent go to a `SignalSink` (the bridge),
which queues them for the call's workflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable
from datetime import date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from livekit import rtc
from livekit.agents import (
    Agent,
    FunctionTool,
    ModelSettings,
    RunContext,
    StopResponse,
    ToolError,
    function_tool,
    stt,
)
from livekit.agents.llm import ChatContext, ChatMessage

import core.callbacks as cb
from agent.callbacks import CallbackBooker, CallbackRefused
from agent.dealership import Dealership, DealershipError
from agent.greetings import PROMPTS, callback_greeting_parts, greeting_parts, prompt_texts
from agent.opening import opening_instructions
from agent.resume import RESUME_INSTRUCTIONS
from agent.signals import SignalSink, new_signal_id, utc_now
from agent.stt_confidence import FinalTranscripts
from core.call_links import CallOpening
from core.desk import Notice
from core.log import get_logger
from core.models import (
    SIGNAL_AGENT_ALERT,
    SIGNAL_RECORDING_CONSENT,
    AgentAlert,
    EventKind,
    RecordingConsentSignal,
)
from core.settings import RecordingConsent

log = get_logger(__name__)
T = TypeVar("T")

# A tool slower than this speaks a short filler, so the customer never waits in silence.
FILLER_AFTER_S = 1.0
FILLER = "One moment while I check that for you."
OPENING_HOURS = (time(9, 0), time(18, 0))  # Monday to Saturday, dealership time
BOOKING_HORIZON = timedelta(days=60)


def instructions(
    policy: RecordingConsent, today: date, *, consent: str = "", opening: CallOpening | None = None
) -> str:
    """Sarah's instructions. The privacy line says the call is recorded only when it is:
    never under `off`, under `ask` only once the customer agreed (`consent`), under
    `announce` until the customer objected. A callback's call (`opening`) adds why she calls."""
    texts = prompt_texts()["instructions"]
    recorded = (policy is RecordingConsent.ANNOUNCE and consent != "refused") or (
        policy is RecordingConsent.ASK and consent == "granted"
    )
    notice = texts["recorded"] if recorded else texts["not_recorded"]
    text = (PROMPTS / "sarah.md").read_text().replace("{recording_notice}", notice)
    text += f"\n## Today\nToday is {today:%A, %B %d, %Y} at the dealership.\n"
    if policy is RecordingConsent.ASK and not consent:
        text += "\n## Recording consent\n" + texts["ask"] + "\n"
    elif recorded:
        # Whatever the policy, a customer who asks not to be recorded is heard.
        text += "\n## Recording consent\n" + texts["withdraw"] + "\n"
    return text + (opening_instructions(opening) if opening else "")


@function_tool
async def recording_consent(context: RunContext, granted: bool) -> str:
    """Record the customer's answer to whether this call may be recorded, or that they do not
    want it recorded (at any point in the call, whether or not you asked).

    Args:
        granted: true if the customer agreed to the recording, false if they declined or asked
            not to be recorded.
    """
    agent = context.session.current_agent
    assert isinstance(agent, Sarah)
    agent.signals.send(
        SIGNAL_RECORDING_CONSENT,
        RecordingConsentSignal(id=new_signal_id("consent"), granted=granted, at=utc_now()),
    )
    log.info("recording_consent", call_id=agent.call_id, granted=granted)
    # From now on the privacy line says what is true for this call.
    await agent.update_instructions(
        instructions(
            agent.consent_policy,
            datetime.now(agent.timezone).date(),
            consent="granted" if granted else "refused",
            opening=agent.opening,
        )
    )
    if agent.consent_policy is RecordingConsent.OFF:
        return "This call is not recorded. Tell the customer so, then ask how you can help."
    if granted:
        return "Consent recorded. Thank the customer and ask how you can help."
    return "Recording will be stopped. Reassure the customer, then ask how you can help."


class Sarah(Agent):
    """The dealership's voice agent for one call."""

    def __init__(
        self,
        *,
        call_id: str,
        dealership: Dealership,
        signals: SignalSink,
        consent_policy: RecordingConsent,
        timezone: ZoneInfo,
        finals: FinalTranscripts | None = None,
        resume: ChatContext | None = None,
        callbacks: CallbackBooker | None = None,
        opening: CallOpening | None = None,
    ) -> None:
        self.call_id = call_id
        self.opening = opening  # a callback's call: why Sarah calls, what was said before
        self.callbacks = callbacks
        self.dealership = dealership
        self.signals = signals
        self.consent_policy = consent_policy
        self.timezone = timezone
        self.finals = finals
        self._handoff_requested = False
        self._queue_offered_callback = False  # the desk's callback offer is open
        self.fillers = 0  # fillers said while a slow tool ran
        self.resuming = resume is not None
        self.taken_over = False  # a supervisor speaks: listen, keep context, do not reply
        super().__init__(
            instructions=instructions(
                consent_policy, datetime.now(timezone).date(), opening=opening
            ),  # fmt: skip
            tools=[recording_consent],  # a customer may object under every policy
            chat_ctx=resume,
        )

    async def on_enter(self) -> None:
        if self.resuming:
            # A replacement for a lost agent: one short sentence that picks up the thread.
            self.session.generate_reply(instructions=RESUME_INSTRUCTIONS)
            return
        if self.opening is not None:
            disclosure, rest = callback_greeting_parts(self.consent_policy, self.opening.reason)
        else:
            disclosure, rest = greeting_parts(self.consent_policy)
        if disclosure:
            # Not interruptible: the recording disclosure must be heard in full.
            self.session.say(disclosure, allow_interruptions=False)
        self.session.say(rest, allow_interruptions=True)

    async def on_user_turn_completed(self, turn_ctx: ChatContext, new_message: ChatMessage) -> None:
        if self.taken_over:
            # Heard, kept for after the release, not answered: the supervisor answers.
            ctx = self.chat_ctx.copy()
            ctx.items.append(new_message)
            await self.update_chat_ctx(ctx)
            raise StopResponse()

    def llm_node(
        self, chat_ctx: ChatContext, tools: list[FunctionTool], model_settings: ModelSettings
    ):  # type: ignore[no-untyped-def,override]
        if self.taken_over:
            return _no_reply()  # a reply asked for in text (run, generate_reply): none either
        return Agent.default.llm_node(self, chat_ctx, tools, model_settings)

    async def stt_node(
        self, audio: AsyncIterable[rtc.AudioFrame], model_settings: ModelSettings
    ) -> AsyncIterable[stt.SpeechEvent]:
        # The session's transcript event has no confidence; note it here for the bridge.
        async for ev in Agent.default.stt_node(self, audio, model_settings):
            if (
                self.finals is not None
                and isinstance(ev, stt.SpeechEvent)
                and ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT
                and ev.alternatives
            ):
                self.finals.note(ev.alternatives[0].text, ev.alternatives[0].confidence)
            yield ev

    @function_tool
    async def search_inventory(
        self,
        context: RunContext,
        make: str | None = None,
        model: str | None = None,
        year: int | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
    ) -> str:
        """Search the cars currently for sale on our lot. Use it before naming any car, price,
        mileage or availability; pass only the filters the customer gave.

        Args:
            make: manufacturer, e.g. "Toyota".
            model: model name, e.g. "Camry" or "F-150".
            year: exact model year, e.g. 2022.
            min_price: lowest price in US dollars.
            max_price: highest price in US dollars (the customer's budget).
        """
        if min_price is not None and max_price is not None and min_price > max_price:
            min_price, max_price = max_price, min_price
        try:
            found = await self._filled(
                self.dealership.search(
                    make=make, model=model, year=year, min_price=min_price, max_price=max_price
                )
            )
        except DealershipError as exc:
            raise ToolError(
                f"{exc} Apologise, and offer to bring a colleague onto this call (request_human)."
            ) from exc
        log.info("inventory_searched", call_id=self.call_id, results=len(found))
        if not found:
            return "No matching cars are in stock. Offer to widen the search."
        lines = "\n".join(v.describe() for v in found)
        return f"{len(found)} matching car(s) in stock, cheapest first:\n{lines}"

    @function_tool
    async def book_test_drive(
        self,
        context: RunContext,
        stock_number: str,
        customer_name: str,
        phone: str,
        date: str,
        time: str,
    ) -> str:
        """Book a test drive once the customer has chosen a car and confirmed their details.

        Args:
            stock_number: the car's stock number from search_inventory, e.g. "CME24101".
            customer_name: the customer's full name.
            phone: the customer's phone number, digits as spoken.
            date: the day of the test drive, as YYYY-MM-DD.
            time: the start time, 24-hour HH:MM in dealership time, e.g. "14:30".
        """
        scheduled_at = self._parse_slot(date, time)
        digits = "".join(c for c in phone if c.isdigit() or c == "+")
        if len(digits.lstrip("+")) < 7:
            raise ToolError("That phone number looks incomplete; ask the customer to repeat it.")
        if not customer_name.strip():
            raise ToolError("Ask the customer for their name first.")
        try:
            booking = await self._filled(
                self.dealership.book_test_drive(
                    call_id=self.call_id,
                    stock_number=stock_number,
                    scheduled_at=scheduled_at,
                    customer_name=customer_name.strip(),
                    customer_phone=digits,
                )
            )
        except DealershipError as exc:
            raise ToolError(str(exc)) from exc
        when = booking.scheduled_at.astimezone(self.timezone)
        return (
            f"Booked: {booking.vehicle.title} (stock {booking.vehicle.stock_number}) for "
            f"{booking.customer_name} on {when:%A, %B %d at %I:%M %p}. "
            f"Reference {booking.reference}. Read the booking back to the customer."
        )

    @function_tool
    async def schedule_callback(
        self,
        context: RunContext,
        phone: str,
        date: str,
        time: str,
        reason: str,
        timezone: str | None = None,
        confirmed: bool = False,
    ) -> str:
        """Schedule a call back to the customer at a time they chose ("tomorrow at three").
        First call it with confirmed=false: it answers the concrete date and number to read
        back. Call it again with confirmed=true only once the customer said yes.

        Args:
            phone: the number to call, digits as spoken (with the country code if not US).
            date: the day, as YYYY-MM-DD, resolved from the customer's words and today's date.
            time: the time on the customer's clock, 24-hour HH:MM, e.g. "15:00".
            reason: what the call is about, in a few words, e.g. "Silverado test drive".
            timezone: the customer's IANA time zone if not the dealership's, e.g. "America/Denver".
            confirmed: true once the customer confirmed the number and the time read back.
        """
        try:
            tz = cb.zone(timezone) if timezone else self.timezone
            when = cb.spoken_slot(date, time, tz)
        except ValueError as exc:
            raise ToolError("Confirm the day and time with the customer "
                            "(date YYYY-MM-DD, time HH:MM, a known time zone).") from exc  # fmt: skip
        number = cb.e164_from_spoken(phone)
        if len(number) < 9:
            raise ToolError("That phone number looks incomplete; ask the customer to repeat it.")
        said = cb.say_back(when, tz)
        if not confirmed:
            return (f"Read back to the customer: we will call {number} on {said} about {reason}. "
                    "Ask them to confirm, then call schedule_callback again with confirmed=true.")  # fmt: skip
        if self.callbacks is None:
            raise ToolError("Callbacks cannot be scheduled on this line; offer a colleague "
                            "(request_human) instead of a promise.")  # fmt: skip
        try:
            via = "queue" if self._queue_offered_callback else ""
            await self._filled(self.callbacks.schedule(number, when, str(tz), reason[:500], via))
        except CallbackRefused as exc:
            raise ToolError(f"The callback was not scheduled: {exc} Tell the customer and "
                            "offer another time or a colleague.") from exc  # fmt: skip
        log.info("callback_scheduled", call_id=self.call_id, via=via or "agent")
        self._queue_offered_callback = False
        return f"Scheduled: we will call on {said}. Tell the customer, with that date."

    @function_tool
    async def request_human(self, context: RunContext, reason: str) -> str:
        """Ask for a human colleague to take this call: when the customer asks for a person
        or a manager, is upset, or needs something you cannot do.

        Args:
            reason: a few words on why, e.g. "customer asked for a manager".
        """
        if self._handoff_requested:
            return (
                "A colleague was already asked for. You do not know yet whether or when one "
                "can come: do not promise it. The desk's answer will be read to the customer."
            )
        self._handoff_requested = True
        self.signals.send(
            SIGNAL_AGENT_ALERT,
            AgentAlert(
                id=new_signal_id("alert"),
                kind=EventKind.HANDOFF_REQUESTED.value,
                detail=reason[:500],
                at=utc_now(),
            ),
        )
        log.info("handoff_requested", call_id=self.call_id)
        later = (" If no one can come, the desk's message offers a call back: if the customer "
                 "accepts, book it with schedule_callback (ask the number and the time)."
                 if self.callbacks is not None else "")  # fmt: skip
        return (
            "The request for a colleague went to the desk. It is not yet known whether one is "
            "free or how long it will take: do not say that someone is coming. Tell the customer "
            "you have asked for a colleague and will tell them what the desk says (their place "
            "in line and the wait, or that no one can come now), and offer to keep helping." + later
        )

    def desk_said(self, notice: str = "") -> None:
        """The desk settled the hand-off (no one can come, or who is joining): a later
        request may ask again. When no one can come, the callback Sarah just offered (agent/
        desk.py) is the desk's: one the customer accepts is scheduled `via="queue"`."""
        self._handoff_requested = False
        self._queue_offered_callback = notice in (Notice.NO_REP, Notice.MAX_WAIT)

    async def _filled(self, work: Awaitable[T]) -> T:
        """`work`, with a short spoken filler if it takes longer than `FILLER_AFTER_S`."""
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=FILLER_AFTER_S)
        if not done:
            try:
                self.session.say(FILLER, allow_interruptions=True, add_to_chat_ctx=False)
                self.fillers += 1
            except RuntimeError:  # the session is closing: nothing to say it on
                log.info("filler_not_said", call_id=self.call_id)
        return await task

    def _parse_slot(self, day: str, at: str) -> datetime:
        try:
            slot = datetime.combine(date.fromisoformat(day.strip()), time.fromisoformat(at.strip()))
        except ValueError as exc:
            raise ToolError(
                "Confirm the date and time with the customer (date YYYY-MM-DD, time HH:MM)."
            ) from exc
        local = slot.replace(tzinfo=self.timezone)
        now = datetime.now(self.timezone)
        if local <= now:
            raise ToolError("That time has already passed; ask for a later one.")
        if local - now > BOOKING_HORIZON:
            raise ToolError("We book test drives up to 60 days ahead; ask for an earlier date.")
        if local.weekday() == 6 or not (OPENING_HOURS[0] <= local.time() < OPENING_HOURS[1]):
            raise ToolError("We are open Monday to Saturday, 9 AM to 6 PM; ask for a time then.")
        return local


async def _no_reply() -> AsyncIterator[str]:
    return
    yield  # an empty async generator
