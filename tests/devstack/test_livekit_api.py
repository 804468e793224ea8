"""livekit-api's own LiveKitAPI client against the emulator: every method we use round-trips,
and tokens and grants are checked as livekit-server checks them."""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid

import aiohttp
import jwt
import pytest
from livekit import api
from livekit.protocol import agent_dispatch as dispatch_pb
from livekit.protocol import egress as egress_pb
from livekit.protocol import models
from livekit.protocol import room as room_pb

from tests.fixtures.livekit import LiveKitEmulator


def room_name() -> str:
    return f"call-{uuid.uuid4().hex[:10]}"


async def wait_participants(lk: api.LiveKitAPI, room: str, n: int) -> list[models.ParticipantInfo]:
    for _ in range(200):
        res = await lk.room.list_participants(room_pb.ListParticipantsRequest(room=room))
        if len(res.participants) >= n:
            return list(res.participants)
        await asyncio.sleep(0.02)
    raise AssertionError(f"{room} never had {n} participants")


def ogg_output() -> egress_pb.EncodedFileOutput:
    return egress_pb.EncodedFileOutput(file_type=egress_pb.OGG, filepath="{room_name}-{time}.ogg")


async def test_create_room_with_agent_dispatch_joins_an_agent(livekit_emulator: LiveKitEmulator):
    room = room_name()
    async with livekit_emulator.api() as lk:
        created = await lk.room.create_room(
            room_pb.CreateRoomRequest(
                name=room,
                empty_timeout=60,
                metadata='{"call_id": "x"}',
                agents=[dispatch_pb.RoomAgentDispatch(agent_name="sarah-cme", metadata="m1")],
            )
        )
        assert created.name == room and created.sid.startswith("RM_")
        assert created.empty_timeout == 60 and created.metadata == '{"call_id": "x"}'
        again = await lk.room.create_room(room_pb.CreateRoomRequest(name=room))
        assert again.sid == created.sid  # CreateRoom is idempotent, as in LiveKit

        listed = await lk.room.list_rooms(room_pb.ListRoomsRequest(names=[room]))
        assert [r.sid for r in listed.rooms] == [created.sid]

        (agent,) = await wait_participants(lk, room, 1)
        assert agent.kind == models.ParticipantInfo.AGENT
        assert agent.identity.startswith("agent-AJ_") and agent.name == "sarah-cme"
        assert agent.permission.agent and agent.tracks[0].type == models.AUDIO

        (dispatch,) = await lk.agent_dispatch.list_dispatch(room)
        assert dispatch.agent_name == "sarah-cme" and dispatch.metadata == "m1"
        (job,) = dispatch.state.jobs
        assert job.state.status == 1 and job.state.participant_identity == agent.identity


async def test_agent_dispatch_service_round_trips(livekit_emulator: LiveKitEmulator):
    room = room_name()
    await livekit_emulator.set_auto_agent(enabled=False, room=room)
    async with livekit_emulator.api() as lk:
        d = await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="sarah-cme", room=room, metadata='{"a":1}')
        )
        assert d.id.startswith("AD_") and d.room == room
        # CreateDispatch creates the room, as livekit-server does with auto-create on.
        rooms = await lk.room.list_rooms(room_pb.ListRoomsRequest(names=[room]))
        assert len(rooms.rooms) == 1
        assert [x.id for x in await lk.agent_dispatch.list_dispatch(room)] == [d.id]
        assert (await lk.agent_dispatch.get_dispatch(d.id, room)).metadata == '{"a":1}'
        await asyncio.sleep(0.2)
        # Auto agent is off for this room: nobody joined, no job.
        res = await lk.room.list_participants(room_pb.ListParticipantsRequest(room=room))
        assert list(res.participants) == []
        deleted = await lk.agent_dispatch.delete_dispatch(d.id, room)
        assert deleted.id == d.id and deleted.state.deleted_at > 0
        assert await lk.agent_dispatch.list_dispatch(room) == []
        with pytest.raises(api.TwirpError) as e:
            await lk.agent_dispatch.delete_dispatch(d.id, room)
        assert e.value.code == "not_found" and e.value.status == 404


