"""EraseCallWorkflow with its real activities on the dev server, PostgreSQL and S3: everything a
call left behind goes, the erasure is recorded without content, a second run is a no-op, and a
call that still runs is refused with nothing touched."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.erase import EraseActivities
from activities.types import ERR_CALL_STILL_RUNNING
from api.domain.store import init_connection
from core.models import (
    EraseCallInput,
    EraseCallResult,
    call_workflow_id,
    new_call_id,
    recording_workflow_id,
    single_recording_object_key,
)
from workflows.client import start_erase
from workflows.erase import EraseCallWorkflow

STAGING = "egress-erase-test"


@workflow.defn(name="EraseTestStandIn", sandboxed=False)
class StandIn:
    """Stands in for a call's workflows: only their ids and histories matter here."""

    @workflow.run
    async def run(self, hold_s: float) -> str:
        await workflow.sleep(timedelta(seconds=hold_s))
        return "done"


@pytest.fixture
async def erase_worker(temporal_dev_env: WorkflowEnvironment, pg_dsn: str, s3: Any) -> Any:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4, init=init_connection)
    queue = f"erase-{uuid.uuid4().hex[:8]}"
    if not s3.client.bucket_exists(STAGING):
        s3.client.make_bucket(STAGING)
    acts = EraseActivities(pool, s3.client, temporal_dev_env.client, s3.bucket, STAGING)
    async with Worker(
        temporal_dev_env.client,
        task_queue=queue,
        workflows=[EraseCallWorkflow, StandIn],
        activities=acts.activities(),
    ):
        yield queue
    await pool.close()


async def _seed_call(db: asyncpg.Connection, s3: Any, call_id: str) -> None:
    await db.execute(
        "INSERT INTO calls (call_id, room_name, customer_name, status, recording_status) "
        "VALUES ($1, $2, 'Ana Customer', 'completed', 'stored')",
        call_id,
        f"call-{call_id}",
    )
    await db.execute(
        "INSERT INTO call_events (call_id, seq, kind, at, data) VALUES "
        "($1, 1, 'final_transcript', now(), $2::jsonb), ($1, 2, 'status', now(), '{}'::jsonb)",
        call_id,
        json.dumps({"speaker": "customer", "text": "my phone is 555-0100"}),
    )
    key = single_recording_object_key(call_id)
    s3.client.put_object(s3.bucket, key, io.BytesIO(b"OggS-audio"), 10)
    # Every copy a call can leave: segments stored and staged, the old single key staged.
    for bucket in (s3.bucket, STAGING):
        for n in (1, 2):
            s3.client.put_object(bucket, f"conversations/{call_id}/{n}.ogg", io.BytesIO(b"OggS"), 4)
    s3.client.put_object(STAGING, key, io.BytesIO(b"OggS-audio"), 10)
    # The manifest Egress uploads beside the file when it had to use backup storage.
    s3.client.put_object(STAGING, "conversations/EG_x.json", io.BytesIO(b"{}"), 2)
    await db.execute(
        "INSERT INTO recordings (call_id, bucket, object_key, egress_id, size_bytes, duration_s, sha256) "
        "VALUES ($1, $2, $3, 'EG_x', 10, 1.0, 'abc')",
        call_id,
        s3.bucket,
        key,
    )
    vin = await db.fetchval("SELECT vin FROM inventory LIMIT 1")
    await db.execute(
        "INSERT INTO test_drives (vin, scheduled_at, call_id, customer_name, customer_phone, reference) "
        "VALUES ($1, now() + ($2 || ' days')::interval, $3, 'Ana Customer', '555-0100', $4)",
        vin,
        str(abs(hash(call_id)) % 3000 + 10),
        call_id,
        f"TD-{call_id}",
    )


async def _counts(db: asyncpg.Connection, call_id: str) -> list[int]:
    return [
        await db.fetchval(f"SELECT count(*) FROM {t} WHERE call_id = $1", call_id)
        for t in ("calls", "call_events", "recordings", "test_drives")
    ]


async def _exists(client: Client, wid: str) -> bool:
    """True while Temporal still has an execution with this id."""
    try:
        await client.get_workflow_handle(wid).describe()
        return True
    except RPCError:
        return False


