"""Every fault the emulator can inject does what it says, then goes away."""

from __future__ import annotations

import time
import uuid

import aiohttp
import pytest
from livekit import api
from livekit.protocol import egress as egress_pb
from livekit.protocol import room as room_pb

from tests.fixtures.livekit import ControlCallError, LiveKitEmulator, WebhookSink


def room_name() -> str:
    return f"call-{uuid.uuid4().hex[:10]}"


def file_output() -> list[egress_pb.EncodedFileOutput]:
    return [egress_pb.EncodedFileOutput(file_type=egress_pb.OGG)]


async def start_egress(emu: LiveKitEmulator, room: str) -> egress_pb.EgressInfo:
    async with emu.api() as lk:
        return await lk.egress.start_room_composite_egress(
            egress_pb.RoomCompositeEgressRequest(
                room_name=room, audio_only=True, file_outputs=file_output()
            )
        )


async def test_fault_api_lists_validates_and_clears(livekit_emulator: LiveKitEmulator):
    f = await livekit_emulator.set_fault(
        "webhook_delay", count=3, delay_s=0.5, event="room_started"
    )
    assert f["kind"] == "webhook_delay" and f["count"] == 3 and f["event"] == "room_started"
    listed = (await livekit_emulator.control("GET", "faults"))["faults"]
    assert [x["id"] for x in listed] == [f["id"]]
    await livekit_emulator.control("DELETE", f"faults/{f['id']}")
    assert (await livekit_emulator.control("GET", "faults"))["faults"] == []
    for body, field in (
        ({"kind": "nope"}, "kind"),
        ({"kind": "egress_end", "status": "EGRESS_COMPLETE"}, "status"),
        ({"kind": "webhook_drop", "count": -1}, "count"),
        ({"kind": "webhook_drop", "delay_s": 1}, "delay_s"),
        ({"kind": "recording_slow", "bytes_per_s": "fast"}, "bytes_per_s"),
        ({"kind": "egress_end", "partial_file": "yes"}, "partial_file"),
        ({"kind": "egress_end", "after_s": True}, "after_s"),
    ):
        err = await livekit_emulator.control("POST", "faults", body, expect=400)
        assert err["error"]["field"] == field
    await livekit_emulator.set_fault("webhook_drop", count=0)
    assert (await livekit_emulator.control("DELETE", "faults"))["cleared"] == 1


async def test_twirp_unavailable_for_the_next_calls(livekit_emulator: LiveKitEmulator):
    await livekit_emulator.set_fault("twirp_unavailable", count=2, method="ListRooms")
    async with livekit_emulator.api() as lk:
        await lk.room.create_room(room_pb.CreateRoomRequest(name=room_name()))  # other methods fine
        for _ in range(2):
            with pytest.raises(api.TwirpError) as e:
                await lk.room.list_rooms(room_pb.ListRoomsRequest())
            assert (e.value.status, e.value.code) == (503, "unavailable")
        await lk.room.list_rooms(room_pb.ListRoomsRequest())


