"""A call heals itself on the real stack (API, worker, emulator webhooks): the customer's
connection drops and they rejoin with a fresh token from the same call; the agent is removed
from the room and a new one is dispatched and joins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from livekit import api as lkapi

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
    await lk.join(room, me, kind="customer")
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
    await lk.join(room, me, kind="customer")
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