async def test_erasure_removes_everything_and_records_only_who_and_when(
    temporal_dev_env: WorkflowEnvironment, erase_worker: str, db: asyncpg.Connection, s3: Any
) -> None:
    client = temporal_dev_env.client
    call_id = new_call_id()
    await _seed_call(db, s3, call_id)
    bystander = f"conversations/{new_call_id()}/1.ogg"  # another call's segment stays
    s3.client.put_object(STAGING, bystander, io.BytesIO(b"OggS"), 4)
    for wid in (call_workflow_id(call_id), recording_workflow_id(call_id)):
        await client.execute_workflow(StandIn.run, 0.0, id=wid, task_queue=erase_worker)
    assert await _counts(db, call_id) == [1, 2, 1, 1]

    req = EraseCallInput(call_id, "admin-0123456789", datetime.now(UTC).isoformat())
    result = await client.execute_workflow(
        EraseCallWorkflow.run, req, id=f"erase-{call_id}", task_queue=erase_worker
    )
    assert result == EraseCallResult(
        call_id, executions_deleted=2, object_deleted=True, rows_deleted=5
    )
    assert await _counts(db, call_id) == [0, 0, 0, 0]
    for bucket in s3.client.list_buckets():  # no object of the call is left anywhere
        left = s3.client.list_objects(
            bucket.name, prefix=f"conversations/{call_id}", recursive=True
        )
        assert not [o.object_name for o in left], bucket.name
    assert s3.client.stat_object(STAGING, bystander).size == 4
    assert not list(s3.client.list_objects(STAGING, prefix="conversations/EG_x.json"))
    # Temporal accepted both deletions; the server completes them asynchronously (about a
    # minute on the dev server), so their disappearance is not waited for here.
    record = dict(await db.fetchrow("SELECT * FROM erasures WHERE call_id = $1", call_id))
    assert record["requested_by"] == "admin-0123456789"
    assert (record["rows_deleted"], record["object_deleted"], record["executions_deleted"]) == (
        5,
        True,
        2,
    )
    assert "Ana" not in str(record) and "555" not in str(record)

    # running it again (a retried or repeated erasure) changes nothing and reports the first run
    again = await client.execute_workflow(
        EraseCallWorkflow.run, req, id=f"erase-again-{call_id}", task_queue=erase_worker
    )
    assert (again.object_deleted, again.rows_deleted) == (False, 5)
    assert await db.fetchval("SELECT count(*) FROM erasures WHERE call_id = $1", call_id) == 1


async def test_erasure_refuses_a_call_that_still_runs_and_touches_nothing(
    temporal_dev_env: WorkflowEnvironment, erase_worker: str, db: asyncpg.Connection, s3: Any
) -> None:
    client = temporal_dev_env.client
    call_id = new_call_id()
    await _seed_call(db, s3, call_id)
    running = await client.start_workflow(
        StandIn.run, 600.0, id=call_workflow_id(call_id), task_queue=erase_worker
    )
    try:
        with pytest.raises(WorkflowFailureError) as failed:
            await client.execute_workflow(
                EraseCallWorkflow.run,
                EraseCallInput(call_id, "admin-x", datetime.now(UTC).isoformat()),
                id=f"erase-{call_id}",
                task_queue=erase_worker,
            )
        assert failed.value.cause.cause.type == ERR_CALL_STILL_RUNNING  # type: ignore[union-attr]
        assert await _counts(db, call_id) == [1, 2, 1, 1]
        assert s3.client.stat_object(s3.bucket, single_recording_object_key(call_id)).size == 10
        assert await _exists(client, call_workflow_id(call_id))
        assert await db.fetchval("SELECT count(*) FROM erasures WHERE call_id = $1", call_id) == 0
    finally:
        await running.terminate("test over")


async def test_erasure_stops_a_recording_pipeline_that_still_retries(
    temporal_dev_env: WorkflowEnvironment, erase_worker: str, db: asyncpg.Connection, s3: Any
) -> None:
    """The call is over; its pipeline waits for ops (days, maybe). Erasure does not wait."""
    client = temporal_dev_env.client
    call_id = new_call_id()
    await _seed_call(db, s3, call_id)
    pipeline = await client.start_workflow(
        StandIn.run, 7 * 24 * 3600.0, id=recording_workflow_id(call_id), task_queue=erase_worker
    )
    result = await asyncio.wait_for(
        client.execute_workflow(
            EraseCallWorkflow.run,
            EraseCallInput(call_id, "admin-x", datetime.now(UTC).isoformat()),
            id=f"erase-{call_id}",
            task_queue=erase_worker,
        ),
        60,
    )
    assert result.executions_deleted == 1 and result.object_deleted and result.rows_deleted
    # Cancelled (not terminated), then its deletion accepted (completed asynchronously).
    with contextlib.suppress(RPCError):
        assert (await pipeline.describe()).status == WorkflowExecutionStatus.CANCELED
    for bucket in (s3.bucket, STAGING):
        assert not list(s3.client.list_objects(bucket, prefix=f"conversations/{call_id}"))


