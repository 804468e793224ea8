"""The callbacks API on the real stack (dev server, the product's worker, PostgreSQL): every
refusal is a 422 naming its field (or a 409 for a do-not-call number) and creates nothing; one
request id gives one callback; reschedule, cancel, lists, masking; a number put on the
do-not-call list cancels its waiting callback."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api.conftest import ADMIN, OPS, SUPERVISOR, ApiStack


def number() -> str:
    return "+1555" + str(uuid.uuid4().int)[:7]


def midday_zone() -> str:
    """A fixed-offset zone whose local time is now about 14:00 (the window is open in it)."""
    offset = (14 - datetime.now(UTC).hour + 12) % 24 - 12  # hours east of UTC, -12..11
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")


def body(**kw: Any) -> dict[str, Any]:
    at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    return {"phone": number(), "at": at, "timezone": "America/Chicago",
            "reason": "the Silverado test drive", **kw}  # fmt: skip


async def count(stack: ApiStack) -> int:
    r = await stack.api.http("GET", "/api/callbacks", token=SUPERVISOR)
    assert r.status == 200, r.body
    return len(r.body["callbacks"])


async def wait_status(
    stack: ApiStack, cid: str, status: str, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = await stack.api.http("GET", f"/api/callbacks/{cid}", token=SUPERVISOR)
        if r.status == 200 and r.body["status"] == status:
            return r.body  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"callback {cid} never {status}: {r.body}"
        await asyncio.sleep(0.3)


@pytest.mark.parametrize(
    "change,field",
    [
        ({"phone": "5551234567"}, "phone"),
        ({"phone": "+447700900123"}, "phone"),  # not under SIP_OUTBOUND_ALLOWED_PREFIXES
        ({"at": "2020-01-01T10:00:00Z"}, "at"),
        ({"at": (datetime.now(UTC) + timedelta(days=15)).isoformat()}, "at"),
        ({"at": "2027-03-14T15:00:00"}, "at"),  # no offset
        ({"at": "tomorrow at three"}, "at"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"call_id": "NOT A CALL"}, "call_id"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field_and_creates_nothing(
    api_stack: ApiStack, change: dict[str, Any], field: str
) -> None:
    before = await count(api_stack)
    r = await api_stack.api.http("POST", "/api/callbacks", token=SUPERVISOR,
                                 json_body=body(**change))  # fmt: skip
    assert r.status == 422 and r.body["error"]["field"] == field, r.body
    assert await count(api_stack) == before


async def test_roles(api_stack: ApiStack) -> None:
    assert (await api_stack.api.http("POST", "/api/callbacks", json_body=body())).status == 401
    r = await api_stack.api.http("POST", "/api/callbacks", token=OPS, json_body=body())
    assert r.status == 403


async def test_one_request_one_callback_moved_listed_and_cancelled(api_stack: ApiStack) -> None:
    stack = api_stack
    req = body(request_id=f"req-{uuid.uuid4().hex}")
    first = await stack.api.http("POST", "/api/callbacks", token=SUPERVISOR, json_body=req)
    again = await stack.api.http("POST", "/api/callbacks", token=SUPERVISOR, json_body=req)
    assert first.status == again.status == 201, (first.body, again.body)
    cid = first.body["id"]
    assert again.body["id"] == cid and first.body["status"] == "scheduled"
    assert first.body["phone"] == req["phone"][:2] + "•••••" + req["phone"][-4:]
    full = await stack.api.http("GET", f"/api/callbacks/{cid}", token=ADMIN)
    assert full.status == 200 and full.body["phone"] == req["phone"]
    # Moved to the day after, 10:00 in Berlin (a zone the window then applies in).
    later = (datetime.now(UTC) + timedelta(days=2)).replace(hour=9, minute=0, second=0,
                                                           microsecond=0)  # fmt: skip
    r = await stack.api.http("PATCH", f"/api/callbacks/{cid}", token=SUPERVISOR,
                             json_body={"at": later.isoformat(), "timezone": "Etc/GMT-1"})  # fmt: skip
    assert r.status == 200, r.body
    assert r.body["timezone"] == "Etc/GMT-1" and r.body["due_at"] == later.isoformat()[:19] + "Z"
    bad = await stack.api.http("PATCH", f"/api/callbacks/{cid}", token=SUPERVISOR,
                               json_body={"at": later.isoformat(), "timezone": "Nowhere/X"})  # fmt: skip
    assert bad.status == 422 and bad.body["error"]["field"] == "timezone"
    listed = await stack.api.http("GET", "/api/callbacks?status=scheduled", token=SUPERVISOR)
    await wait_status(stack, cid, "scheduled")
    deadline = time.monotonic() + 30
    while cid not in [c["id"] for c in listed.body["callbacks"]]:
        assert time.monotonic() < deadline, "the row never listed"
        await asyncio.sleep(0.3)
        listed = await stack.api.http("GET", "/api/callbacks?status=scheduled", token=SUPERVISOR)
    gone = await stack.api.http("DELETE", f"/api/callbacks/{cid}", token=SUPERVISOR)
    assert gone.status == 200 and gone.body["status"] == "cancelled", gone.body
    body_after = await wait_status(stack, cid, "cancelled")
    assert body_after["attempts"] == []
    twice = await stack.api.http("DELETE", f"/api/callbacks/{cid}", token=SUPERVISOR)
    assert twice.status in (404, 409), twice.body
    again = await stack.api.http("POST", "/api/callbacks", token=SUPERVISOR, json_body=req)
    assert again.status == 201 and again.body["id"] == cid and again.body["status"] == "cancelled"
    bad_range = await stack.api.http("GET", "/api/callbacks?status=sleeping", token=SUPERVISOR)
    assert bad_range.status == 422 and bad_range.body["error"]["field"] == "status"


async def test_a_do_not_call_number_is_refused_and_cancels_a_waiting_callback(
    api_stack: ApiStack,
) -> None:
    stack = api_stack
    waiting = body()
    r = await stack.api.http("POST", "/api/callbacks", token=SUPERVISOR, json_body=waiting)
    assert r.status == 201, r.body
    cid = r.body["id"]
    await wait_status(stack, cid, "scheduled")
    added = await stack.api.http("POST", "/api/dnc", token=SUPERVISOR,
                                 json_body={"phone": waiting["phone"]})  # fmt: skip
    assert added.status == 201 and added.body["cancelled_callbacks"] == 1, added.body
    done = await wait_status(stack, cid, "cancelled")
    assert done["end_reason"] == "do_not_call" and done["attempts"] == []
    refused = await stack.api.http("POST", "/api/callbacks", token=SUPERVISOR,
                                   json_body=body(phone=waiting["phone"]))  # fmt: skip
    assert refused.status == 409 and refused.body["error"]["field"] == "phone"
    removed = await stack.api.http("DELETE", f"/api/dnc/{waiting['phone']}", token=SUPERVISOR)
    assert removed.status == 200
    assert (await stack.api.http("DELETE", f"/api/dnc/{waiting['phone']}",
                                 token=SUPERVISOR)).status == 404  # fmt: skip


async def test_the_number_and_reason_never_reach_temporal_in_clear(api_stack: ApiStack) -> None:
    """Search attributes hold the status and due time only; the input is codec'd (PAYLOAD_KEYS
    is set in this stack): what Temporal stores holds neither the number nor the reason."""
    stack = api_stack
    req = body()
    r = await stack.api.http("POST", "/api/callbacks", token=SUPERVISOR, json_body=req)
    assert r.status == 201, r.body
    await wait_status(stack, r.body["id"], "scheduled")
    handle = stack.raw_client.get_workflow_handle(f"callback-{r.body['id']}")
    desc = await handle.describe()
    fields = desc.raw_description.workflow_execution_info.search_attributes.indexed_fields
    assert set(fields) - {"BuildIds"} == {"CallbackStatus", "CallbackDue"}  # BuildIds: the server's
    stored = b"".join([e.SerializeToString() async for e in handle.fetch_history_events()])
    assert req["phone"][1:].encode() not in stored and b"Silverado" not in stored
    await stack.api.http("DELETE", f"/api/callbacks/{r.body['id']}", token=SUPERVISOR)


async def test_the_agent_schedules_one_callback_for_its_call(api_stack: ApiStack) -> None:
    from core.livekit import room_admin_token
    from core.models import new_call_id, room_name_for

    stack = api_stack
    call_id = new_call_id()
    token = room_admin_token(
        stack.settings.LIVEKIT_API_KEY.get_secret_value(),
        stack.settings.LIVEKIT_API_SECRET.get_secret_value(),
        room=room_name_for(call_id),
        identity="agent-test",
    )
    req = body()
    req.pop("reason")
    first = await stack.api.http("POST", f"/internal/calls/{call_id}/callback", token=token(),
                                 json_body=req)  # fmt: skip
    again = await stack.api.http("POST", f"/internal/calls/{call_id}/callback", token=token(),
                                 json_body=req)  # fmt: skip
    assert first.status == again.status == 201, first.body
    assert first.body["id"] == again.body["id"] and first.body["call_id"] == call_id
    other = await stack.api.http("POST", f"/internal/calls/{new_call_id()}/callback",
                                 token=token(), json_body=req)  # fmt: skip
    assert other.status == 401, "a call's token schedules for that call only"
    bad = await stack.api.http("POST", f"/internal/calls/{call_id}/callback", token=token(),
                               json_body={**req, "at": "2020-01-01T00:00:00Z"})  # fmt: skip
    assert bad.status == 422 and bad.body["error"]["field"] == "at"
    odd = await stack.api.http("POST", f"/internal/calls/{call_id}/callback", token=token(),
                               json_body={**req, "via": "desk"})  # fmt: skip
    assert odd.status == 422 and odd.body["error"]["field"] == "via"
    await stack.api.http("DELETE", f"/api/callbacks/{first.body['id']}", token=SUPERVISOR)
    queued_call = new_call_id()  # the customer accepted the desk's callback offer
    queued = await stack.api.http(
        "POST", f"/internal/calls/{queued_call}/callback", json_body={**req, "via": "queue"},
        token=room_admin_token(stack.settings.LIVEKIT_API_KEY.get_secret_value(),
                               stack.settings.LIVEKIT_API_SECRET.get_secret_value(),
                               room=room_name_for(queued_call), identity="agent-test")(),
    )  # fmt: skip
    assert queued.status == 201 and queued.body["call_id"] == queued_call, queued.body
    await stack.api.http("DELETE", f"/api/callbacks/{queued.body['id']}", token=SUPERVISOR)