async def test_dispatch_calls_on_a_room_that_does_not_exist(livekit_emulator: LiveKitEmulator):
    """As livekit-server answers them (pkg/service/agent_dispatch_service.go): List and Delete
    go to the room's node over psrpc, which no node claims, so 503 `unavailable` "no response
    from servers"; CreateDispatch creates the room first (auto-create)."""
    room = room_name()
    await livekit_emulator.set_auto_agent(enabled=False, room=room)
    async with livekit_emulator.api() as lk:
        calls = [
            lambda: lk.agent_dispatch.list_dispatch(room),
            lambda: lk.agent_dispatch.delete_dispatch("AD_nope", room),
        ]
        for call in calls:
            with pytest.raises(api.TwirpError) as e:
                await call()
            assert (e.value.status, e.value.code) == (503, "unavailable")
            assert e.value.message == "no response from servers"
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="sarah-cme", room=room)
        )
        assert len((await lk.room.list_rooms(room_pb.ListRoomsRequest(names=[room]))).rooms) == 1


async def test_participant_methods_round_trip(livekit_emulator: LiveKitEmulator):
    room = room_name()
    await livekit_emulator.join(room, "customer-1", "customer", name="Ann", publish_audio=True)
    async with livekit_emulator.api() as lk:
        p = await lk.room.get_participant(
            api.RoomParticipantIdentity(room=room, identity="customer-1")
        )
        assert p.kind == models.ParticipantInfo.STANDARD and p.name == "Ann"
        track_sid = p.tracks[0].sid

        updated = await lk.room.update_participant(
            room_pb.UpdateParticipantRequest(
                room=room, identity="customer-1", metadata="vip", attributes={"lang": "en"}
            )
        )
        assert updated.metadata == "vip" and updated.attributes["lang"] == "en"
        assert updated.name == "Ann"  # an empty name leaves it as it was

        muted = await lk.room.mute_published_track(
            room_pb.MuteRoomTrackRequest(
                room=room, identity="customer-1", track_sid=track_sid, muted=True
            )
        )
        assert muted.track.sid == track_sid and muted.track.muted
        with pytest.raises(api.TwirpError) as e:  # remote unmute is off by default in LiveKit
            await lk.room.mute_published_track(
                room_pb.MuteRoomTrackRequest(
                    room=room, identity="customer-1", track_sid=track_sid, muted=False
                )
            )
        assert e.value.code == "failed_precondition"

        await lk.room.send_data(
            room_pb.SendDataRequest(
                room=room,
                data=b'{"type":"end"}',
                topic="control",
                destination_identities=["customer-1"],
            )  # fmt: skip
        )
        (state_room,) = [r for r in (await livekit_emulator.state())["rooms"] if r["name"] == room]
        assert state_room["data"][-1]["text"] == '{"type":"end"}'
        assert state_room["data"][-1]["topic"] == "control"

        with pytest.raises(api.TwirpError) as e:
            await lk.room.remove_participant(
                api.RoomParticipantIdentity(room=room, identity="nobody")
            )
        assert e.value.code == "not_found"
        await lk.room.remove_participant(
            api.RoomParticipantIdentity(room=room, identity="customer-1")
        )
        # The last non-agent left: the room is gone.
        assert list((await lk.room.list_rooms(room_pb.ListRoomsRequest(names=[room]))).rooms) == []


async def test_delete_room_and_unknown_room(livekit_emulator: LiveKitEmulator):
    room = room_name()
    async with livekit_emulator.api() as lk:
        await lk.room.create_room(room_pb.CreateRoomRequest(name=room))
        await livekit_emulator.join(room, "c", "customer")
        await lk.room.delete_room(room_pb.DeleteRoomRequest(room=room))
        assert list((await lk.room.list_rooms(room_pb.ListRoomsRequest(names=[room]))).rooms) == []
        with pytest.raises(api.TwirpError) as e:
            await lk.room.delete_room(room_pb.DeleteRoomRequest(room=room))
        assert (e.value.code, e.value.status) == ("not_found", 404)
        res = await lk.room.list_participants(room_pb.ListParticipantsRequest(room=room))
        assert list(res.participants) == []