@workflow.defn(name="EraseTestStuckPipeline", sandboxed=False)
class StuckPipeline:
    """A pipeline that never closes when cancelled (stuck: the case terminate is kept for)."""

    @workflow.run
    async def run(self) -> str:
        while True:
            with contextlib.suppress(asyncio.CancelledError):
                await workflow.sleep(timedelta(hours=1))


async def test_a_pipeline_that_will_not_stop_is_terminated_and_swept_twice(
    temporal_dev_env: WorkflowEnvironment, pg_dsn: str, db: asyncpg.Connection, s3: Any
) -> None:
    client = temporal_dev_env.client
    call_id = new_call_id()
    await _seed_call(db, s3, call_id)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4, init=init_connection)
    acts = EraseActivities(
        pool, s3.client, client, s3.bucket, STAGING, pipeline_stop_wait_s=2, sweep_again_after_s=3
    )
    queue = f"erase-stuck-{uuid.uuid4().hex[:8]}"
    try:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[EraseCallWorkflow, StuckPipeline],
            activities=acts.activities(),
        ):
            pipeline = await client.start_workflow(
                StuckPipeline.run, id=recording_workflow_id(call_id), task_queue=queue
            )
            erasure = await client.start_workflow(
                EraseCallWorkflow.run,
                EraseCallInput(call_id, "admin-x", datetime.now(UTC).isoformat()),
                id=f"erase-{call_id}",
                task_queue=queue,
            )
            async with asyncio.timeout(30):
                while (await pipeline.describe()).status != WorkflowExecutionStatus.TERMINATED:
                    await asyncio.sleep(0.1)
            # A write the stuck pipeline's upload had sent lands after the first sweep.
            await asyncio.sleep(1)
            late = f"conversations/{call_id}/1.ogg"
            s3.client.put_object(s3.bucket, late, io.BytesIO(b"OggS-late"), 9)
            result = await asyncio.wait_for(erasure.result(), 60)
            history = await erasure.fetch_history()
    finally:
        await pool.close()
    assert result.object_deleted and result.rows_deleted
    for bucket in s3.client.list_buckets():
        left = s3.client.list_objects(
            bucket.name, prefix=f"conversations/{call_id}", recursive=True
        )
        assert not [o.object_name for o in left], bucket.name
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled.count("erase_recording_object") == 2  # swept again after the wait
    assert any(e.HasField("timer_started_event_attributes") for e in history.events)


@contextlib.asynccontextmanager
async def slow_s3(s3: Any, delay_s: float) -> Any:
    """A Minio client whose every request reaches the real S3 (moto) `delay_s` late, through
    an HTTP proxy: a slow object store, as seen from the worker."""
    import aiohttp
    from aiohttp import web

    from tests.fixtures.s3_http import s3_served_by

    async def forward(request: web.Request) -> web.Response:
        await asyncio.sleep(delay_s)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as http,
            http.request(
                request.method,
                f"http://{s3.endpoint}{request.path_qs}",
                headers=headers,
                data=await request.read(),
            ) as resp,
        ):
            body = await resp.read()
            keep = {k: v for k, v in resp.headers.items() if k.lower() in ("content-type", "etag")}
            return web.Response(status=resp.status, body=body, headers=keep)

    async with s3_served_by(forward, s3.access_key, s3.secret_key) as minio:
        yield minio


