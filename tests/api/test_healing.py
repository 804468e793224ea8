"""A call heals itself on the real stack (API, worker, emulator webhooks): the customer's
connection drops and they rejoin with a fresh token from the same call, once per token; the agent
is removed from the room and a new one is dispatched and joins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import jwt
from livekit import api as lkapi

from core.codec import EncryptionCodec
from core.models import call_workflow_id
from testkit.history import decoded_payloads
from tests.api.conftest import SUPERVISOR, ApiStack


async def state_until(
    stack: ApiStack, call_id: str, check: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = await stack.api.http("GET", f"/api/calls/{call_id}", token=SUPERVISOR)
        if r.status == 200 and r.body.get("state") and check(r.body["state"]):
            return r.body["state"]  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"call {call_id} never got there: {r.body}"
        await asyncio.sleep(0.2)


async def test_customer_drops_and_rejoins_then_the_agent_is_replaced(api_stack: ApiStack) -> None:
    api, lk = api_stack.api, api_stack.livekit
    r = await api.http("POST", "/api/calls", json_body={"customer_name": "Ana Lee"})
    assert r.status == 201, r.body
    grant = r.body
    call_id, room, me = grant["call_id"], grant["room_name"], grant["participant_identity"]
    assert await lk.validate(grant["token"]) == (200, "success")  # as LiveKit checks it
    assert (await lk.join_with_token(room, grant["token"]))["identity"] == me
    first = await state_until(api_stack, call_id, lambda s: s["status"] == "in_progress")
    agent = first["agent_identity"]

    # the customer's connection drops: the call waits for them instead of ending
    await lk.leave(room, me)
    await state_until(api_stack, call_id, lambda s: s["customer_reconnecting"])
    again = await api.http(
        "POST", f"/api/calls/{call_id}/rejoin", json_body={"token": grant["token"]}
    )
    assert again.status == 201, again.body
    assert again.body["call_id"] == call_id and again.body["participant_identity"] == me
    claims = lkapi.TokenVerifier(lk.api_key, lk.api_secret).verify(again.body["token"])
    assert claims.video is not None and claims.video.room == room
    assert (await lk.join_with_token(room, again.body["token"]))["identity"] == me
    back = await state_until(api_stack, call_id, lambda s: not s["customer_reconnecting"])
    assert back["status"] == "in_progress"

    # the agent is removed from the room: a new one is dispatched and takes the call
    await lk.leave(room, agent)
    replaced = await state_until(
        api_stack, call_id, lambda s: s["agent_identity"] not in ("", agent) and not s["agent_lost"]
    )
    assert replaced["status"] == "in_progress"
    async with lk.api() as lkc:
        live = await lkc.agent_dispatch.list_dispatch(room)
    assert any('"resume": true' in d.metadata for d in live)

    # a token of another call, or none at all, proves nothing; an ended call takes no one back
    other = await api.http("POST", "/api/calls", json_body={})
    wrong = await api.http(
        "POST", f"/api/calls/{call_id}/rejoin", json_body={"token": other.body["token"]}
    )
    assert wrong.status == 403 and wrong.body["error"]["field"] == "token"
    junk = await api.http("POST", f"/api/calls/{call_id}/rejoin", json_body={"token": "x" * 40})
    assert junk.status == 403
    assert (await api.http("POST", f"/api/calls/{call_id}/rejoin", json_body={})).status == 422
    for cid in (call_id, other.body["call_id"]):
        await api.http(
            "POST", f"/api/calls/{cid}/end", token=SUPERVISOR, json_body={"reason": "done"}
        )
    for _ in range(150):
        r = await api.http("GET", f"/api/calls/{call_id}", token=SUPERVISOR)
        if r.body["status"] == "completed":
            break
        await asyncio.sleep(0.2)
    late = await api.http(
        "POST", f"/api/calls/{call_id}/rejoin", json_body={"token": grant["token"]}
    )
    assert late.status in (404, 409), late.body


def reissued(stack: ApiStack, token: str, **claims: Any) -> str:
    """`token` signed again by us with some claims changed (what only the API could make)."""
    body = jwt.decode(token, options={"verify_signature": False}) | claims
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, stack.settings.LIVEKIT_API_SECRET.get_secret_value(), "HS256")


async def test_a_rejoin_proof_works_once_and_no_join_token_is_in_history(
    api_stack: ApiStack, db: Any
) -> None:
    """The proof of a rejoin is the call's latest token: used twice, an older one, or one past
    its expiry by more than the rejoin grace (the customer connected) is a 403 naming
    `token`. The rejoin is on the call's record, and no payload of the call's history,
    decoded with the keys, holds a join token (a JWT starts `eyJ`)."""
    api, lk = api_stack.api, api_stack.livekit
    r = await api.http("POST", "/api/calls", json_body={"customer_name": "Ida Once"})
    assert r.status == 201, r.body
    call_id, room, me = r.body["call_id"], r.body["room_name"], r.body["participant_identity"]
    first = r.body["token"]
    await lk.join_with_token(room, first)
    await state_until(api_stack, call_id, lambda s: s["status"] == "in_progress")
    await lk.leave(room, me)
    await state_until(api_stack, call_id, lambda s: s["customer_reconnecting"])

    async def rejoin(token: str) -> Any:
        return await api.http("POST", f"/api/calls/{call_id}/rejoin", json_body={"token": token})

    again = await rejoin(first)
    assert again.status == 201, again.body
    latest = again.body["token"]
    assert await lk.validate(latest) == (200, "success")
    await lk.join_with_token(room, latest)
    await state_until(api_stack, call_id, lambda s: not s["customer_reconnecting"])

    twice = await rejoin(first)
    assert twice.status == 403 and twice.body["error"]["field"] == "token", twice.body
    assert "latest" in twice.body["error"]["message"]
    grace = api_stack.settings.CUSTOMER_REJOIN_GRACE_S
    stale = reissued(api_stack, latest, exp=int(time.time() - grace - 5), nbf=None)
    past = await rejoin(stale)
    assert past.status == 403 and "grace" in past.body["error"]["message"], past.body
    no_id = await rejoin(reissued(api_stack, latest, jti=None))  # no grant of ours has no id
    assert no_id.status == 403 and "latest" in no_id.body["error"]["message"], no_id.body

    for _ in range(100):
        kinds = await db.fetch(
            "SELECT data FROM call_events WHERE call_id = $1 AND kind = 'customer_rejoined'",
            call_id,
        )
        if kinds:
            break
        await asyncio.sleep(0.1)
    assert len(kinds) == 1, "the rejoin is on the call's record"

    codec = EncryptionCodec(api_stack.settings.payload_keys)  # reads plaintext ones too
    wid = call_workflow_id(call_id)
    payloads = await decoded_payloads(api_stack.raw_client, wid, codec)
    assert payloads and any(b"Ida Once" in p for p in payloads)  # decoding did decode
    assert not [p for p in payloads if b"eyJ" in p], "a JWT in a decoded history payload"
    raw = await api_stack.raw_client.get_workflow_handle(wid).fetch_history()
    assert b"eyJ" not in b"".join(e.SerializeToString() for e in raw.events)
    await api.http("POST", f"/api/calls/{call_id}/end", token=SUPERVISOR, json_body={"reason": "x"})