async def test_egress_round_trip(livekit_emulator: LiveKitEmulator):
    room = room_name()
    await livekit_emulator.join(room, "c", "customer")
    async with livekit_emulator.api() as lk:
        with pytest.raises(api.TwirpError) as e:
            await lk.egress.start_room_composite_egress(
                egress_pb.RoomCompositeEgressRequest(
                    room_name="no-such-room", file_outputs=[ogg_output()]
                )
            )
        assert e.value.code == "not_found"
        info = await lk.egress.start_room_composite_egress(
            egress_pb.RoomCompositeEgressRequest(
                room_name=room,
                audio_only=True,
                audio_mixing=egress_pb.DUAL_CHANNEL_AGENT,
                file_outputs=[ogg_output()],
            )  # fmt: skip
        )
        assert info.egress_id.startswith("EG_") and info.status == egress_pb.EGRESS_STARTING
        assert info.room_name == room and info.room_composite.audio_only
        await asyncio.sleep(0.15)
        active = await lk.egress.list_egress(
            egress_pb.ListEgressRequest(room_name=room, active=True)
        )
        assert [(i.egress_id, i.status) for i in active.items] == [
            (info.egress_id, egress_pb.EGRESS_ACTIVE)
        ]
        laid = await lk.egress.update_layout(
            egress_pb.UpdateLayoutRequest(egress_id=info.egress_id, layout="grid")
        )
        assert laid.room_composite.layout == "grid"

        stopped = await lk.egress.stop_egress(egress_pb.StopEgressRequest(egress_id=info.egress_id))
        assert stopped.status == egress_pb.EGRESS_ENDING
        await livekit_emulator.wait_idle()
        (done,) = (
            await lk.egress.list_egress(egress_pb.ListEgressRequest(egress_id=info.egress_id))
        ).items
        assert done.status == egress_pb.EGRESS_COMPLETE
        (f,) = done.file_results
        assert f.filename.startswith(room) and f.filename.endswith(".ogg") and f.size > 0
        assert f.location.endswith(f"/_emulator/recordings/{info.egress_id}.ogg")
        assert f.duration > 0 and done.ended_at > done.started_at
        assert not (
            await lk.egress.list_egress(egress_pb.ListEgressRequest(room_name=room, active=True))
        ).items

        with pytest.raises(api.TwirpError) as e:
            await lk.egress.stop_egress(egress_pb.StopEgressRequest(egress_id=info.egress_id))
        assert (e.value.code, e.value.status) == ("failed_precondition", 412)
        assert "EGRESS_COMPLETE" in e.value.message
        with pytest.raises(api.TwirpError) as e:
            await lk.egress.stop_egress(egress_pb.StopEgressRequest(egress_id="EG_nope"))
        assert e.value.code == "not_found"


async def test_egress_needs_an_ogg_file_output(livekit_emulator: LiveKitEmulator):
    room = room_name()
    await livekit_emulator.join(room, "c", "customer")
    async with livekit_emulator.api() as lk:
        for req in (
            egress_pb.RoomCompositeEgressRequest(room_name=room),
            egress_pb.RoomCompositeEgressRequest(
                room_name=room, file_outputs=[egress_pb.EncodedFileOutput(file_type=egress_pb.MP4)]
            ),
        ):
            with pytest.raises(api.TwirpError) as e:
                await lk.egress.start_room_composite_egress(req)
            assert e.value.code == "invalid_argument"
    await livekit_emulator.end_room(room)


async def test_wrong_secret_or_key_is_refused(livekit_emulator: LiveKitEmulator):
    for key, secret in (
        (livekit_emulator.api_key, "not-the-secret-0123456789abcdef0123"),
        ("other-key", livekit_emulator.api_secret),
    ):
        async with api.LiveKitAPI(livekit_emulator.url, key, secret) as lk:
            with pytest.raises(api.TwirpError) as e:
                await lk.room.list_rooms(room_pb.ListRoomsRequest())
            assert (e.value.status, e.value.code) == (401, "unauthenticated")


def token(
    emu: LiveKitEmulator, ttl: datetime.timedelta = datetime.timedelta(minutes=5), **video
) -> str:
    return (
        api.AccessToken(emu.api_key, emu.api_secret)
        .with_identity("tester")
        .with_grants(api.VideoGrants(**video))
        .with_ttl(ttl)
        .to_jwt()
    )


async def test_missing_grant_is_refused(livekit_emulator: LiveKitEmulator):
    room = room_name()
    await livekit_emulator.join(room, "c", "customer")
    cases = [
        (token(livekit_emulator, room_list=True), lambda lk: lk.room.create_room(room_pb.CreateRoomRequest(name=room_name()))),
        (token(livekit_emulator, room_create=True), lambda lk: lk.room.list_rooms(room_pb.ListRoomsRequest())),
        (token(livekit_emulator, room_admin=True, room="another-room"),
         lambda lk: lk.room.list_participants(room_pb.ListParticipantsRequest(room=room))),
        (token(livekit_emulator, room_admin=True, room=room),
         lambda lk: lk.egress.list_egress(egress_pb.ListEgressRequest())),
        (token(livekit_emulator, room_record=True), lambda lk: lk.agent_dispatch.list_dispatch(room)),
        (token(livekit_emulator, room_join=True, room=room),
         lambda lk: lk.room.send_data(room_pb.SendDataRequest(room=room, data=b"x"))),
    ]  # fmt: skip
    for tok, call in cases:
        async with api.LiveKitAPI.with_token(tok, livekit_emulator.url) as lk:
            with pytest.raises(api.TwirpError) as e:
                await call(lk)
            # livekit-server answers a missing grant with twirpAuthError: unauthenticated.
            assert (e.value.status, e.value.code, e.value.message) == (
                401, "unauthenticated", "permissions denied",
            )  # fmt: skip
    # The right grant for that room works.
    async with api.LiveKitAPI.with_token(
        token(livekit_emulator, room_admin=True, room=room), livekit_emulator.url
    ) as lk:
        res = await lk.room.list_participants(room_pb.ListParticipantsRequest(room=room))
        assert [p.identity for p in res.participants] == ["c"]
    await livekit_emulator.end_room(room)


