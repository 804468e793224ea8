"""The retention Schedule: triggered, its `RetentionWorkflow` erases (through
`EraseCallWorkflow`) a call older than the retention period and keeps a newer one."""

from __future__ import annotations

import asyncio
import time

import asyncpg
from temporalio.client import ScheduleActionStartWorkflow

from core.models import new_call_id, room_name_for
from ops.retention import ensure_retention_schedule
from tests.api.conftest import ApiStack
from workflows.retention import RETENTION_SCHEDULE_ID, RetentionInput


async def _insert_call(db: asyncpg.Connection, call_id: str, age_days: int) -> None:
    await db.execute(
        "INSERT INTO calls (call_id, room_name, status, recording_status, created_at, ended_at) "
        "VALUES ($1, $2, 'completed', 'stored', now() - make_interval(days => $3), "
        "now() - make_interval(days => $3))",
        call_id,
        room_name_for(call_id),
        age_days,
    )
    await db.execute(
        "INSERT INTO call_events (call_id, seq, kind, at, data) VALUES "
        "($1, 1, 'final_transcript', now(), '{\"text\": \"old words\"}')",
        call_id,
    )


async def test_schedule_erases_an_old_call_and_keeps_a_new_one(
    api_stack: ApiStack, db: asyncpg.Connection
) -> None:
    old, new = new_call_id(), new_call_id()
    await _insert_call(db, old, age_days=40)
    await _insert_call(db, new, age_days=2)
    client = api_stack.client
    queue = api_stack.settings.TEMPORAL_TASK_QUEUE
    assert await ensure_retention_schedule(client, task_queue=queue, retention_days=30) in (
        "created",
        "updated",
    )
    handle = client.get_schedule_handle(RETENTION_SCHEDULE_ID)
    try:
        # Idempotent: a second worker start-up updates it to the same settings.
        assert await ensure_retention_schedule(client, task_queue=queue, retention_days=30) == (
            "updated"
        )
        desc = await handle.describe()
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        [arg] = await client.data_converter.decode(action.args, [RetentionInput])
        assert arg.retention_days == 30

        await handle.trigger()
        deadline = time.monotonic() + 60
        while not await db.fetchval("SELECT 1 FROM erasures WHERE call_id = $1", old):
            assert time.monotonic() < deadline, "the old call was never erased"
            await asyncio.sleep(0.3)
        erasure = await db.fetchrow("SELECT * FROM erasures WHERE call_id = $1", old)
        assert erasure["requested_by"] == "retention" and erasure["rows_deleted"] >= 2
        assert await db.fetchval("SELECT count(*) FROM call_events WHERE call_id = $1", old) == 0
        assert await db.fetchval("SELECT status FROM calls WHERE call_id = $1", new) == "completed"
        assert await db.fetchval("SELECT 1 FROM erasures WHERE call_id = $1", new) is None
    finally:
        await handle.delete()
