"""The campaign activities on a real PostgreSQL: the list read a batch at a time in upload order,
a number on the do-not-call list (or erased since its batch was read) skipped at its dial,
numbers held back (never dialled) while the
live calls leave only the inbound reserve free, outcomes and the end state written to the rows.
(A started dial is `start_callback_call`'s, tested with callbacks.)"""

from __future__ import annotations

import json
import uuid

import asyncpg
from temporalio.testing import ActivityEnvironment

import core.campaigns as cp
from activities.callbacks import CallbackActivities
from activities.campaigns import CampaignActivities
from core import models as m
from tests.activities.test_analysis import settings


async def campaign(pool: asyncpg.Pool, phones: list[str]) -> str:
    cid = "cp" + uuid.uuid4().hex[:20]
    await pool.execute(
        "INSERT INTO campaigns (campaign_id, name, timezone, hours, max_concurrent, start_at, total)"
        " VALUES ($1, 'a', 'UTC', '09:00-20:00', 3, now(), $2)", cid, len(phones),
    )  # fmt: skip
    await pool.executemany(
        "INSERT INTO campaign_numbers (campaign_id, seq, phone) VALUES ($1, $2, $3)",
        [(cid, i + 1, p) for i, p in enumerate(phones)],
    )
    return cid


async def test_the_list_dnc_reserve_and_rows(pool: asyncpg.Pool) -> None:
    phones = ["+1555" + str(uuid.uuid4().int)[:7] for _ in range(5)]
    cid = await campaign(pool, phones)
    await pool.execute("INSERT INTO do_not_call (phone, added_by) VALUES ($1, 'sup')", phones[1])
    # One live call, and a ceiling of 2 with 1 kept for inbound: no campaign call may start.
    live = m.new_call_id()
    await pool.execute("INSERT INTO calls (call_id, room_name, status) VALUES ($1, $1, $2)",
                       live, m.CallStatus.IN_PROGRESS.value)  # fmt: skip
    try:
        await check(pool, cid, phones)
    finally:  # the session's database: other tests count live calls
        await pool.execute("DELETE FROM calls WHERE call_id = $1", live)


async def check(pool: asyncpg.Pool, cid: str, phones: list[str]) -> None:
    s = settings(MAX_LIVE_AI_CALLS=2, RESERVED_INBOUND=1)
    acts = CampaignActivities(pool, s, CallbackActivities(pool, s, None))
    env = ActivityEnvironment()

    batch = await env.run(acts.next_campaign_numbers, cp.NextNumbers(cid, 1, 3))
    assert [(n.seq, n.phone) for n in batch] == [(2, phones[1]), (3, phones[2]), (4, phones[3])]
    assert await env.run(acts.next_campaign_numbers, cp.NextNumbers(cid, 5, 3)) == []

    got = await env.run(acts.start_campaign_calls, cp.StartCampaignCalls(
        cid, batch, "service", cp.campaign_workflow_id(cid), 30.0,
        done=[cp.NumberOutcome(1, "answered", "c1")],
    ))  # fmt: skip
    assert got == [cp.DO_NOT_CALL, cp.HELD_BACK, cp.HELD_BACK]
    # Erased (POST /api/erasures) after its batch was read: skipped, never dialled.
    await pool.execute("DELETE FROM campaign_numbers WHERE campaign_id = $1 AND seq = 3", cid)
    got = await env.run(acts.start_campaign_calls, cp.StartCampaignCalls(
        cid, batch[1:2], "service", cp.campaign_workflow_id(cid), 30.0))  # fmt: skip
    assert got == [cp.DO_NOT_CALL]
    rows = await pool.fetch("SELECT seq, outcome, call_id FROM campaign_numbers"
                            " WHERE campaign_id = $1 ORDER BY seq", cid)  # fmt: skip
    assert [(r["seq"], r["outcome"], r["call_id"]) for r in rows][:2] == [
        (1, "answered", ""), (2, "", "")]  # fmt: skip

    progress = cp.Progress(dialled=1, answered=1, skipped=1, total=5)
    await env.run(acts.record_campaign, cp.CampaignState(
        cid, cp.CampaignStatus.CANCELLED, progress, 0, 1,
        done=[cp.NumberOutcome(2, cp.DO_NOT_CALL)]))  # fmt: skip
    row = await pool.fetchrow("SELECT status, progress FROM campaigns WHERE campaign_id = $1", cid)
    assert row["status"] == "cancelled"
    assert json.loads(row["progress"])["remaining"] == 3
    assert await pool.fetchval("SELECT outcome FROM campaign_numbers WHERE campaign_id = $1"
                               " AND seq = 2", cid) == cp.DO_NOT_CALL  # fmt: skip