async def test_no_token_expired_token_and_garbage_are_refused(livekit_emulator: LiveKitEmulator):
    url = f"{livekit_emulator.url}/twirp/livekit.RoomService/ListRooms"
    expired = jwt.encode(
        {"iss": livekit_emulator.api_key, "exp": 1_000_000, "video": {"roomList": True}},
        livekit_emulator.api_secret,
    )
    no_exp = jwt.encode(
        {"iss": livekit_emulator.api_key, "video": {"roomList": True}}, livekit_emulator.api_secret
    )
    headers_cases = [{}, {"Authorization": "Bearer " + expired}, {"Authorization": "Bearer " + no_exp},
                     {"Authorization": "Bearer not.a.jwt"}, {"Authorization": "Basic abc"}]  # fmt: skip
    async with aiohttp.ClientSession() as s:
        for headers in headers_cases:
            async with s.post(
                url, data=b"", headers={**headers, "Content-Type": "application/protobuf"}
            ) as r:
                body = await r.json()
                assert r.status == 401, headers
                assert body["code"] == "unauthenticated"
                assert livekit_emulator.api_secret not in json.dumps(body)


async def test_twirp_routing_errors_are_twirps(livekit_emulator: LiveKitEmulator):
    tok = token(livekit_emulator, room_list=True, room_create=True)
    auth = {"Authorization": f"Bearer {tok}"}
    base = f"{livekit_emulator.url}/twirp"
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}/livekit.RoomService/NoSuchMethod", data=b"",
                          headers={**auth, "Content-Type": "application/protobuf"}) as r:  # fmt: skip
            assert (r.status, (await r.json())["code"]) == (404, "bad_route")
        async with s.get(f"{base}/livekit.RoomService/ListRooms", headers=auth) as r:
            assert (r.status, (await r.json())["code"]) == (404, "bad_route")
        async with s.post(f"{base}/livekit.RoomService/ListRooms", data=b"x",
                          headers={**auth, "Content-Type": "text/plain"}) as r:  # fmt: skip
            assert (r.status, (await r.json())["code"]) == (404, "bad_route")
        async with s.post(f"{base}/livekit.RoomService/ListRooms", data=b"\xff\xff\xff",
                          headers={**auth, "Content-Type": "application/protobuf"}) as r:  # fmt: skip
            assert (r.status, (await r.json())["code"]) == (400, "malformed")
        # A method of the protocol the emulator does not emulate.
        async with s.post(f"{base}/livekit.Ingress/ListIngress", data=b"",
                          headers={**auth, "Content-Type": "application/protobuf"}) as r:  # fmt: skip
            assert (r.status, (await r.json())["code"]) == (501, "unimplemented")
    async with livekit_emulator.api() as lk:
        with pytest.raises(api.TwirpError) as e:
            await lk.ingress.list_ingress(api.ListIngressRequest())
        assert (e.value.status, e.value.code) == (501, "unimplemented")


async def test_json_bodies_are_accepted(livekit_emulator: LiveKitEmulator):
    room = room_name()
    tok = token(livekit_emulator, room_create=True)
    async with aiohttp.ClientSession() as s:
        async with s.post(
            f"{livekit_emulator.url}/twirp/livekit.RoomService/CreateRoom",
            json={"name": room, "emptyTimeout": 30, "agents": [{"agent_name": "sarah-cme"}]},
            headers={"Authorization": f"Bearer {tok}"},
        ) as r:
            assert r.status == 200 and r.content_type == "application/json"
            body = await r.json()
    assert body["name"] == room and body["empty_timeout"] == 30 and body["sid"].startswith("RM_")
    async with livekit_emulator.api() as lk:
        (d,) = await lk.agent_dispatch.list_dispatch(room)
        assert d.agent_name == "sarah-cme"
        await lk.room.delete_room(room_pb.DeleteRoomRequest(room=room))