async def test_egress_fails_to_start(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    room = room_name()
    await livekit_emulator.join(room, "c", "customer")
    await livekit_emulator.set_fault("egress_start_fail")
    with pytest.raises(api.TwirpError) as e:
        await start_egress(livekit_emulator, room)
    assert (e.value.status, e.value.code) == (503, "unavailable")

    await livekit_emulator.set_fault("egress_start_fail", mode="failed", msg="no egress capacity")
    info = await start_egress(livekit_emulator, room)
    assert info.status == egress_pb.EGRESS_STARTING
    ended = await livekit_webhooks.wait_for("egress_ended", room)
    assert ended.egress_info.status == egress_pb.EGRESS_FAILED
    assert ended.egress_info.error == "no egress capacity" and not ended.egress_info.file_results
    assert "egress_updated" not in livekit_webhooks.names(room)  # it never became active
    await livekit_emulator.end_room(room)


async def test_egress_ends_failed_at_stop(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    room = room_name()
    await livekit_emulator.join(room, "c", "customer")
    info = await start_egress(livekit_emulator, room)
    await livekit_webhooks.wait_for("egress_updated", room)
    await livekit_emulator.set_fault("egress_end", status="EGRESS_FAILED", egress_id=info.egress_id)
    async with livekit_emulator.api() as lk:
        await lk.egress.stop_egress(egress_pb.StopEgressRequest(egress_id=info.egress_id))
    ended = await livekit_webhooks.wait_for("egress_ended", room)
    assert ended.egress_info.status == egress_pb.EGRESS_FAILED and ended.egress_info.error
    assert not ended.egress_info.file_results
    await livekit_emulator.end_room(room)


async def test_egress_reaches_its_limit_on_its_own(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    room = room_name()
    await livekit_emulator.join(room, "c", "customer")
    await livekit_emulator.set_fault(
        "egress_end", status="EGRESS_LIMIT_REACHED", after_s=0.3, room=room
    )
    info = await start_egress(livekit_emulator, room)
    ended = await livekit_webhooks.wait_for("egress_ended", room)
    assert ended.egress_info.status == egress_pb.EGRESS_LIMIT_REACHED
    (f,) = ended.egress_info.file_results  # what was recorded up to the limit is kept
    assert 0.25e9 < f.duration < 1.5e9 and f.size > 0
    async with livekit_emulator.api() as lk:
        with pytest.raises(api.TwirpError) as e:
            await lk.egress.stop_egress(egress_pb.StopEgressRequest(egress_id=info.egress_id))
    assert e.value.code == "failed_precondition"
    await livekit_emulator.end_room(room)


async def recording_url(
    emu: LiveKitEmulator, hooks: WebhookSink, seconds: float
) -> tuple[str, int, str]:
    room = room_name()
    await emu.join(room, "c", "customer")
    info = await start_egress(emu, room)
    await hooks.wait_for("egress_updated", room)
    await emu.advance(info.egress_id, seconds)
    await emu.end_room(room)
    (f,) = (await hooks.wait_for("egress_ended", room)).egress_info.file_results
    return f.location, f.size, info.egress_id


async def test_recording_download_slow_cut_and_5xx(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    url, size, egress_id = await recording_url(livekit_emulator, livekit_webhooks, 20)
    async with aiohttp.ClientSession() as s:
        await livekit_emulator.set_fault(
            "recording_error", count=2, status=503, egress_id=egress_id
        )
        for expected in (503, 503, 200):
            async with s.get(url) as r:
                assert r.status == expected
                await r.read()

        await livekit_emulator.set_fault("recording_cut", egress_id=egress_id, after_bytes=1000)
        async with s.get(url) as r:
            assert r.status == 200 and int(r.headers["Content-Length"]) == size
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()

        await livekit_emulator.set_fault("recording_slow", bytes_per_s=8000, egress_id=egress_id)
        started = time.monotonic()
        async with s.get(url, headers={"Range": "bytes=0-7999"}) as r:
            assert len(await r.read()) == 8000
        assert time.monotonic() - started >= 0.9
        started = time.monotonic()
        async with s.get(url) as r:  # the fault was for one download only
            assert len(await r.read()) == size
        assert time.monotonic() - started < 0.5


async def test_webhooks_dropped_duplicated_unsigned_and_tampered(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    room = room_name()
    await livekit_emulator.set_fault("webhook_drop", event="room_started")
    await livekit_emulator.set_fault("webhook_duplicate", event="participant_joined")
    await livekit_emulator.set_fault("webhook_unsigned", event="track_published")
    await livekit_emulator.set_fault("webhook_bad_signature", event="participant_left")
    await livekit_emulator.join(room, "c", "customer", publish_audio=True)
    await livekit_emulator.join(room, "s", "supervisor")
    await livekit_emulator.leave(room, "s")
    await livekit_emulator.end_room(room)
    await livekit_webhooks.wait_for("room_finished", room)
    names = livekit_webhooks.names(room)
    assert "room_started" not in names
    joined = [
        e
        for e in livekit_webhooks.events
        if e.event == "participant_joined" and e.room.name == room
    ]
    assert [e.participant.identity for e in joined] == ["c", "c", "s"]
    assert joined[0].id == joined[1].id  # a duplicate is the same event, sent twice
    assert "track_published" not in names and names.count("participant_left") == 1
    assert len(livekit_webhooks.rejected) == 2
    unsigned = [h for h, b in livekit_webhooks.requests if b"track_published" in b]
    assert unsigned and "Authorization" not in unsigned[0]
    deliveries = (await livekit_emulator.state())["webhooks"]["deliveries"]
    dropped = [d for d in deliveries if d["faults"] == ["drop"]]
    assert dropped[-1]["outcome"] == "dropped"
    rejected = [d for d in deliveries if d["faults"] in (["unsigned"], ["bad_signature"])][-2:]
    assert [(d["outcome"], d["status"], d["attempts"]) for d in rejected] == [
        ("failed", 401, 1)
    ] * 2


async def test_webhooks_delayed_and_reordered(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    room = room_name()
    await livekit_emulator.set_fault("webhook_reorder", event="room_started")
    await livekit_emulator.set_fault("webhook_delay", event="participant_left", delay_s=0.3)
    await livekit_emulator.join(room, "c", "customer")
    await livekit_emulator.leave(room, "c")
    await livekit_webhooks.wait_for("participant_left", room)
    # room_started was held until the next event went out; participant_left came after
    # room_finished, which overtook it.
    assert livekit_webhooks.names(room) == [
        "participant_joined",
        "room_started",
        "room_finished",
        "participant_left",
    ]


async def test_fault_on_an_unknown_egress_advance_is_a_4xx(livekit_emulator: LiveKitEmulator):
    with pytest.raises(ControlCallError, match="404"):
        await livekit_emulator.advance("EG_nope", 10)
    err = await livekit_emulator.control(
        "POST", "egress/EG_nope/advance", {"seconds": "x"}, expect=400
    )
    assert err["error"]["field"] == "seconds"


async def test_held_webhook_goes_out_when_nothing_follows(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    room = room_name()
    await livekit_emulator.set_fault("webhook_reorder", event="room_started", hold_s=0.2)
    started = time.monotonic()
    async with livekit_emulator.api() as lk:
        await lk.room.create_room(room_pb.CreateRoomRequest(name=room))
    await livekit_webhooks.wait_for("room_started", room)
    assert time.monotonic() - started >= 0.2
    await livekit_emulator.end_room(room)


async def test_egress_dies_mid_recording_leaving_a_partial_file(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    """EGRESS_FAILED on its own, with what it recorded until then uploaded and reported."""
    room = room_name()
    await livekit_emulator.join(room, "c", "customer")
    await livekit_emulator.set_fault(
        "egress_end", status="EGRESS_FAILED", after_s=0.3, partial_file=True, room=room
    )
    await start_egress(livekit_emulator, room)
    ended = await livekit_webhooks.wait_for("egress_ended", room)
    assert ended.egress_info.status == egress_pb.EGRESS_FAILED and ended.egress_info.error
    (f,) = ended.egress_info.file_results
    assert 0.25e9 < f.duration < 1.5e9 and f.size > 0 and f.location
    await livekit_emulator.end_room(room)


async def test_twirp_unavailable_can_drop_the_connection(livekit_emulator: LiveKitEmulator):
    """mode "drop": no answer at all, as from a server that cannot be reached."""
    await livekit_emulator.set_fault("twirp_unavailable", count=1, mode="drop")
    async with livekit_emulator.api() as lk:
        with pytest.raises(aiohttp.ClientError):
            await lk.room.list_rooms(room_pb.ListRoomsRequest())
        await lk.room.list_rooms(room_pb.ListRoomsRequest())  # the next one is answered
