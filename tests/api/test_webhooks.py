"""`POST /webhooks/livekit`: forged, tampered, stale and unsigned webhooks are 401 and touch
nothing; verified ones reach the call's workflow once, however often they are replayed."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from typing import Any

from google.protobuf.json_format import MessageToJson
from livekit import api as lkapi
from livekit.protocol.models import ParticipantInfo, Room
from livekit.protocol.webhook import WebhookEvent

from core.models import new_call_id, room_name_for
from tests.api.conftest import SUPERVISOR, ApiStack


def signed(body: bytes, key: str, secret: str, ttl: timedelta = timedelta(minutes=5)) -> str:
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return lkapi.AccessToken(key, secret).with_sha256(digest).with_ttl(ttl).to_jwt()


def supervisor_joined(call_id: str, event_id: str) -> bytes:
    event = WebhookEvent(
        event="participant_joined",
        id=event_id,
        created_at=1_700_000_000,
        room=Room(name=room_name_for(call_id)),
        participant=ParticipantInfo(
            identity=f"supervisor-x-{event_id}", kind=ParticipantInfo.Kind.STANDARD
        ),
    )
    return MessageToJson(event).encode()


async def _participants(api_stack: ApiStack, call_id: str) -> list[dict[str, Any]]:
    r = await api_stack.api.http("GET", f"/api/calls/{call_id}", token=SUPERVISOR)
    assert r.status == 200, r.body
    return r.body["state"]["participants"]  # type: ignore[no-any-return]


async def test_forged_tampered_stale_and_unsigned_webhooks_are_refused(
    api_stack: ApiStack, live_call_id: str
) -> None:
    lk = api_stack.livekit
    before = await _participants(api_stack, live_call_id)
    body = supervisor_joined(live_call_id, "EV_forged")
    tampered = body.replace(b"supervisor-x", b"supervisor-y")
    cases = {
        "unsigned": (body, None),
        "garbage token": (body, "not-a-jwt"),
        "wrong secret": (body, signed(body, lk.api_key, "another-secret-another-secret-0000")),
        "wrong key": (body, signed(body, "other-key", lk.api_secret)),
        "tampered body": (tampered, signed(body, lk.api_key, lk.api_secret)),
        "stale": (body, signed(body, lk.api_key, lk.api_secret, ttl=timedelta(minutes=-5))),
        "not json": (b"{oops", signed(b"{oops", lk.api_key, lk.api_secret)),
    }
    for name, (payload, token) in cases.items():
        headers = {"Content-Type": "application/webhook+json"}
        if token is not None:
            headers["Authorization"] = token
        r = await api_stack.api.http("POST", "/webhooks/livekit", data=payload, headers=headers)
        assert r.status == 401, (name, r.status, r.body)
        assert r.error["code"].startswith("webhook_") or r.error["code"] == "unauthorized", name
    assert await _participants(api_stack, live_call_id) == before


async def test_verified_webhook_reaches_the_call_once_however_often_replayed(
    api_stack: ApiStack, live_call_id: str
) -> None:
    lk = api_stack.livekit
    body = supervisor_joined(live_call_id, f"EV_{new_call_id()}")
    before = len(await _participants(api_stack, live_call_id))
    for _ in range(3):  # LiveKit resends; an attacker replays within the token's life
        headers = {"Authorization": signed(body, lk.api_key, lk.api_secret)}
        r = await api_stack.api.http("POST", "/webhooks/livekit", data=body, headers=headers)
        assert (r.status, r.body) == (200, {"status": "signalled"})
    after = await _participants(api_stack, live_call_id)
    assert len(after) == before + 1
    assert json.loads(body)["participant"]["identity"] in [p["identity"] for p in after]


async def test_verified_webhooks_for_other_rooms_are_acknowledged(api_stack: ApiStack) -> None:
    lk = api_stack.livekit
    for room in ("lobby", room_name_for(new_call_id())):  # not a call; a call that never existed
        event = WebhookEvent(event="room_started", id="EV_r", room=Room(name=room))
        body = MessageToJson(event).encode()
        r = await api_stack.api.http(
            "POST",
            "/webhooks/livekit",
            data=body,
            headers={"Authorization": signed(body, lk.api_key, lk.api_secret)},
        )
        assert r.status == 200 and r.body["status"] == "ignored"
    body = supervisor_joined(new_call_id(), "EV_nocall")
    r = await api_stack.api.http(
        "POST",
        "/webhooks/livekit",
        data=body,
        headers={"Authorization": signed(body, lk.api_key, lk.api_secret)},
    )
    assert (r.status, r.body) == (200, {"status": "no_live_call"})
