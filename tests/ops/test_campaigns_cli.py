"""`python -m ops campaigns list|pause|resume|cancel` against the whole stack: each does what
its API endpoint does, the list shows counts (never a number), and acting on an ended campaign
is refused (exit 1)."""

from __future__ import annotations

from tests.api.conftest import SUPERVISOR, ApiStack
from tests.api.test_campaigns_api import body, wait_for
from tests.ops.conftest import ops


async def test_campaigns_list_pause_resume_cancel(api_stack: ApiStack) -> None:
    req = body()
    r = await api_stack.api.http("POST", "/api/campaigns", token=SUPERVISOR, json_body=req)
    assert r.status == 201, r.body
    cid = r.body["id"]
    listed = await ops(api_stack, "--json", "campaigns", "list")
    assert listed.code == 0, listed.err
    mine = [c for c in listed.json if c["id"] == cid]
    assert mine and mine[0]["total"] == 2 and mine[0]["remaining"] == 2
    assert all(n not in listed.out for n in req["numbers"])
    for what, status in (("pause", "paused"), ("resume", "scheduled"), ("cancel", "cancelled")):
        done = await ops(api_stack, "--json", "campaigns", what, cid)
        assert done.code == 0, done.out
        await wait_for(api_stack, cid, lambda v, s=status: v["status"] == s)
    again = await ops(api_stack, "campaigns", "resume", cid)
    assert again.code == 1 and "refused" in again.out
