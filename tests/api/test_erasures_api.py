"""Erasure by person (`POST /api/erasures`, admin): a number's calls, callbacks and bookings all
go; a name alone is refused; a supervisor may not."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from temporalio.service import RPCError

import core.callbacks as cb
from tests.api.conftest import (  # noqa: F401
    ADMIN,
    SUPERVISOR,
    ApiStack,
    _api_stack_session,
    api_stack,
)
from tests.api.test_callbacks_api import body, wait_status
from tests.devstack.test_phone_e2e import outbound, phone_line  # noqa: F401
from tests.ops.conftest import wait_call


@pytest.mark.parametrize("payload", [{"name": "Ada Lovelace"}, {"phone": "555-0142"}, {}])
async def test_never_by_a_name_alone_nor_a_malformed_number(
    api_stack: ApiStack,  # noqa: F811
    payload: dict[str, str],
) -> None:
    r = await api_stack.api.http("POST", "/api/erasures", token=ADMIN, json_body=payload)
    assert r.status == 422, r.body


async def test_only_an_admin_erases(api_stack: ApiStack) -> None:  # noqa: F811
    r = await api_stack.api.http("POST", "/api/erasures", token=SUPERVISOR,
                                 json_body={"phone": "+15551230001"})  # fmt: skip
    assert r.status == 403


async def test_a_number_loses_its_calls_callbacks_and_bookings(phone_line: ApiStack) -> None:  # noqa: F811
    stack = phone_line
    to = "+1555" + str(uuid.uuid4().int)[:7]
    call_id = await outbound(stack, to, "busy")
    await wait_call(stack, call_id, status="completed")
    r = await stack.api.http("POST", "/api/callbacks", token=SUPERVISOR, json_body=body(phone=to))
    assert r.status == 201, r.body
    callback_id = r.body["id"]
    await wait_status(stack, callback_id, "scheduled")
    other = await stack.api.http("POST", "/api/callbacks", token=SUPERVISOR, json_body=body())
    await wait_status(stack, other.body["id"], "scheduled")
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        vin = await conn.fetchval("SELECT vin FROM inventory LIMIT 1")
        spoken = f"({to[2:5]}) {to[5:8]}-{to[8:]}"  # as the customer said it
        await conn.execute(
            "INSERT INTO test_drives (vin, scheduled_at, call_id, customer_name, customer_phone, "
            "reference) VALUES ($1, now() + interval '1 day' * random() * 300, $2, 'Ada', $3, $4)",
            vin, "bookingcall" + uuid.uuid4().hex[:8], spoken, "TD-" + uuid.uuid4().hex[:8],
        )  # fmt: skip
        done = await stack.api.http("POST", "/api/erasures", token=ADMIN, json_body={"phone": to})
        assert done.status == 200, done.body
        assert call_id in done.body["calls"] and done.body["callbacks"] == 1
        assert done.body["test_drives"] == 1 and to not in str(done.body)
        assert await conn.fetchval("SELECT count(*) FROM calls WHERE phone = $1", to) == 0
        assert await conn.fetchval("SELECT count(*) FROM callbacks WHERE phone = $1", to) == 0
        assert await conn.fetchval(
            "SELECT count(*) FROM test_drives WHERE customer_phone = $1", spoken) == 0  # fmt: skip
        left = await conn.fetchval("SELECT count(*) FROM callbacks WHERE callback_id = $1",
                                   other.body["id"])  # fmt: skip
        assert left == 1, "another number's callback is untouched"
    finally:
        await conn.close()
    with pytest.raises(RPCError):
        await stack.client.get_workflow_handle(cb.callback_workflow_id(callback_id)).describe()
    assert (await stack.api.http("GET", f"/api/calls/{call_id}", token=ADMIN)).status in (404, 410)
