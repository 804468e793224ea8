"""LiveKit activities against the emulator (livekit-api's real client, real Twirp, real JWTs)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from livekit import api
from livekit.protocol import models
from livekit.protocol import room as room_pb
from temporalio.exceptions import ApplicationErrorCategory

from activities import types as act
from activities.livekit import LiveKitActivities, livekit_error
from core import models as m
from devstack.services import free_port
from tests.activities.conftest import Run, app_error
from tests.fixtures.livekit import LiveKitEmulator

WRONG_SECRET = "wrong-secret-0123456789abcdef-0123456789"
SECRET32 = "s" * 32


@pytest.fixture
async def lka(livekit_emulator: LiveKitEmulator) -> AsyncIterator[LiveKitActivities]:
    async with livekit_emulator.api() as lk:
        yield LiveKitActivities(lk)
    await livekit_emulator.clear_faults()


def new_call() -> tuple[str, str]:
    call_id = m.new_call_id()
    return call_id, m.room_name_for(call_id)


async def participants(lk: api.LiveKitAPI, room: str, n: int) -> list[models.ParticipantInfo]:
    for _ in range(250):
        res = await lk.room.list_participants(room_pb.ListParticipantsRequest(room=room))
        if len(res.participants) >= n:
            return list(res.participants)
        await asyncio.sleep(0.02)
    raise AssertionError(f"{room} never had {n} participants")


async def in_progress_room(lka: LiveKitActivities, lk: LiveKitEmulator) -> tuple[str, str]:
    """A room with the dispatched agent and a customer in it."""
    call_id, room = new_call()
    await Run()(lka.create_room, act.CreateRoomInput(call_id, room, "sarah-cme"))
    await participants(lka.lk, room, 1)
    await lk.join(room, m.customer_identity(call_id), kind="customer")
    return call_id, room


async def test_create_room_dispatches_the_agent_explicitly(
    lka: LiveKitActivities, livekit_emulator: LiveKitEmulator
) -> None:
    call_id, room = new_call()
    inp = act.CreateRoomInput(call_id, room, "sarah-cme", customer_name="Ada", empty_timeout_s=120)
    info = await Run()(lka.create_room, inp)
    assert info.room_name == room and info.sid.startswith("RM_")
    assert info.dispatched_agent == "sarah-cme"
    again = await Run()(lka.create_room, inp)
    assert again.sid == info.sid  # a retried create finds the same room

    (agent,) = await participants(lka.lk, room, 1)
    assert agent.kind == models.ParticipantInfo.AGENT and agent.name == "sarah-cme"
    (dispatch,) = await lka.lk.agent_dispatch.list_dispatch(room)
    assert dispatch.agent_name == "sarah-cme"
    assert json.loads(dispatch.metadata) == {"call_id": call_id}
    (listed,) = (await lka.lk.room.list_rooms(room_pb.ListRoomsRequest(names=[room]))).rooms
    assert json.loads(listed.metadata) == {"call_id": call_id}
    assert listed.empty_timeout == 120 and listed.max_participants == 6
    assert listed.departure_timeout == 60  # a dropped customer finds the room still open


async def test_egress_lifecycle_is_idempotent_end_to_end(
    lka: LiveKitActivities, livekit_emulator: LiveKitEmulator
) -> None:
    call_id, room = await in_progress_room(lka, livekit_emulator)
    start = act.StartEgressInput(call_id, room, m.recording_object_key(call_id))
    first = await Run()(lka.start_egress, start)
    assert first.status in ("EGRESS_STARTING", "EGRESS_ACTIVE") and first.egress_id
    second = await Run()(lka.start_egress, start)
    assert second.egress_id == first.egress_id  # a retried start records once
    state = await livekit_emulator.state()
    mine = [e for e in state["egresses"] if e["info"]["roomName"] == room]
    assert len(mine) == 1
    request = mine[0]["info"]["roomComposite"]
    assert request["audioOnly"] is True and request["audioMixing"] == "DUAL_CHANNEL_AGENT"
    for _ in range(100):  # STARTING -> ACTIVE
        got = await Run()(lka.get_egress, act.EgressRef(call_id, first.egress_id))
        if got.status == "EGRESS_ACTIVE":
            break
        await asyncio.sleep(0.02)
    await livekit_emulator.advance(first.egress_id, 30)

    ref = act.EgressRef(call_id, first.egress_id)
    stopped = await Run()(lka.stop_egress, ref)
    assert stopped.status in ("EGRESS_ENDING", "EGRESS_COMPLETE")
    for _ in range(250):
        done = await Run()(lka.get_egress, ref)
        if done.status == "EGRESS_COMPLETE":
            break
        await asyncio.sleep(0.02)
    assert done.file is not None and done.file.location.endswith(f"{first.egress_id}.ogg")
    assert done.file.filename == m.recording_object_key(call_id)
    assert done.file.size > 0 and done.file.duration_s >= 30
    again = await Run()(lka.stop_egress, ref)  # already ended: reported, not an error
    assert again.status == "EGRESS_COMPLETE" and again.file == done.file

    await Run()(lka.delete_room, act.RoomRef(call_id, room))
    await Run()(lka.delete_room, act.RoomRef(call_id, room))  # already gone: fine
    rooms = await lka.lk.room.list_rooms(room_pb.ListRoomsRequest(names=[room]))
    assert list(rooms.rooms) == []


async def test_a_reused_egress_reports_its_own_key(
    lka: LiveKitActivities, livekit_emulator: LiveKitEmulator
) -> None:
    """A start that timed out after LiveKit began the egress, then a new attempt for the
    next segment: the egress found running is reported with the key it really writes."""
    call_id, room = await in_progress_room(lka, livekit_emulator)
    first_key, next_key = (m.recording_object_key(call_id, n) for n in (1, 2))
    first = await Run()(
        lka.start_egress, act.StartEgressInput(call_id, room, first_key, object_key=first_key)
    )
    again = await Run()(
        lka.start_egress, act.StartEgressInput(call_id, room, next_key, object_key=next_key)
    )
    assert again.egress_id == first.egress_id
    assert (again.object_key, again.n) == (first_key, 1)
    await Run()(lka.stop_egress, act.EgressRef(call_id, first.egress_id))


async def test_unknown_egress(lka: LiveKitActivities) -> None:
    call_id, _ = new_call()
    ref = act.EgressRef(call_id, "EG_doesnotexist")
    err = await app_error(Run()(lka.get_egress, ref))
    assert err.type == act.ERR_LIVEKIT_REJECTED and err.non_retryable
    stopped = await Run()(lka.stop_egress, ref)
    assert stopped.status == "EGRESS_ENDING" and stopped.egress_id == ref.egress_id


async def test_a_503_is_retryable(
    lka: LiveKitActivities, livekit_emulator: LiveKitEmulator
) -> None:
    call_id, room = new_call()
    await livekit_emulator.set_fault("twirp_unavailable", method="CreateRoom")
    err = await app_error(Run()(lka.create_room, act.CreateRoomInput(call_id, room, "sarah-cme")))
    assert err.type == act.ERR_LIVEKIT_UNAVAILABLE and not err.non_retryable
    assert "503" in err.message
    info = await Run()(lka.create_room, act.CreateRoomInput(call_id, room, "sarah-cme"))
    assert info.room_name == room  # the fault fired once; the retry succeeds


async def test_egress_start_refused_is_not_retried(
    lka: LiveKitActivities, livekit_emulator: LiveKitEmulator
) -> None:
    call_id, room = await in_progress_room(lka, livekit_emulator)
    await livekit_emulator.set_fault("egress_start_fail", code="invalid_argument", room=room)
    err = await app_error(
        Run()(lka.start_egress, act.StartEgressInput(call_id, room, "conversations/x.ogg"))
    )
    assert err.type == act.ERR_LIVEKIT_REJECTED and err.non_retryable


async def test_bad_credentials_are_not_retried(livekit_emulator: LiveKitEmulator) -> None:
    call_id, room = new_call()
    async with api.LiveKitAPI(livekit_emulator.url, livekit_emulator.api_key, WRONG_SECRET) as lk:
        acts = LiveKitActivities(lk)
        err = await app_error(Run()(acts.create_room, act.CreateRoomInput(call_id, room, "a")))
    assert err.type == act.ERR_LIVEKIT_REJECTED and err.non_retryable
    assert "401" in err.message and WRONG_SECRET not in err.message


async def test_plain_text_401_is_not_retried() -> None:
    """A real livekit-server answers a bad token with a plain-text 401, not Twirp JSON."""

    async def deny(_: web.Request) -> web.Response:
        return web.Response(status=401, text="invalid token: signature is invalid\n")

    app = web.Application()
    app.router.add_post("/twirp/{tail:.*}", deny)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with api.LiveKitAPI(f"http://127.0.0.1:{port}", "k", SECRET32) as lk:
            acts = LiveKitActivities(lk)
            call_id, room = new_call()
            err = await app_error(Run()(acts.delete_room, act.RoomRef(call_id, room)))
    finally:
        await runner.cleanup()
    assert err.type == act.ERR_LIVEKIT_REJECTED and err.non_retryable


async def test_unreachable_livekit_is_retryable() -> None:
    async with api.LiveKitAPI(f"http://127.0.0.1:{free_port()}", "k", SECRET32) as lk:
        acts = LiveKitActivities(lk)
        call_id, room = new_call()
        err = await app_error(Run()(acts.create_room, act.CreateRoomInput(call_id, room, "a")))
    assert err.type == act.ERR_LIVEKIT_UNAVAILABLE and not err.non_retryable


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (400, "invalid_argument", False),
        (404, "not_found", False),
        (412, "failed_precondition", False),
        (403, "permission_denied", False),
        (429, "resource_exhausted", True),
        (408, "deadline_exceeded", True),
        (500, "internal", True),
        (501, "unimplemented", False),
        (503, "unavailable", True),
    ],
)
def test_error_mapping_follows_the_http_status(status: int, code: str, retryable: bool) -> None:
    err = livekit_error(api.ServerError(code, "nope", status=status), "op")
    assert err.non_retryable is not retryable
    assert err.type == (act.ERR_LIVEKIT_UNAVAILABLE if retryable else act.ERR_LIVEKIT_REJECTED)


async def test_dispatch_agent_again_withdraws_unanswered_dispatches(
    lka: LiveKitActivities, livekit_emulator: LiveKitEmulator
) -> None:
    call_id, room = new_call()
    await livekit_emulator.set_auto_agent(enabled=False, room=room)  # nobody answers
    await Run()(lka.create_room, act.CreateRoomInput(call_id, room, "sarah-cme"))
    (first,) = await lka.lk.agent_dispatch.list_dispatch(room)

    second = await Run()(lka.dispatch_agent, act.DispatchAgentInput(call_id, room, "sarah-cme", 2))
    assert second.withdrawn == [first.id]
    again = await Run()(lka.dispatch_agent, act.DispatchAgentInput(call_id, room, "sarah-cme", 2))
    assert again.dispatch_id == second.dispatch_id and again.withdrawn == []  # a retry

    await livekit_emulator.set_auto_agent(enabled=True, room=room)
    third = await Run()(
        lka.dispatch_agent, act.DispatchAgentInput(call_id, room, "sarah-cme", 3, resume=True)
    )
    (agent,) = await participants(lka.lk, room, 1)
    assert agent.kind == models.ParticipantInfo.AGENT
    (live,) = await lka.lk.agent_dispatch.list_dispatch(room)
    assert live.id == third.dispatch_id
    assert json.loads(live.metadata) == {"call_id": call_id, "serial": 3, "resume": True}


async def rooms_named(lk: api.LiveKitAPI, room: str) -> list[str]:
    res = await lk.room.list_rooms(room_pb.ListRoomsRequest(names=[room]))
    return [r.name for r in res.rooms]


async def test_dispatch_into_a_room_that_is_gone_is_room_gone(
    lka: LiveKitActivities, livekit_emulator: LiveKitEmulator
) -> None:
    """The room closed under the call (the customer hung up, `room_finished` not yet in): the
    dispatch is `RoomGone`, never retried, and no room is created again for it (livekit-server's
    CreateDispatch would, with auto-create on)."""
    call_id, room = await in_progress_room(lka, livekit_emulator)
    await livekit_emulator.end_room(room)
    assert await rooms_named(lka.lk, room) == []
    # What LiveKit itself answers for the dispatch calls on a room it no longer has.
    with pytest.raises(api.TwirpError) as raw:
        await lka.lk.agent_dispatch.list_dispatch(room)
    assert (raw.value.status, raw.value.code) == (503, "unavailable")
    assert livekit_error(raw.value, "list_dispatch").type == act.ERR_LIVEKIT_UNAVAILABLE

    inp = act.DispatchAgentInput(call_id, room, "sarah-cme", 2, resume=True)
    err = await app_error(Run()(lka.dispatch_agent, inp))
    assert err.type == act.ERR_ROOM_GONE and err.non_retryable
    assert err.category == ApplicationErrorCategory.BENIGN  # an answer, logged without alarm
    assert room in err.message
    assert await rooms_named(lka.lk, room) == []  # not re-created by a dispatch
    assert act.ERR_ROOM_GONE in act.NON_RETRYABLE_ERRORS


async def test_room_closing_during_the_dispatch_is_room_gone(
    lka: LiveKitActivities, livekit_emulator: LiveKitEmulator
) -> None:
    """The room is there when asked, gone by the time the dispatch is listed: LiveKit answers
    503 (an outage's answer), which the room's absence explains."""
    call_id, room = await in_progress_room(lka, livekit_emulator)
    dispatch = lka.lk.agent_dispatch
    real_list = dispatch.list_dispatch

    async def list_after_the_room_closed(room_name: str) -> list:
        await livekit_emulator.end_room(room_name)
        return await real_list(room_name)

    dispatch.list_dispatch = list_after_the_room_closed  # type: ignore[method-assign]
    try:
        inp = act.DispatchAgentInput(call_id, room, "sarah-cme", 2, resume=True)
        err = await app_error(Run()(lka.dispatch_agent, inp))
    finally:
        del dispatch.list_dispatch
    assert err.type == act.ERR_ROOM_GONE and err.non_retryable
    assert "no response from servers" in err.message  # what LiveKit said, kept for the record


async def test_dispatch_with_livekit_unavailable_stays_retryable(
    lka: LiveKitActivities, livekit_emulator: LiveKitEmulator
) -> None:
    """An outage is not a gone room: whether the room check or the dispatch fails, the error
    is `LiveKitUnavailable`, retried, and the retry dispatches."""
    call_id, room = await in_progress_room(lka, livekit_emulator)
    inp = act.DispatchAgentInput(call_id, room, "sarah-cme", 2, resume=True)
    for method in ("ListRooms", "ListDispatch", "CreateDispatch"):
        await livekit_emulator.set_fault("twirp_unavailable", method=method)
        err = await app_error(Run()(lka.dispatch_agent, inp))
        assert err.type == act.ERR_LIVEKIT_UNAVAILABLE and not err.non_retryable, method
    done = await Run()(lka.dispatch_agent, inp)
    assert done.dispatch_id.startswith("AD_")


async def test_room_presence_tells_a_gone_room_and_who_left(
    lka: LiveKitActivities, livekit_emulator: LiveKitEmulator
) -> None:
    """What a call whose webhooks were lost learns by asking: who of those it expects is not
    in the room, and whether the room is there at all (ListParticipants alone answers an empty
    list for a gone room, as livekit-server's stores do)."""
    call_id, room = await in_progress_room(lka, livekit_emulator)
    customer = m.customer_identity(call_id)
    agent = next(p.identity for p in await participants(lka.lk, room, 2) if p.identity != customer)
    q = act.RoomPresenceQuery(call_id, room, [customer, agent])
    assert await Run()(lka.get_room_presence, q) == act.RoomPresence(exists=True, missing=[])
    await livekit_emulator.leave(room, customer)
    assert await Run()(lka.get_room_presence, q) == act.RoomPresence(True, [customer])
    await livekit_emulator.end_room(room)
    res = await lka.lk.room.list_participants(room_pb.ListParticipantsRequest(room=room))
    assert list(res.participants) == []  # what LiveKit answers for a room it does not have
    assert await Run()(lka.get_room_presence, q) == act.RoomPresence(False, [customer, agent])


async def test_room_presence_with_livekit_unavailable_is_retryable(
    lka: LiveKitActivities, livekit_emulator: LiveKitEmulator
) -> None:
    call_id, room = await in_progress_room(lka, livekit_emulator)
    q = act.RoomPresenceQuery(call_id, room, [m.customer_identity(call_id)])
    for method in ("ListRooms", "ListParticipants"):
        await livekit_emulator.set_fault("twirp_unavailable", method=method)
        err = await app_error(Run()(lka.get_room_presence, q))
        assert err.type == act.ERR_LIVEKIT_UNAVAILABLE and not err.non_retryable, method
