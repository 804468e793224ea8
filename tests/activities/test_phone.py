"""`dial_outbound` and `transfer_call` against the LiveKit emulator's SIP (checked against
livekit/sip's errors): every far-end outcome is a result, never an error; no trunk is a
non-retryable refusal; the dialled phone joins as the call's customer without its number."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from livekit import api
from livekit.protocol import sip as sip_pb
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import types as act
from activities.phone import PhoneActivities
from core.models import customer_identity
from core.telephony import OUTBOUND_TRUNK_NAME
from tests.fixtures.livekit import LiveKitEmulator


@pytest.fixture
async def phone(livekit_emulator: LiveKitEmulator) -> AsyncIterator[PhoneActivities]:
    livekit_emulator.handle.emulator.sip_reset()
    async with livekit_emulator.api() as lk:
        yield PhoneActivities(lk)
    livekit_emulator.handle.emulator.sip_reset()


async def trunk(emu: LiveKitEmulator) -> None:
    async with emu.api() as lk:
        info = sip_pb.SIPOutboundTrunkInfo(name=OUTBOUND_TRUNK_NAME, address="sip.example.invalid",
                                           numbers=["+15550100000"])  # fmt: skip
        await lk.sip.create_outbound_trunk(api.CreateSIPOutboundTrunkRequest(trunk=info))


async def room(emu: LiveKitEmulator) -> tuple[str, str]:
    call_id = uuid.uuid4().hex[:20]
    async with emu.api() as lk:
        await lk.room.create_room(api.CreateRoomRequest(name=f"call-{call_id}"))
    return call_id, f"call-{call_id}"


@pytest.mark.parametrize(
    "outcome,expected,status",
    [("answer", "answered", 0), ("busy", "busy", 486), ("reject", "rejected", 603),
     ("unavailable", "unavailable", 480), ("no_answer", "no_answer", 0)],
)  # fmt: skip
async def test_each_far_end_outcome_is_a_result(
    phone: PhoneActivities, livekit_emulator: LiveKitEmulator, outcome: str, expected: str,
    status: int,
) -> None:  # fmt: skip
    await trunk(livekit_emulator)
    to = "+1555" + str(uuid.uuid4().int)[:7]
    await livekit_emulator.control("PUT", f"sip/outcomes/{to}", {"outcome": outcome, "ring_s": 0.1})
    call_id, name = await room(livekit_emulator)
    inp = act.DialInput(call_id, name, to, customer_identity(call_id), ringing_timeout_s=1)
    result = await ActivityEnvironment().run(phone.dial_outbound, inp)
    assert (result.outcome, result.sip_status) == (expected, status)
    calls = (await livekit_emulator.control("GET", "sip/calls"))["calls"]
    (placed,) = [c for c in calls if c["room"] == name]
    assert placed["identity"] == customer_identity(call_id) and placed["number"] == to
    if expected == "answered":
        async with livekit_emulator.api() as lk:
            from livekit.protocol import room as room_pb

            p = await lk.room.get_participant(
                room_pb.RoomParticipantIdentity(room=name, identity=customer_identity(call_id))
            )
        assert to[2:] not in str(p.attributes)  # hide_phone_number: no number attribute


async def test_no_outbound_trunk_is_a_refusal_that_is_never_retried(
    phone: PhoneActivities, livekit_emulator: LiveKitEmulator
) -> None:
    call_id, name = await room(livekit_emulator)
    inp = act.DialInput(call_id, name, "+15551230009", customer_identity(call_id))
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(phone.dial_outbound, inp)
    assert err.value.type == act.ERR_LIVEKIT_REJECTED and err.value.non_retryable
