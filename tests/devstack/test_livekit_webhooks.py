"""Webhooks as LiveKit sends them: livekit-api's WebhookReceiver accepts them, a tampered body
does not verify, delivery never blocks the API call, and failures are retried."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from livekit import api
from livekit.protocol import agent_dispatch as dispatch_pb
from livekit.protocol import egress as egress_pb
from livekit.protocol import models
from livekit.protocol import room as room_pb

from tests.fixtures.livekit import LiveKitEmulator, WebhookSink


def room_name() -> str:
    return f"call-{uuid.uuid4().hex[:10]}"


async def test_a_call_sends_verifiable_webhooks_in_order(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    room = room_name()
    async with livekit_emulator.api() as lk:
        await lk.room.create_room(
            room_pb.CreateRoomRequest(
                name=room, agents=[dispatch_pb.RoomAgentDispatch(agent_name="sarah-cme")]
            )
        )
        joined = await livekit_webhooks.wait_for("participant_joined", room)
        assert joined.participant.kind == models.ParticipantInfo.AGENT
        await livekit_emulator.join(room, "customer-1", "customer", publish_audio=True)
        eg = await lk.egress.start_room_composite_egress(
            egress_pb.RoomCompositeEgressRequest(
                room_name=room,
                audio_only=True,
                file_outputs=[egress_pb.EncodedFileOutput(file_type=egress_pb.OGG)],
            )
        )
        await livekit_webhooks.wait_for("egress_updated", room)
        await livekit_emulator.leave(room, "customer-1")
        ended = await livekit_webhooks.wait_for("egress_ended", room)

    # Queued per resource as LiveKit does: the room's own events (participants and tracks
    # included) in order, and the egress's in order; the two streams may interleave.
    names = livekit_webhooks.names(room)
    egress_events = ["egress_started", "egress_updated", "egress_updated", "egress_ended"]
    assert [n for n in names if n.startswith("egress_")] == egress_events  # ACTIVE, ENDING
    assert [n for n in names if not n.startswith("egress_")] == [
        "room_started",
        "participant_joined",  # the stand-in agent
        "track_published",
        "participant_joined",  # the customer
        "track_published",
        "track_unpublished",
        "participant_left",  # the customer
        "track_unpublished",
        "participant_left",  # the agent, whose caller hung up
        "room_finished",
    ]
    events = [
        e for e in livekit_webhooks.events if e.room.name == room or e.egress_info.room_name == room
    ]
    assert len({e.id for e in events}) == len(events)
    assert all(e.id.startswith("EV_") and abs(e.created_at - time.time()) < 60 for e in events)
    left = [e for e in events if e.event == "participant_left"][0]
    assert left.participant.identity == "customer-1"
    assert left.participant.state == models.ParticipantInfo.DISCONNECTED
    assert left.participant.disconnect_reason == models.CLIENT_INITIATED
    assert ended.egress_info.egress_id == eg.egress_id
    assert ended.egress_info.status == egress_pb.EGRESS_COMPLETE
    assert ended.egress_info.file_results[0].size > 0
    headers, _ = livekit_webhooks.requests[-1]
    assert headers["Content-Type"] == "application/webhook+json"
    assert not headers["Authorization"].startswith("Bearer")  # LiveKit sends the bare JWT


async def test_tampered_body_or_other_secret_fails_verification(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    room = room_name()
    await livekit_emulator.join(room, "customer-1", "customer")
    await livekit_webhooks.wait_for("participant_joined", room)
    headers, body = livekit_webhooks.requests[-1]
    token = headers["Authorization"]
    receiver = api.WebhookReceiver(
        api.TokenVerifier(livekit_emulator.api_key, livekit_emulator.api_secret)
    )
    event = receiver.receive(body.decode(), token)
    assert event.event == "participant_joined" and event.participant.identity == "customer-1"

    tampered = body.decode().replace("customer-1", "customer-2")
    with pytest.raises(Exception, match="hash mismatch"):
        receiver.receive(tampered, token)
    other = api.WebhookReceiver(api.TokenVerifier(livekit_emulator.api_key, "x" * 40))
    with pytest.raises(Exception, match="Signature"):
        other.receive(body.decode(), token)
    await livekit_emulator.end_room(room)


async def test_slow_receiver_does_not_block_api_calls(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    livekit_webhooks.delay_s = 0.8
    room = room_name()
    async with livekit_emulator.api() as lk:
        started = time.monotonic()
        await lk.room.create_room(room_pb.CreateRoomRequest(name=room))
        await lk.room.delete_room(room_pb.DeleteRoomRequest(room=room))
        assert time.monotonic() - started < 0.6  # one blocking delivery alone takes 0.8 s
    await livekit_webhooks.wait_for("room_finished", room, timeout=5)


async def test_failed_deliveries_are_retried_then_given_up(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    # The fixture's emulator retries twice with 50 ms backoff.
    livekit_webhooks.fail_with = [503, 502]
    room = room_name()
    await livekit_emulator.join(room, "c", "customer")
    started = await livekit_webhooks.wait_for("room_started", room)
    deliveries = (await livekit_emulator.state())["webhooks"]["deliveries"]
    (d,) = [x for x in deliveries if x["id"] == started.id]
    assert d["outcome"] == "delivered" and d["attempts"] == 3

    # A 4xx is final (not retried); 5xx after the last retry is given up and logged.
    livekit_webhooks.fail_with = [400]
    await livekit_emulator.leave(room, "c")
    await livekit_emulator.wait_idle()
    deliveries = (await livekit_emulator.state())["webhooks"]["deliveries"]
    (d,) = [x for x in deliveries if x["event"] == "participant_left" and x["status"] == 400]
    assert d["outcome"] == "failed" and d["attempts"] == 1
    livekit_webhooks.fail_with = [500, 500, 500]
    await livekit_emulator.join(room, "c2", "customer")
    await livekit_emulator.wait_idle()
    deliveries = (await livekit_emulator.state())["webhooks"]["deliveries"]
    failed = [x for x in deliveries if x["outcome"] == "failed" and x["status"] == 500]
    assert failed and failed[-1]["attempts"] == 3
    await livekit_emulator.end_room(room)


async def test_unreachable_receiver_is_logged_not_fatal(livekit_emulator: LiveKitEmulator):
    await livekit_emulator.set_webhook_url("http://127.0.0.1:9/nowhere")
    room = room_name()
    try:
        await livekit_emulator.join(room, "c", "customer")
        await livekit_emulator.wait_idle()
        deliveries = (await livekit_emulator.state())["webhooks"]["deliveries"]
        last = deliveries[-1]
        assert last["outcome"] == "failed" and last["attempts"] == 3 and last["status"] is None
        await livekit_emulator.end_room(room)
        await livekit_emulator.wait_idle()
    finally:
        await livekit_emulator.set_webhook_url("")


async def test_one_rooms_slow_webhooks_do_not_hold_up_another_rooms_and_stale_ones_drop() -> None:
    """LiveKit's ResourceURLNotifier: a queue per resource, events older than its max age are
    dropped instead of sent late."""
    from aiohttp import web
    from livekit.protocol.models import Room
    from livekit.protocol.webhook import WebhookEvent

    from devstack.livekit.faults import Faults
    from devstack.livekit.webhooks import WebhookSender
    from devstack.services import free_port

    port = free_port()
    got: list[tuple[str, float]] = []
    t0 = time.monotonic()

    async def receive(request: web.Request) -> web.Response:
        body = await request.json()
        room = body["room"]["name"]
        if room == "slow":
            await asyncio.sleep(0.6)
        got.append((room, time.monotonic() - t0))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    sender = WebhookSender("key", "secret" * 6, f"http://127.0.0.1:{port}/hook",
                           Faults(), max_age_s=1.0, timeout_s=5.0)  # fmt: skip
    await sender.start()
    try:
        slow = [sender.emit(WebhookEvent(event="room_started", room=Room(name="slow")))
                for _ in range(3)]  # fmt: skip
        sender.emit(WebhookEvent(event="room_started", room=Room(name="fast")))
        for _ in range(100):
            if sender.idle():
                break
            await asyncio.sleep(0.05)
    finally:
        await sender.stop(drain_s=0)
        await runner.cleanup()
    fast_at = [at for room, at in got if room == "fast"]
    assert fast_at and fast_at[0] < 0.5, got  # not behind the slow room's 0.6 s deliveries
    # The third of the slow room waited 1.2 s in its queue: over the max age, dropped.
    assert [d.outcome for d in slow] == ["delivered", "delivered", "dropped"], got
    assert "age" in slow[2].error
