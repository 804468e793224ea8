"""The control API: participants of each kind, auto agent switches, state, and its access rule."""

from __future__ import annotations

import uuid

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from livekit import api
from livekit.protocol import models
from livekit.protocol import room as room_pb

from devstack.livekit.control import EMULATOR, control_middleware
from tests.fixtures.livekit import LiveKitEmulator, WebhookSink


def room_name() -> str:
    return f"call-{uuid.uuid4().hex[:10]}"


async def test_kinds_map_to_participant_info(livekit_emulator: LiveKitEmulator):
    room = room_name()
    customer = await livekit_emulator.join(room, "customer-1", "customer", attributes={"a": "b"})
    agent = await livekit_emulator.join(room, "agent-1", "agent")
    supervisor = await livekit_emulator.join(room, "sup-1", "supervisor")
    assert customer.get("kind", "STANDARD") == "STANDARD" and customer["attributes"] == {"a": "b"}
    assert agent["kind"] == "AGENT" and agent["permission"]["agent"]
    assert supervisor["permission"]["hidden"] and not supervisor["permission"].get("canPublish")
    err = await livekit_emulator.control(
        "POST", f"rooms/{room}/participants/sup-1/tracks", {}, expect=403
    )
    assert err["error"]["field"] == "identity"
    async with livekit_emulator.api() as lk:
        (r,) = (await lk.room.list_rooms(room_pb.ListRoomsRequest(names=[room]))).rooms
        assert r.num_participants == 2  # the hidden supervisor is not counted
        track = await livekit_emulator.publish(room, "customer-1", type="audio")
        assert track["source"] == "MICROPHONE"
        (r,) = (await lk.room.list_rooms(room_pb.ListRoomsRequest(names=[room]))).rooms
        assert r.num_publishers == 1
    # The customer leaves but the supervisor (not an agent) is still there: the room stays.
    assert (await livekit_emulator.leave(room, "customer-1"))["room_open"] is True
    assert (await livekit_emulator.leave(room, "sup-1"))["room_open"] is False


