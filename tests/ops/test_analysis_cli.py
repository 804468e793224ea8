"""`python -m ops analysis rerun` and `ops webhooks list|replay` against the whole stack: the
same refusals as the API (no such call, a live call, no such message), a rerun that really runs
`analysis-<id>` again, and a replay under the message's own id."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.api.conftest import ApiStack
from tests.api.test_analysis_api import add_analysed_call
from tests.ops.conftest import ops
from workflows.analysis import webhook_workflow_id


async def test_analysis_rerun(api_stack: ApiStack, db: asyncpg.Connection) -> None:
    call_id, _ = await add_analysed_call(db, outcome="abandoned")
    r = await ops(api_stack, "--json", "analysis", "rerun", call_id)
    assert r.code == 0, r.err
    assert (r.json["outcome"], r.json["run"]) == ("started", 2)
    for _ in range(300):
        runs = await db.fetchval("SELECT runs FROM call_analyses WHERE call_id = $1", call_id)
        if runs == 2:
            break
        await asyncio.sleep(0.1)
    row = await db.fetchrow("SELECT runs, method, outcome FROM call_analyses WHERE call_id = $1",
                            call_id)  # fmt: skip
    assert (row["runs"], row["method"], row["outcome"]) == (2, "local", "follow_up")

    live, _ = await add_analysed_call(db, status="in_progress", analysed=False)
    r = await ops(api_stack, "analysis", "rerun", live)
    assert r.code == 1 and "the call has not ended" in r.out
    r = await ops(api_stack, "analysis", "rerun", "0" * 20)
    assert r.code == 1 and "no such call" in r.out
    r = await ops(api_stack, "analysis", "rerun", "not-a-call-id!")
    assert r.code == 2  # usage: argparse names the argument


async def test_webhooks_list_and_replay(api_stack: ApiStack, db: asyncpg.Connection) -> None:
    call_id, _ = await add_analysed_call(db)
    r = await ops(api_stack, "--json", "webhooks", "list", "--call", call_id)
    assert r.code == 0, r.err
    got = {d["event_type"]: d for d in r.json}
    assert (got["call.ended"]["attempts"], got["call.ended"]["last_status"]) == (1, 200)
    assert (got["call.analyzed"]["attempts"], got["call.analyzed"]["last_status"]) == (3, 500)
    r = await ops(api_stack, "--json", "webhooks", "list", "--call", call_id, "--undelivered")
    assert [d["event_type"] for d in r.json] == ["call.analyzed"]
    r = await ops(api_stack, "webhooks", "list", "--call", call_id)
    assert "call.analyzed" in r.out and "LAST_STATUS" in r.out  # a table for people

    msg = f"msg_{call_id}_call_analyzed_1"
    r = await ops(api_stack, "--json", "webhooks", "replay", msg, f"msg_{call_id}_nope_1")
    assert r.code == 1  # one of the two refused
    assert [(x["id"], x["outcome"]) for x in r.json] == [
        (msg, "started"), (f"msg_{call_id}_nope_1", "refused")
    ]  # fmt: skip
    # The replay is webhook-<message id>: the same id a receiver dedupes on. This stack has no
    # ANALYSIS_WEBHOOK_URL, so the delivery finds nothing to send (0) and counts no attempt.
    handle = api_stack.client.get_workflow_handle(webhook_workflow_id(msg))
    assert await handle.result() == 0
    attempts = await db.fetchval("SELECT attempts FROM webhook_deliveries WHERE id = $1", msg)
    assert attempts == 3
