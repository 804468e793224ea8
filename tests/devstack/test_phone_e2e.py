"""The phone line end to end on the devstack's parts (the LiveKit emulator's SIP, the Temporal
dev server, PostgreSQL, S3, the product's worker and API): `ops telephony setup`, an inbound
call from `/_emulator/sip/inbound` served by the stand-in conversation to a stored recording,
a cold transfer, and calls out through `POST /api/calls/outbound`: answered, busy, unanswered,
refused numbers and the hourly cap."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from core.livekit import livekit_client
from core.models import phone_call_id
from core.telephony import claim_outbound
from devstack.standin import converse
from ops.telephony import ensure_telephony
from tests.api.conftest import (  # noqa: F401
    ADMIN,
    PHONE_NUMBER,
    SUPERVISOR,
    ApiStack,
    _api_stack_session,
    api_stack,
)
from tests.ops.conftest import wait_call

CALLER = "+15551230001"


@pytest.fixture
async def phone_line(api_stack: ApiStack) -> AsyncIterator[ApiStack]:  # noqa: F811
    """The stack with `ops telephony setup` run against its emulator (and forgotten after)."""
    emulator = api_stack.livekit.handle.emulator
    emulator.sip_reset()
    lk = livekit_client(api_stack.settings)
    try:
        await ensure_telephony(lk, api_stack.settings)
    finally:
        await lk.aclose()
    yield api_stack
    await api_stack.livekit.wait_idle()
    emulator.sip_reset()


def number() -> str:
    return "+1555" + str(uuid.uuid4().int)[:7]


async def outbound(stack: ApiStack, to: str, outcome: str, ring_s: float = 0.2) -> str:
    await stack.livekit.control("PUT", f"sip/outcomes/{to}", {"outcome": outcome, "ring_s": ring_s})
    r = await stack.api.http("POST", "/api/calls/outbound", token=SUPERVISOR,
                             json_body={"to": to, "customer_name": "Ada", "reason": "follow-up"})  # fmt: skip
    assert r.status == 201, r.body
    assert r.body["status"] == "dialing" and r.body["phone"] == to[:2] + "•••••" + to[-4:]
    return r.body["call_id"]  # type: ignore[no-any-return]


async def test_an_inbound_phone_call_reaches_a_stored_recording(phone_line: ApiStack) -> None:
    stack = phone_line
    call = await stack.livekit.control("POST", "sip/inbound", {"from": CALLER, "to": PHONE_NUMBER})
    room, identity = call["room"], call["identity"]
    assert room.startswith("phone_") and CALLER[2:] not in room + identity
    call_id = phone_call_id(room)
    # The stand-in serves it as the agent would (its lines through this test's API).
    api = urlsplit(stack.api.url)
    settings = stack.settings.model_copy(update={"API_HOST": api.hostname, "API_PORT": api.port})
    await converse(settings, stack.livekit.control_url, room, pace_s=0.2, phone=identity)
    body = await wait_call(stack, call_id, status="completed", recording_status="stored")
    assert (body["channel"], body["direction"], body["room_name"]) == ("phone", "inbound", room)
    assert body["end_reason"] == "customer_left"  # the caller hung up: no rejoin grace
    rec = await stack.api.http("GET", f"/api/calls/{call_id}/recording", token=SUPERVISOR)
    assert rec.status == 200 and rec.body["size_bytes"] > 0, rec.body
    # No number in what Temporal cannot encrypt: the search attributes (the room name holds
    # the last four digits only, as LiveKit's hide_phone_number names it).
    desc = await stack.raw_client.get_workflow_handle(f"call-{call_id}").describe()
    fields = desc.raw_description.workflow_execution_info.search_attributes.indexed_fields
    visible = json.dumps({k: v.data.decode() for k, v in fields.items()})
    assert "RoomName" in visible and CALLER[2:] not in visible and CALLER[1:] not in visible


async def test_a_phone_caller_is_transferred_and_a_web_call_is_not(phone_line: ApiStack) -> None:
    stack = phone_line
    call = await stack.livekit.control("POST", "sip/inbound", {"from": CALLER, "to": PHONE_NUMBER})
    call_id = phone_call_id(call["room"])
    await wait_call(stack, call_id, status="in_progress")
    bad = await stack.api.http("POST", f"/api/calls/{call_id}/transfer", token=SUPERVISOR,
                               json_body={"to": "+15551239999"})  # fmt: skip
    assert bad.status == 422 and bad.body["error"]["field"] == "to"
    r = await stack.api.http("POST", f"/api/calls/{call_id}/transfer", token=SUPERVISOR,
                             json_body={"to": "tel:+15551239999"})  # fmt: skip
    assert r.status == 200, r.body
    body = await wait_call(stack, call_id, status="completed")
    assert body["end_reason"] == "transferred"
    calls = (await stack.livekit.control("GET", "sip/calls"))["calls"]
    assert [c["transferred_to"] for c in calls if c["room"] == call["room"]] == ["tel:+15551239999"]

    web = await stack.api.http("POST", "/api/calls", json_body={"customer_name": "Web"})
    r = await stack.api.http("POST", f"/api/calls/{web.body['call_id']}/transfer",
                             token=SUPERVISOR, json_body={"to": "tel:+15551239999"})  # fmt: skip
    assert r.status == 409 and r.body["error"]["code"] == "not_a_phone_call", r.body
    await stack.api.http("POST", f"/api/calls/{web.body['call_id']}/end", token=ADMIN)


async def test_outbound_answered_busy_and_unanswered(phone_line: ApiStack) -> None:
    stack = phone_line
    answered, busy, unanswered = number(), number(), number()
    ids = [await outbound(stack, answered, "answer"), await outbound(stack, busy, "busy"),
           await outbound(stack, unanswered, "no_answer")]  # fmt: skip
    live = await wait_call(stack, ids[0], status="in_progress")
    assert (live["channel"], live["direction"]) == ("phone", "outbound")
    assert live["phone"] == answered[:2] + "•••••" + answered[-4:]
    full = await stack.api.http("GET", f"/api/calls/{ids[0]}", token=ADMIN)
    assert full.body["phone"] == answered  # only an admin's call detail shows it in full
    assert answered not in json.dumps(
        (await stack.api.http("GET", "/api/calls?status=all", token=ADMIN)).body
    )
    for call_id, reason in ((ids[1], "busy"), (ids[2], "no_answer")):
        body = await wait_call(stack, call_id, status="completed")
        assert (body["end_reason"], body["recording_status"]) == (reason, "none")
    # Erasure takes the number with the call (its row, its dial, its history).
    erased = await stack.api.http("DELETE", f"/api/calls/{ids[1]}", token=ADMIN)
    assert erased.status == 200, erased.body
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        left = await conn.fetchval(
            "SELECT (SELECT count(*) FROM calls WHERE call_id = $1)"
            " + (SELECT count(*) FROM outbound_dials WHERE call_id = $1)", ids[1])  # fmt: skip
    finally:
        await conn.close()
    assert left == 0
    # The answered phone hangs up: the call is over at once.
    await stack.livekit.control("DELETE", f"rooms/call-{ids[0]}/participants/customer-{ids[0]}")
    body = await wait_call(stack, ids[0], status="completed")
    assert body["end_reason"] == "customer_left"


@pytest.mark.parametrize("to", ["15551230001", "+1555 123", "+4930123456", "+0123456789"], ids=str)
async def test_a_number_we_may_not_call_is_422_and_dials_nothing(
    phone_line: ApiStack, to: str
) -> None:
    stack = phone_line
    before = len((await stack.livekit.control("GET", "sip/calls"))["calls"])
    r = await stack.api.http("POST", "/api/calls/outbound", token=SUPERVISOR, json_body={"to": to})
    assert r.status == 422 and r.body["error"]["field"] == "to", r.body
    assert len((await stack.livekit.control("GET", "sip/calls"))["calls"]) == before
    ops = await stack.api.http("POST", "/api/calls/outbound", token="nope", json_body={"to": to})
    assert ops.status == 401


async def test_the_hourly_cap_holds_across_instances(api_stack: ApiStack) -> None:  # noqa: F811
    pool = await asyncpg.create_pool(api_stack.settings.database_url, min_size=1, max_size=4)
    try:
        await pool.execute("DELETE FROM outbound_dials")
        got = await asyncio.gather(
            *(claim_outbound(pool, f"cap{i:012d}", "sup", 3) for i in range(8))
        )
        assert sorted(got) == [False] * 5 + [True] * 3
        await pool.execute("DELETE FROM outbound_dials")
    finally:
        await pool.close()
