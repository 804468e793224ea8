"""The retention Schedule: triggered, its `RetentionWorkflow` erases (through
`EraseCallWorkflow`) a call older than the retention period and keeps a newer one."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client, ScheduleActionStartWorkflow, WorkflowHandle
from temporalio.testing import ActivityEnvironment

from activities.retention import ExpiredCallsQuery, RetentionActivities
from activities.storage import LIFECYCLE_GRACE_DAYS, RETENTION_RULE_ID
from core.models import call_workflow_id, new_call_id, room_name_for
from core.settings import Settings
from core.temporal import connect_temporal
from ops.retention import ensure_retention_schedule, scheduled_retention_days
from tests.api.conftest import ApiStack
from tests.ops.conftest import ops
from workflows.retention import RETENTION_SCHEDULE_ID, RetentionInput, RetentionWorkflow


async def call_workflow_without_worker(client: Client, call_id: str) -> WorkflowHandle:
    """A `call-<id>` execution no worker will ever run (it stays RUNNING until terminated)."""
    return await client.start_workflow(
        "CallWorkflow", id=call_workflow_id(call_id), task_queue=f"nobody-{uuid.uuid4().hex}"
    )


async def died_before_its_final_status(client: Client, db: asyncpg.Connection, age: int) -> str:
    """An old call whose row still says `in_progress`: its workflow was terminated."""
    call_id = new_call_id()
    await _insert_call(db, call_id, age_days=age, status="in_progress")
    await (await call_workflow_without_worker(client, call_id)).terminate("lost with its worker")
    return call_id


async def _insert_call(
    db: asyncpg.Connection, call_id: str, age_days: int, status: str = "completed"
) -> None:
    await db.execute(
        "INSERT INTO calls (call_id, room_name, status, recording_status, created_at, ended_at) "
        "VALUES ($1, $2, $4, 'stored', now() - make_interval(days => $3), "
        "now() - make_interval(days => $3))",
        call_id,
        room_name_for(call_id),
        age_days,
        status,
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


async def test_calls_whose_workflow_died_are_expired_and_running_ones_are_not(
    api_stack: ApiStack, db: asyncpg.Connection, pg_dsn: str
) -> None:
    """A row left `in_progress` or `waiting_for_agent` is erasable unless Temporal says its
    workflow still runs (terminated, or no execution at all: not live)."""
    client = api_stack.client
    terminated = await died_before_its_final_status(client, db, age=45)
    gone, running = new_call_id(), new_call_id()
    await _insert_call(db, gone, age_days=45, status="waiting_for_agent")
    await _insert_call(db, running, age_days=45, status="in_progress")
    handle = await call_workflow_without_worker(client, running)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        cutoff = (datetime.now(UTC) - timedelta(days=30)).isoformat()
        acts = RetentionActivities(pool, client)
        found = await ActivityEnvironment().run(
            acts.find_expired_calls, ExpiredCallsQuery(cutoff, limit=100_000)
        )
    finally:
        await pool.close()
        await handle.terminate("test finished")
    assert {terminated, gone} <= set(found.call_ids)
    assert running in found.live and running not in found.call_ids


async def test_a_sweep_erases_calls_whose_workflow_died(
    api_stack: ApiStack, db: asyncpg.Connection
) -> None:
    """The oldest calls died before their final status: the sweep erases them too."""
    client = api_stack.client
    dead = [await died_before_its_final_status(client, db, age=4000 + i) for i in range(3)]
    result = await client.execute_workflow(
        RetentionWorkflow.run,
        RetentionInput(retention_days=30, batch=2),
        id=f"retention-test-{uuid.uuid4().hex[:8]}",
        task_queue=api_stack.settings.TEMPORAL_TASK_QUEUE,
        execution_timeout=timedelta(minutes=3),
    )
    erased = await db.fetch("SELECT call_id FROM erasures WHERE call_id = ANY($1::text[])", dead)
    assert sorted(r["call_id"] for r in erased) == sorted(dead), result


async def test_workers_with_different_retention_settings_do_not_fight(
    api_stack: ApiStack, s3: Any
) -> None:
    """The schedule is the one place the period is set: a worker creates it when missing, a
    later one with another setting leaves it (and the bucket's rule follows it), and the
    deploy's `ops temporal setup` changes it for all."""
    from worker import _retention_from_schedule

    namespace = f"ret-{uuid.uuid4().hex[:8]}"
    await api_stack.raw_client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    base = api_stack.settings.model_copy(update={"TEMPORAL_NAMESPACE": namespace})
    client = await connect_temporal(base)  # with the payload codec, as the worker's

    def worker_settings(days: int) -> Settings:
        return base.model_copy(update={"RECORDING_RETENTION_DAYS": days})

    first = await _retention_from_schedule(worker_settings(30), client)
    assert first.RECORDING_RETENTION_DAYS == 30
    later = await _retention_from_schedule(worker_settings(90), client)
    assert later.RECORDING_RETENTION_DAYS == 30  # what its bucket rule and sweep will use
    assert await scheduled_retention_days(client) == 30

    done = await ops(api_stack, "temporal", "setup", "--json",
                     TEMPORAL_NAMESPACE=namespace, RECORDING_RETENTION_DAYS=90)  # fmt: skip
    assert done.code == 0, done.err
    assert done.json["retention_schedule"] == "updated" and done.json["retention_days"] == 90
    assert done.json["recordings_lifecycle"] == "set"
    (rule,) = [
        r
        for r in s3.client.get_bucket_lifecycle(base.RECORDINGS_BUCKET).rules
        if r.rule_id == RETENTION_RULE_ID
    ]
    assert rule.expiration.days == 90 + LIFECYCLE_GRACE_DAYS
    restarted = await _retention_from_schedule(worker_settings(30), client)
    assert restarted.RECORDING_RETENTION_DAYS == 90
    assert await scheduled_retention_days(client) == 90
    await client.get_schedule_handle(RETENTION_SCHEDULE_ID).delete()
