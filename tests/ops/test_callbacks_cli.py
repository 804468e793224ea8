"""`python -m ops callbacks list|cancel` against the whole stack: the list masks numbers, a
cancel does what DELETE /api/callbacks/{id} does, and a second cancel is refused (exit 1)."""

from __future__ import annotations

import asyncio

from tests.api.conftest import SUPERVISOR, ApiStack
from tests.api.test_callbacks_api import body, wait_status
from tests.ops.conftest import ops


async def test_callbacks_list_and_cancel(api_stack: ApiStack) -> None:
    req = body()
    r = await api_stack.api.http("POST", "/api/callbacks", token=SUPERVISOR, json_body=req)
    assert r.status == 201, r.body
    cid = r.body["id"]
    await wait_status(api_stack, cid, "scheduled")
    # The list reads the `callbacks` rows, which the workflow writes by an activity after the
    # status the API's GET asks it for: a moment later under load.
    for _ in range(50):
        listed = await ops(api_stack, "--json", "callbacks", "list", "--status", "scheduled",
                           "--limit", "1000")  # fmt: skip
        assert listed.code == 0, listed.err
        mine = [c for c in listed.json if c["id"] == cid]
        if mine:
            break
        await asyncio.sleep(0.2)
    assert mine and mine[0]["phone"] == req["phone"][:2] + "•••••" + req["phone"][-4:]
    assert req["phone"] not in listed.out
    done = await ops(api_stack, "--json", "callbacks", "cancel", cid)
    assert done.code == 0, done.out
    assert [x["outcome"] for x in done.json] == ["cancelled"]
    await wait_status(api_stack, cid, "cancelled")
    again = await ops(api_stack, "callbacks", "cancel", cid)
    assert again.code == 1 and "refused" in again.out