async def test_duplicate_identity_replaces_the_old_participant(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    room = room_name()
    first = await livekit_emulator.join(room, "c", "customer")
    second = await livekit_emulator.join(room, "c", "customer")
    assert first["sid"] != second["sid"]
    left = await livekit_webhooks.wait_for("participant_left", room)
    assert left.participant.sid == first["sid"]
    assert left.participant.disconnect_reason == models.DUPLICATE_IDENTITY
    await livekit_emulator.end_room(room)


async def test_bad_control_requests_are_4xx_naming_the_field(livekit_emulator: LiveKitEmulator):
    room = room_name()
    cases = [
        ("POST", f"rooms/{room}/participants", {"identity": "x", "kind": "robot"}, 400, "kind"),
        ("POST", f"rooms/{room}/participants", {"kind": "customer"}, 400, "identity"),
        ("POST", f"rooms/{room}/participants", {"identity": "x", "kind": "customer", "attributes": {"a": 1}}, 400, "attributes"),
        ("POST", "webhook", {"url": "ftp://x"}, 400, "url"),
        ("POST", "auto-agent", {"delay_s": -1}, 400, "delay_s"),
        ("DELETE", f"rooms/{room}/participants/nobody", None, 404, ""),
    ]  # fmt: skip
    for method, path, body, status, field in cases:
        err = await livekit_emulator.control(method, path, body, expect=status)
        assert err["error"].get("field", "") == field or not field, err
    async with livekit_emulator.session.post(
        f"{livekit_emulator.control_url}/faults", data=b"{not json"
    ) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_json"


async def test_auto_agent_can_be_switched_off_and_on(livekit_emulator: LiveKitEmulator):
    off, on = room_name(), room_name()
    await livekit_emulator.set_auto_agent(enabled=False)
    await livekit_emulator.set_auto_agent(enabled=True, room=on)
    try:
        async with livekit_emulator.api() as lk:
            for room in (off, on):
                await lk.agent_dispatch.create_dispatch(
                    api.CreateAgentDispatchRequest(agent_name="sarah-cme", room=room)
                )
            await livekit_emulator.wait_idle()
            state = {r["name"]: r for r in (await livekit_emulator.state())["rooms"]}
            assert state[off]["participants"] == [] and state[off]["auto_agent"] is False
            (agent,) = state[on]["participants"]
            assert agent["role"] == "agent" and agent["info"]["kind"] == "AGENT"
            (d,) = state[on]["dispatches"]
            assert d["state"]["jobs"][0]["state"]["participantIdentity"] == agent["identity"]
            for room in (off, on):
                await lk.room.delete_room(room_pb.DeleteRoomRequest(room=room))
    finally:
        await livekit_emulator.set_auto_agent(enabled=True)


async def test_state_lists_everything(livekit_emulator: LiveKitEmulator):
    room = room_name()
    await livekit_emulator.join(room, "c", "customer")
    state = await livekit_emulator.state()
    assert {"rooms", "egresses", "webhooks", "faults", "auto_agent", "idle"} <= set(state)
    (r,) = [x for x in state["rooms"] if x["name"] == room]
    assert r["sid"].startswith("RM_") and r["participants"][0]["identity"] == "c"
    await livekit_emulator.end_room(room)
    err = await livekit_emulator.control("POST", f"rooms/{room}/end", expect=404)
    assert err["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("remote", "auth", "status"),
    [("127.0.0.1", None, 200), ("::1", None, 200), ("10.1.2.3", None, 401),
     ("10.1.2.3", "Bearer nope", 401), ("10.1.2.3", "good", 200)],
)  # fmt: skip
async def test_control_api_is_open_on_loopback_only(
    livekit_emulator: LiveKitEmulator, remote: str, auth: str | None, status: int
):
    if auth == "good":
        tok = api.AccessToken(livekit_emulator.api_key, livekit_emulator.api_secret).to_jwt()
        auth = f"Bearer {tok}"
    emulator = livekit_emulator.handle.emulator  # the middleware finds it on the app
    request = make_mocked_request(
        "GET", "/_emulator/state", headers={"Authorization": auth} if auth else {},
        app={EMULATOR: emulator}, transport=_Transport(remote),  # type: ignore[arg-type]
    )  # fmt: skip

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({})

    resp = await control_middleware(request, ok)
    assert resp.status == status


class _Transport:
    def __init__(self, host: str):
        self._host = host

    def get_extra_info(self, name: str, default=None):
        return (self._host, 1234) if name == "peername" else default

    def is_closing(self) -> bool:
        return False


def join_token(emu: LiveKitEmulator, room: str, identity: str = "customer-t", **kw: object) -> str:
    secret = kw.pop("secret", emu.api_secret)
    grants = api.VideoGrants(room_join=bool(kw.pop("room_join", True)), room=room)
    at = api.AccessToken(emu.api_key, str(secret)).with_grants(grants).with_name("Ada")
    return at.with_identity(identity).to_jwt() if identity else at.to_jwt()


async def test_a_join_token_is_checked_as_livekit_checks_a_connection(
    livekit_emulator: LiveKitEmulator,
) -> None:
    """`/rtc/validate` and a control-API join with a token: a token for the room joins with its
    own identity and name; another room's, a forged one, or one without `roomJoin` does not."""
    emu, room = livekit_emulator, room_name()
    good = join_token(emu, room)
    assert await emu.validate(good) == (200, "success")
    joined = await emu.join_with_token(room, good)
    assert joined["identity"] == "customer-t" and joined["name"] == "Ada"
    forged = join_token(emu, room, secret="another-secret-0123456789abcdef0")
    assert (await emu.validate(forged))[0] == 401
    assert (await emu.validate(join_token(emu, room, room_join=False)))[0] == 401
    assert (await emu.validate("x" * 40))[0] == 401
    for token, status in ((forged, 401), (join_token(emu, room_name()), 401)):
        err = await emu.control("POST", f"rooms/{room}/participants",
                                {"token": token, "kind": "customer"}, expect=status)  # fmt: skip
        assert err["error"]["field"] == "token"
    async with emu.session.get(f"{emu.url}/rtc/validate") as resp:
        assert resp.status == 401  # no token at all


async def test_a_departure_timeout_keeps_the_room_for_a_returning_customer(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    room = room_name()
    async with livekit_emulator.api() as lk:
        await lk.room.create_room(room_pb.CreateRoomRequest(name=room, departure_timeout=1))
    await livekit_emulator.join(room, "customer-1", "customer")
    # Its last non-agent left, yet the room stays open for the timeout (LiveKit's behaviour)...
    assert (await livekit_emulator.leave(room, "customer-1"))["room_open"] is True
    # ...and closes once nobody came back.
    finished = await livekit_webhooks.wait_for("room_finished", room, timeout=30)
    assert finished.room.name == room
