"""A scripted customer and Sarah for devstack calls when the real agent cannot run (no keys).

The LiveKit emulator already joins a stand-in agent participant to each dispatched room; this
process gives that call a conversation, through the product's own paths, so `make dev` shows a
whole call: the customer joins (emulator control API -> signed webhook), lines are spoken
(interim lines to the API's live path, final lines through the agent's own bridge: written
ahead to a spool under the devstack directory, stored through the API, signalled to the call's
workflow), the greeting's recording disclosure starts egress, a keyword raises an alert,
Sarah hands the call to the desk (skill sales) and the customer holds a minute (a rep signed
in with DEVSTACK_REP_TOKEN can take it from the Desk), then hangs up (webhook) so the recording
is stored. A phone call is served the same way: the phone (a SIP participant the emulator joined for `/_emulator/sip/inbound` or a
dial) is the customer, an inbound call's workflow is started here as the real agent's job
starts it, and the phone hangs up at the end. A callback's call opens as the real agent's does,
with who calls and why (`POST /internal/calls/{id}/opening`).

    python -m devstack.standin     # devstack up starts it when the agent is not started
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

import aiohttp

from agent.bridge import bridge_for_call
from agent.greetings import callback_greeting
from agent.greetings import greeting as sarah_greeting
from agent.opening import fetch_opening
from agent.signals import new_signal_id, utc_now
from core.livekit import AGENT_IDENTITY_PREFIX, room_admin_token
from core.log import get_logger, setup_logging
from core.models import (
    SIGNAL_AGENT_ALERT,
    SIGNAL_TRANSCRIPT,
    AgentAlert,
    CallConfig,
    EventKind,
    TranscriptLine,
    call_id_from_room,
    customer_identity,
    is_phone_room,
)
from core.settings import ROOT, Settings, settings_or_exit
from core.temporal import connect_temporal, exit_process

log = get_logger("devstack.standin")

# Its final lines' write-ahead spool (the real agent's is AGENT_SPOOL_DIR).
SPOOL_DIR = Path(os.environ.get("DEVSTACK_DIR") or ROOT / ".devstack") / "agent-spool"

# The hand-off Sarah's request_human sends: the call goes to the desk's queue (skill sales);
# the customer then holds `hold_s` (a rep from the Desk page may take the call meanwhile).
HANDOFF = "handoff"
SCRIPT: list[tuple[str, str]] = [
    ("customer", "Hi Sarah, I'm looking for a used pickup truck under thirty thousand dollars."),
    (
        "assistant",
        "Great choice! We have a 2021 Ford F-150 XLT at 28,900 and a 2020 Ram 1500 at 27,500.",
    ),
    ("customer", "The Ford sounds good. Can I speak to a manager about financing?"),
    (
        "assistant",
        "Of course. I've asked for a colleague from sales; I'll tell you what the desk "
        "says, and I can keep helping meanwhile.",
    ),  # fmt: skip
    (HANDOFF, "customer asked for a manager about financing"),
    ("customer", "Thanks, that's all for now. Bye!"),
    ("assistant", "Thank you for calling CME Auto Sales. Have a wonderful day!"),
]


async def converse(
    settings: Settings,
    control: str,
    room: str,
    pace_s: float,
    phone: str | None = None,
    hold_s: float = 60.0,
) -> None:
    """One call's conversation, then the customer hangs up. `phone`: the identity of the SIP
    participant that is the customer (it is in the room already). `hold_s`: how long the
    customer holds after the hand-off."""
    call_id = call_id_from_room(room)
    assert call_id is not None
    if is_phone_room(room):
        await start_inbound(settings, room)
    key, secret = (
        settings.LIVEKIT_API_KEY.get_secret_value(),
        settings.LIVEKIT_API_SECRET.get_secret_value(),
    )
    bridge = bridge_for_call(
        call_id,
        lambda: connect_temporal(settings),
        api_url=f"http://{settings.API_HOST}:{settings.API_PORT}",
        token=room_admin_token(key, secret, room=room, identity=f"{AGENT_IDENTITY_PREFIX}standin"),
        spool_dir=SPOOL_DIR,
    )
    assert bridge.interim is not None
    # A callback's call opens as the real agent's does: who calls and why (agent.opening).
    opening = await fetch_opening(bridge.interim.api)
    greeting = (callback_greeting(settings.RECORDING_CONSENT, opening.reason) if opening
                else sarah_greeting(settings.RECORDING_CONSENT))  # fmt: skip
    ident = phone or customer_identity(call_id)
    async with aiohttp.ClientSession() as http:
        if phone is None:
            await http.post(f"{control}/rooms/{room}/participants",
                            json={"identity": ident, "kind": "customer", "publish_audio": True})  # fmt: skip
        log.info("standin_call_started", call_id=call_id)
        for speaker, text in [("assistant", greeting), *SCRIPT]:
            if speaker == HANDOFF:
                bridge.send(SIGNAL_AGENT_ALERT, AgentAlert(
                    id=new_signal_id("alert"), kind=EventKind.HANDOFF_REQUESTED.value,
                    detail=text, at=utc_now(), skill="sales"))  # fmt: skip
                await asyncio.sleep(hold_s)
                continue
            started = utc_now()
            if speaker == "customer":
                words = text.split()
                for cut in (len(words) // 3, 2 * len(words) // 3):
                    bridge.interim.post(" ".join(words[:cut]))
                    await asyncio.sleep(pace_s / 3)
            else:
                await asyncio.sleep(pace_s)
            line = TranscriptLine(id=new_signal_id("line"), speaker=speaker, text=text,
                                  confidence=0.95, started_at=started, ended_at=utc_now())  # fmt: skip
            bridge.send(SIGNAL_TRANSCRIPT, line)
        await bridge.drain(30)
        await http.delete(f"{control}/rooms/{room}/participants/{ident}")
    await bridge.aclose(10)
    log.info("standin_call_finished", call_id=call_id)


def _answered(participant: dict) -> bool:
    attrs = (participant.get("info") or {}).get("attributes") or {}
    return attrs.get("sip.callStatus") == "active"


async def start_inbound(settings: Settings, room: str) -> None:
    """As the real agent's job does (agent.worker.start_phone_call): start the inbound phone
    call's workflow unless the caller's webhook was first."""
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from workflows.client import start_inbound_phone_call

    try:
        await start_inbound_phone_call(
            await connect_temporal(settings), room, CallConfig.from_settings(settings),
            task_queue=settings.TEMPORAL_TASK_QUEUE, pinned_to=settings.new_calls_pinned_to,
        )  # fmt: skip
    except WorkflowAlreadyStartedError:
        log.warning("phone_call_already_ended", call_id=call_id_from_room(room))


async def run(settings: Settings, emulator: str, pace_s: float, hold_s: float = 60.0) -> None:
    control = f"{emulator.rstrip('/')}/_emulator"
    handled: set[str] = set()
    tasks: set[asyncio.Task[None]] = set()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    log.info("standin_ready", emulator=emulator)
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            try:
                async with http.get(f"{control}/state") as resp:
                    state = await resp.json()
            except aiohttp.ClientError as exc:
                log.warning("emulator_unreachable", error=str(exc))
                state = {"rooms": []}
            for room in state.get("rooms", []):
                name = room["name"]
                has_agent = any(p["role"] == "agent" for p in room.get("participants", []))
                sips = [p for p in room.get("participants", []) if p["role"] == "sip"]
                sip = [p["identity"] for p in sips if _answered(p)]
                # A phone is the customer once it is answered (a dialled one rings first).
                ready = bool(sip) if sips or is_phone_room(name) else True
                if has_agent and ready and name not in handled and call_id_from_room(name):
                    handled.add(name)
                    phone = sip[0] if sip else None
                    task = asyncio.create_task(
                        converse(settings, control, name, pace_s, phone, hold_s)
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m devstack.standin", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--pace", type=float, default=4.0, help="seconds between lines (default 4)")
    p.add_argument("--hold", type=float, default=60.0,
                   help="seconds the customer holds after the hand-off (default 60)")  # fmt: skip
    args = p.parse_args()
    setup_logging()
    settings = settings_or_exit()
    asyncio.run(run(settings, settings.LIVEKIT_URL.replace("ws", "http", 1), args.pace, args.hold))
    exit_process(0)


if __name__ == "__main__":
    main()
