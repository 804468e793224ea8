"""The campaigns API on the real stack (dev server, the product's worker, PostgreSQL): every
refusal is a 422 naming its field and creates nothing; JSON and CSV (text/csv, multipart)
uploads; progress in the answers; pause, resume, cancel (409 once ended); erasing a number
removes it from every campaign's list. The campaigns here start tomorrow: nothing dials (the
dialling is tests/workflows/test_campaign.py's)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.api.conftest import ADMIN, OPS, SUPERVISOR, ApiStack


def number() -> str:
    return "+1555" + str(uuid.uuid4().int)[:7]


def body(**kw: Any) -> dict[str, Any]:
    start = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    return {"name": "Spring service", "numbers": [number(), number()], "window": "09:00-20:00",
            "timezone": "America/Chicago", "max_concurrent": 2, "start_at": start,
            "reason": "your car is due for service", **kw}  # fmt: skip


async def count(stack: ApiStack) -> int:
    r = await stack.api.http("GET", "/api/campaigns", token=SUPERVISOR)
    assert r.status == 200, r.body
    return len(r.body["campaigns"])


@pytest.mark.parametrize(
    "change,field",
    [
        ({"numbers": []}, "numbers"),
        ({"numbers": ["5551234567"]}, "numbers"),
        ({"numbers": ["+447700900123"]}, "numbers"),  # not under SIP_OUTBOUND_ALLOWED_PREFIXES
        ({"numbers": ["+15551234567", "+15551234567"]}, "numbers"),
        ({"window": "07:00-20:00"}, "window"),
        ({"window": "late"}, "window"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_concurrent": "five"}, "max_concurrent"),
        ({"start_at": "tomorrow"}, "start_at"),
        ({"start_at": "2027-03-14T15:00:00"}, "start_at"),
        ({"start_at": (datetime.now(UTC) + timedelta(days=30)).isoformat()}, "start_at"),
        ({"name": ""}, "name"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field_and_creates_nothing(
    api_stack: ApiStack, change: dict[str, Any], field: str
) -> None:
    before = await count(api_stack)
    r = await api_stack.api.http("POST", "/api/campaigns", token=SUPERVISOR,
                                 json_body=body(**change))  # fmt: skip
    assert r.status == 422 and r.body["error"]["field"] == field, r.body
    assert await count(api_stack) == before


async def test_roles(api_stack: ApiStack) -> None:
    assert (await api_stack.api.http("POST", "/api/campaigns", json_body=body())).status == 401
    r = await api_stack.api.http("POST", "/api/campaigns", token=OPS, json_body=body())
    assert r.status == 403


async def test_created_listed_paused_resumed_cancelled(api_stack: ApiStack) -> None:
    api = api_stack.api
    r = await api.http("POST", "/api/campaigns", token=SUPERVISOR, json_body=body())
    assert r.status == 201, r.body
    cid = r.body["id"]
    assert r.body["progress"] == {"dialled": 0, "answered": 0, "busy": 0, "no_answer": 0,
                                  "failed": 0, "skipped": 0, "remaining": 2, "total": 2}  # fmt: skip
    assert cid in [c["id"] for c in (await api.http("GET", "/api/campaigns",
                                                    token=OPS)).body["campaigns"]]  # fmt: skip
    r = await api.http("POST", f"/api/campaigns/{cid}/pause", token=SUPERVISOR)
    assert r.status == 200 and r.body["status"] == "paused", r.body
    got = await wait_for(api_stack, cid, lambda v: v["status"] == "paused")
    assert got["progress"]["remaining"] == 2
    r = await api.http("POST", f"/api/campaigns/{cid}/resume", token=SUPERVISOR)
    assert r.status == 200, r.body
    await wait_for(api_stack, cid, lambda v: v["status"] == "scheduled")  # it waits for start_at
    r = await api.http("POST", f"/api/campaigns/{cid}/cancel", token=SUPERVISOR)
    assert r.status == 200, r.body
    done = await wait_for(api_stack, cid, lambda v: v["status"] == "cancelled")
    assert done["progress"]["dialled"] == 0 and done["progress"]["remaining"] == 2
    r = await api.http("POST", f"/api/campaigns/{cid}/resume", token=SUPERVISOR)
    assert r.status == 409, r.body
    assert (await api.http("GET", "/api/campaigns/cpnosuchcampaign0", token=OPS)).status == 404
    r = await api.http("GET", "/api/campaigns/x", token=OPS)
    assert r.status == 422 and r.body["error"]["field"] == "id"


async def test_a_csv_upload_and_a_do_not_call_number_kept_to_be_skipped(
    api_stack: ApiStack,
) -> None:
    api = api_stack.api
    listed = number()
    r = await api.http("POST", "/api/dnc", token=SUPERVISOR, json_body={"phone": listed})
    assert r.status == 201, r.body
    start = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    csv = f"phone\n{number()}\n{listed}\n{number()}\n"
    r = await api.http(
        "POST", f"/api/campaigns?name=CSV&timezone=America/Chicago&max_concurrent=3"
        f"&start_at={start.replace('+', '%2B')}", token=SUPERVISOR, data=csv,
        headers={"Content-Type": "text/csv"},
    )  # fmt: skip
    assert r.status == 201, r.body
    assert r.body["progress"]["total"] == 3 and r.body["on_do_not_call"] == 1
    form = aiohttp.FormData()
    form.add_field("name", "multipart")
    form.add_field("timezone", "Europe/Berlin")
    form.add_field("numbers", f"{number()}\r\n{number()}\r\n".encode(), filename="list.csv",
                   content_type="text/csv")  # fmt: skip
    async with api.session.post(api.url + "/api/campaigns", data=form,
                                headers={"Authorization": f"Bearer {SUPERVISOR}"}) as resp:  # fmt: skip
        got = await resp.json()
        assert resp.status == 201, got
    assert got["progress"]["total"] == 2 and got["window"] == "09:00-20:00"
    r = await api.http("POST", "/api/campaigns?name=bad&timezone=UTC", token=SUPERVISOR,
                       data="phone\n12345\n", headers={"Content-Type": "text/csv"})  # fmt: skip
    assert r.status == 422 and r.body["error"]["field"] == "numbers", r.body
    for c in (r.body, got):
        if "id" in c:
            await api.http("POST", f"/api/campaigns/{c['id']}/cancel", token=SUPERVISOR)


async def test_erasing_a_number_removes_it_from_campaign_lists(api_stack: ApiStack) -> None:
    api = api_stack.api
    to = number()
    r = await api.http("POST", "/api/campaigns", token=SUPERVISOR,
                       json_body=body(numbers=[to, number()]))  # fmt: skip
    assert r.status == 201, r.body
    done = await api.http("POST", "/api/erasures", token=ADMIN, json_body={"phone": to})
    assert done.status == 200 and done.body["campaign_numbers"] == 1, done.body
    conn = await asyncpg.connect(api_stack.settings.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM campaign_numbers WHERE phone = $1",
                                   to) == 0  # fmt: skip
        assert await conn.fetchval("SELECT count(*) FROM campaign_numbers WHERE campaign_id = $1",
                                   r.body["id"]) == 1  # fmt: skip
    finally:
        await conn.close()
    await api.http("POST", f"/api/campaigns/{r.body['id']}/cancel", token=SUPERVISOR)


async def wait_for(stack: ApiStack, cid: str, ok: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = await stack.api.http("GET", f"/api/campaigns/{cid}", token=SUPERVISOR)
        if r.status == 200 and ok(r.body):
            return r.body  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"campaign {cid}: {r.body}"
        await asyncio.sleep(0.3)