async def test_a_slow_erase_heartbeats_and_is_not_timed_out(
    temporal_dev_env: WorkflowEnvironment,
    pg_dsn: str,
    db: asyncpg.Connection,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deleting many objects from a slow S3 takes longer than the steps' heartbeat timeout:
    the step heartbeats per object, so its first attempt finishes the job."""
    from temporalio.worker import UnsandboxedWorkflowRunner

    import workflows.erase as erase_module

    monkeypatch.setattr(erase_module, "HEARTBEAT", timedelta(seconds=2))  # read at each call
    client = temporal_dev_env.client
    call_id = new_call_id()
    if not s3.client.bucket_exists(STAGING):
        s3.client.make_bucket(STAGING)
    await _seed_call(db, s3, call_id)
    for n in range(3, 9):
        s3.client.put_object(s3.bucket, f"conversations/{call_id}/{n}.ogg", io.BytesIO(b"x"), 1)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4, init=init_connection)
    queue = f"erase-slow-{uuid.uuid4().hex[:8]}"
    try:
        async with slow_s3(s3, 0.3) as minio:
            acts = EraseActivities(pool, minio, client, s3.bucket, STAGING)
            async with Worker(
                client,
                task_queue=queue,
                workflows=[EraseCallWorkflow],
                activities=acts.activities(),
                workflow_runner=UnsandboxedWorkflowRunner(),
            ):
                erasure = await client.start_workflow(
                    EraseCallWorkflow.run,
                    EraseCallInput(call_id, "admin-x", datetime.now(UTC).isoformat()),
                    id=f"erase-{call_id}",
                    task_queue=queue,
                )
                result = await asyncio.wait_for(erasure.result(), 90)
                history = await erasure.fetch_history()
    finally:
        await pool.close()
    assert result.object_deleted
    names = {}
    attempts = []
    for e in history.events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            names[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
        if e.HasField("activity_task_started_event_attributes"):
            started = e.activity_task_started_event_attributes
            attempts.append((names[started.scheduled_event_id], started.attempt))
    assert ("erase_recording_object", 1) in attempts, attempts  # never timed out and retried
    for bucket in (s3.bucket, STAGING):
        left = s3.client.list_objects(bucket, prefix=f"conversations/{call_id}", recursive=True)
        assert not [o.object_name for o in left], bucket


async def test_erase_refused_by_s3_is_not_retried(pg_dsn: str, temporal_dev_env: Any) -> None:
    """AccessDenied while erasing objects is StorageRefused (non-retryable), naming the
    bucket and key but not the credentials."""
    from temporalio.exceptions import ApplicationError
    from temporalio.testing import ActivityEnvironment

    from activities.types import ERR_STORAGE_REFUSED
    from tests.fixtures.s3_http import access_denied, s3_served_by

    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2, init=init_connection)
    call_id = new_call_id()
    try:
        async with s3_served_by(access_denied, "AKIDSECRETISH", "very-secret-key") as minio:
            acts = EraseActivities(pool, minio, temporal_dev_env.client, "recordings", STAGING)
            req = EraseCallInput(call_id, "admin-x", datetime.now(UTC).isoformat())
            with pytest.raises(ApplicationError) as caught:
                await ActivityEnvironment().run(acts.erase_recording_object, req)
    finally:
        await pool.close()
    err = caught.value
    assert err.type == ERR_STORAGE_REFUSED and err.non_retryable
    assert "s3://recordings/" in str(err) and "AKIDSECRETISH" not in str(err)


async def test_the_api_erases_a_call_whose_workflow_was_terminated(
    api_stack: Any, db: asyncpg.Connection
) -> None:
    """The row still says `in_progress` (the workflow died before its final status): Temporal
    says it is closed, so the call is not live and DELETE erases it (it used to be 409)."""
    from tests.api.conftest import ADMIN

    call_id = new_call_id()
    await db.execute(
        "INSERT INTO calls (call_id, room_name, status, recording_status) "
        "VALUES ($1, $2, 'in_progress', 'recording')",
        call_id,
        f"call-{call_id}",
    )
    handle = await api_stack.client.start_workflow(
        "CallWorkflow", id=call_workflow_id(call_id), task_queue=f"nobody-{uuid.uuid4().hex}"
    )
    r = await api_stack.api.http("DELETE", f"/api/calls/{call_id}", token=ADMIN)
    assert r.status == 409 and r.error["code"] == "call_live"  # still running: refused
    await handle.terminate("lost with its worker")
    r = await api_stack.api.http("DELETE", f"/api/calls/{call_id}", token=ADMIN)
    assert r.status in (200, 202), r.body
    async with asyncio.timeout(60):
        while not await db.fetchval("SELECT 1 FROM erasures WHERE call_id = $1", call_id):
            await asyncio.sleep(0.3)
    assert await db.fetchval("SELECT count(*) FROM calls WHERE call_id = $1", call_id) == 0


async def test_a_second_erasure_of_a_call_joins_the_one_running(
    temporal_dev_env: WorkflowEnvironment,
) -> None:
    # The API and `ops calls erase` both start here: a call is never erased twice at once.
    client = temporal_dev_env.client
    call_id = new_call_id()
    queue = f"no-worker-{uuid.uuid4().hex[:8]}"  # nothing polls it: the first one stays running
    first = await start_erase(client, call_id, by="admin-0123456789", task_queue=queue)
    try:
        second = await start_erase(client, call_id, by="ops-0123456789", task_queue=queue)
        assert second.id == first.id == f"erase-{call_id}"
        assert second.result_run_id == first.result_run_id
        desc = await first.describe()
        assert desc.status == WorkflowExecutionStatus.RUNNING
    finally:
        await first.terminate("test over")


async def test_erasure_stops_the_analysis_and_removes_its_rows(
    temporal_dev_env: WorkflowEnvironment, erase_worker: str, db: asyncpg.Connection, s3: Any
) -> None:
    """After the call, erased too: a running `analysis-<id>` and a delivery still retrying are
    terminated, and the analysis and its webhook messages (which quote the call) are deleted."""
    client = temporal_dev_env.client
    call_id = new_call_id()
    await _seed_call(db, s3, call_id)
    msg = f"msg_{call_id}_call_analyzed_1"
    await db.execute(
        "INSERT INTO call_analyses (call_id, status, method, outcome, document) "
        "VALUES ($1, 'done', 'local', 'resolved', $2::jsonb)",
        call_id, json.dumps({"summary": 'The customer said: "my phone is 555-0100".'}),
    )  # fmt: skip
    await db.execute(
        "INSERT INTO webhook_deliveries (id, call_id, event_type, payload, attempts) "
        "VALUES ($1, $2, 'call.analyzed', '{}', 3)",
        msg, call_id,
    )  # fmt: skip
    await client.execute_workflow(
        StandIn.run, 0.0, id=call_workflow_id(call_id), task_queue=erase_worker
    )
    held = [
        await client.start_workflow(StandIn.run, 3600.0, id=wid, task_queue=erase_worker)
        for wid in (f"analysis-{call_id}", f"webhook-{msg}")
    ]
    req = EraseCallInput(call_id, "admin-0123456789", datetime.now(UTC).isoformat())
    await client.execute_workflow(
        EraseCallWorkflow.run, req, id=f"erase-{call_id}", task_queue=erase_worker
    )
    for table in ("call_analyses", "webhook_deliveries"):
        left = await db.fetchval(f"SELECT count(*) FROM {table} WHERE call_id = $1", call_id)
        assert left == 0, table
    for handle in held:
        with contextlib.suppress(RPCError):  # deleted already: it was stopped first
            desc = await handle.describe()
            assert desc.status != WorkflowExecutionStatus.RUNNING, handle.id


async def test_a_versioned_bucket_loses_every_version_of_the_calls_objects(
    pg_dsn: str, temporal_dev_env: Any, s3: Any
) -> None:
    """With versioning on, a plain delete only hides an object behind a delete marker (every
    earlier version can be restored): erasure deletes each version, and the markers."""
    from minio.commonconfig import ENABLED
    from minio.versioningconfig import VersioningConfig
    from temporalio.testing import ActivityEnvironment

    bucket = f"versioned-{uuid.uuid4().hex[:8]}"
    s3.client.make_bucket(bucket)
    s3.client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
    call_id, other = new_call_id(), new_call_id()
    keys = [f"conversations/{call_id}/1.ogg", single_recording_object_key(call_id)]
    for key in keys:
        for body in (b"OggS-first", b"OggS-second"):  # rewritten: two versions
            s3.client.put_object(bucket, key, io.BytesIO(body), len(body))
    s3.client.remove_object(bucket, keys[0])  # a delete marker over both versions
    bystander = f"conversations/{other}/1.ogg"
    s3.client.put_object(bucket, bystander, io.BytesIO(b"OggS"), 4)

    def versions(prefix: str) -> list[Any]:
        return list(
            s3.client.list_objects(bucket, prefix=prefix, recursive=True, include_version=True)
        )

    assert len(versions(f"conversations/{call_id}")) == 5
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2, init=init_connection)
    try:
        acts = EraseActivities(pool, s3.client, temporal_dev_env.client, bucket, STAGING)
        req = EraseCallInput(call_id, "admin-x", datetime.now(UTC).isoformat())
        assert await ActivityEnvironment().run(acts.erase_recording_object, req) is True
    finally:
        await pool.close()
    assert versions(f"conversations/{call_id}") == [], "no version or marker is left"
    [kept] = versions(bystander)
    assert kept.size == 4 and not kept.is_delete_marker
