"""The desk through the API on the whole stack (dev server, the real worker and activities,
PostgreSQL, the LiveKit emulator): a supervisor hands a live call off, the rep with the skill
gets the offer with its briefing, accepts (a token for the customer's room, audited on the
call), goes back to Sarah and wraps up; bad input is a 4xx naming the field and changes
nothing; the desk's WebSocket follows the rep's state."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import jwt
import pytest

from tests.api.conftest import ADMIN, OPS, REP, REP2, SUPERVISOR, ApiStack, start_live_call


async def until(check: Any, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + 30
    while not (value := await check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.1)
    return value


@pytest.fixture
async def desk(api_stack: ApiStack) -> AsyncIterator[ApiStack]:
    """Both reps offline before and after: the desk is one workflow for the whole session."""
    for token in (REP, REP2):
        await _settle(api_stack, token)
    yield api_stack
    for token in (REP, REP2):
        await _settle(api_stack, token)


async def _settle(stack: ApiStack, token: str) -> None:
    me = (await stack.api.http("GET", "/api/desk/me", token=token)).body
    if me["state"] == "busy":
        await stack.api.http("POST", "/api/desk/me/back-to-sarah", token=token)
    r = await stack.api.http("PUT", "/api/desk/me", token=token, json_body={"state": "offline"})
    assert r.status == 200, r.body


async def test_a_handed_off_call_is_offered_accepted_and_wrapped_up(desk: ApiStack) -> None:
    api = desk.api
    call_id = await start_live_call(desk, customer_name="Dana Whitfield")
    r = await api.http("PUT", "/api/desk/me", token=REP, json_body={"state": "available",
                                                                     "skills": ["sales"]})  # fmt: skip
    assert r.status == 200 and (r.body["state"], r.body["skills"]) == ("available", ["sales"])

    r = await api.http("POST", f"/api/calls/{call_id}/handoff", token=SUPERVISOR,
                       json_body={"reason": "wants a trade-in price", "skill": "sales"})  # fmt: skip
    assert r.status == 202, r.body

    async def offered() -> list[dict[str, Any]]:
        got = await api.http("GET", "/api/desk/offers", token=REP)
        return got.body["offers"]  # type: ignore[no-any-return]

    (offer,) = await until(offered, "ann's offer")
    assert offer["call_id"] == call_id and offer["reason"] == "wants a trade-in price"
    brief = offer["briefing"]
    assert brief["method"] == "extract" and "not a summary" in brief["label"]
    assert brief["customer"] == "Dana Whitfield" and brief["why"] == ["wants a trade-in price"]
    assert (await api.http("GET", "/api/desk/offers", token=REP2)).body["offers"] == []
    queue = (await api.http("GET", "/api/desk/queue", token=SUPERVISOR)).body["queue"]
    assert [(q["call_id"], q["position"], q["offered_to"]) for q in queue] == [
        (call_id, 1, "ann")]  # fmt: skip

    # bob may not take ann's offer; ann takes it
    r = await api.http("POST", f"/api/desk/offers/{offer['offer_id']}/accept", token=REP2)
    assert r.status == 409 and r.body["error"]["code"] == "desk_refused"
    r = await api.http("POST", f"/api/desk/offers/{offer['offer_id']}/accept", token=REP)
    assert r.status == 201, r.body
    assert r.body["room"] == f"call-{call_id}" and r.body["url"] and r.body["briefing"]
    claims = jwt.decode(r.body["token"], options={"verify_signature": False})
    assert claims["sub"].startswith("rep-ann-") and claims["video"]["room"] == r.body["room"]
    assert claims["video"]["canPublish"] and claims["video"]["canPublishSources"] == ["microphone"]
    assert not claims["video"].get("hidden")
    r2 = await api.http("POST", f"/api/desk/offers/{offer['offer_id']}/accept", token=REP)
    assert r2.status == 409  # once

    async def audited() -> bool:
        conn = await asyncpg.connect(desk.settings.database_url)
        try:
            return bool(await conn.fetchval(
                "SELECT count(*) FROM call_events WHERE call_id = $1 AND kind = 'supervisor_action'"
                " AND data->>'action' = 'rep_joined' AND data->>'by' = 'ann'", call_id))  # fmt: skip
        finally:
            await conn.close()

    assert await until(audited, "rep_joined on the call")
    assert (await api.http("GET", "/api/desk/me", token=REP)).body["state"] == "busy"

    r = await api.http("POST", "/api/desk/me/back-to-sarah", token=REP)
    assert (
        r.status == 200 and r.body["state"] == "wrap_up" and r.body["returned_call_id"] == call_id
    )
    stats = (await api.http("GET", "/api/desk/stats", token=SUPERVISOR)).body
    assert stats["answered"] >= 1 and stats["service_level_pct"] is not None
    r = await api.http("PUT", "/api/desk/me", token=REP, json_body={"state": "available"})
    assert r.body["state"] == "available"
    await api.http("POST", f"/api/calls/{call_id}/end", token=ADMIN)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("PUT", "/api/desk/me", {"state": "busy"}, 422, "state"),
        ("PUT", "/api/desk/me", {"state": "available", "skills": ["service"]}, 422, "skills"),
        ("PUT", "/api/desk/me", {"state": "available", "skills": ["Sales!"]}, 422, "skills.0"),
        ("PUT", "/api/desk/me", {"state": "available", "extra": 1}, 422, "extra"),
        ("POST", "/api/desk/offers/not-an-offer/accept", None, 422, "offer_id"),
        ("POST", "/api/desk/offers/00000000-0000-4000-8000-000000000000/accept", None, 409, None),
        ("POST", "/api/desk/offers/00000000-0000-4000-8000-000000000000/decline", None, 409, None),
        ("POST", "/api/desk/me/back-to-sarah", None, 409, None),
    ],
)
async def test_bad_input_is_a_4xx_naming_the_field_and_changes_nothing(
    desk: ApiStack, method: str, path: str, body: Any, status: int, field: str | None
) -> None:
    before = (await desk.api.http("GET", "/api/desk/me", token=REP2)).body
    r = await desk.api.http(method, path, token=REP2, json_body=body)
    assert r.status == status, r.body
    if field:
        assert r.body["error"]["field"] == field
    assert (await desk.api.http("GET", "/api/desk/me", token=REP2)).body == before


async def test_who_may_use_the_desk(desk: ApiStack) -> None:
    api = desk.api
    assert (await api.http("GET", "/api/desk/me")).status == 401
    assert (await api.http("GET", "/api/desk/me", token=OPS)).status == 403
    assert (await api.http("GET", "/api/desk/queue", token=OPS)).status == 403
    me = (await api.http("GET", "/api/desk/me", token=SUPERVISOR)).body  # can act as a rep
    assert me["allowed_skills"] == ["general"]
    r = await api.http("POST", "/api/calls/0123456789ab0123/handoff", token=REP,
                       json_body={"reason": "x"})  # fmt: skip
    assert r.status == 403  # a rep takes calls; a supervisor hands them off
    r = await api.http("POST", "/api/calls/0123456789ab0123/handoff", token=SUPERVISOR,
                       json_body={"reason": "x", "skill": "No Such"})  # fmt: skip
    assert r.status == 422 and r.body["error"]["field"] == "skill"


async def test_the_desk_socket_follows_the_reps_state(desk: ApiStack) -> None:
    async with desk.api.ws("/ws/desk", token=REP2) as ws:
        first = json.loads((await ws.receive(timeout=10)).data)
        assert first["type"] == "desk" and first["me"]["state"] == "offline"
        assert first["offer"] is None and "service_level_pct" in first["stats"]
        await desk.api.http("PUT", "/api/desk/me", token=REP2, json_body={"state": "break"})
        while True:
            msg = json.loads((await ws.receive(timeout=10)).data)
            if msg["me"]["state"] == "break":
                break


async def test_a_rep_ends_the_call_they_are_on(desk: ApiStack) -> None:
    api = desk.api
    call_id = await start_live_call(desk, customer_name="Eli Moss")
    await api.http("PUT", "/api/desk/me", token=REP2, json_body={"state": "available"})
    r = await api.http("POST", f"/api/calls/{call_id}/handoff", token=SUPERVISOR,
                       json_body={"reason": "asked for a person", "skill": "sales"})  # fmt: skip
    assert r.status == 202

    async def offered() -> list[dict[str, Any]]:
        return (await api.http("GET", "/api/desk/offers", token=REP2)).body["offers"]  # type: ignore[no-any-return]

    (offer,) = await until(offered, "bob's offer")
    r = await api.http("POST", f"/api/desk/offers/{offer['offer_id']}/accept", token=REP2)
    assert r.status == 201
    # bob follows the call he is on (its transcript, live); ann, on no call, may not
    async with api.ws(f"/ws/calls/{call_id}", token=REP2) as ws:
        first = json.loads((await ws.receive(timeout=10)).data)
        assert first["type"] == "snapshot" and first["call"]["call_id"] == call_id
    async with api.ws(f"/ws/calls/{call_id}", token=REP) as ws:
        refused = json.loads((await ws.receive(timeout=10)).data)
        assert refused["type"] == "error" and refused["error"]["code"] == "not_your_call"
    r = await api.http("POST", "/api/desk/me/end-call", token=REP2)
    assert r.status == 200 and r.body["call_id"] == call_id, r.body
    call = await api.http("GET", f"/api/calls/{call_id}", token=SUPERVISOR)
    assert call.body["status"] in ("ending", "completed")

    async def wrapping() -> bool:
        return (await api.http("GET", "/api/desk/me", token=REP2)).body["state"] == "wrap_up"

    assert await until(wrapping, "bob wrapping up")  # the call's end reached the desk
    r = await api.http("POST", "/api/desk/me/end-call", token=REP2)
    assert r.status == 409  # on no call now
