"""Erasure racing an upload in flight, with the real RecordingWorkflow, the real upload activity,
the real erasure on the dev server, PostgreSQL and S3: nothing of the call is left in any
bucket, even when the upload's write is on the wire as the erasure starts.

The S3 endpoint is real (moto); only its client is slowed down for one kind of write, as a
slow network would: the request is sent and lands `WRITE_DELAY_S` later, and a thread that has
sent it cannot be recalled. Before release 4 the erasure terminated the pipeline and deleted
the objects at once, and the write landed afterwards: a recording survived its erasure.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from minio import Minio
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.database import DatabaseActivities
from activities.erase import EraseActivities
from activities.storage import StorageActivities
from activities.types import DOWNLOAD_AND_STORE_RECORDING
from api.domain.store import init_connection
from core import models as m
from workflows.client import RecordingRetryRefused, retry_recording
from workflows.erase import EraseCallWorkflow
from workflows.recording import RecordingWorkflow

WRITE_DELAY_S = 6.0  # well above how long a cancellation takes to reach the upload (~2 s)
MiB = 1024 * 1024


class SlowWrites(Minio):
    """A minio client whose `slow` write lands `WRITE_DELAY_S` after it was sent."""

    def __init__(self, endpoint: str, slow: str, **kwargs: Any) -> None:
        super().__init__(endpoint, **kwargs)
        self.slow = slow
        self.sent = threading.Event()
        self.landed_at = 0.0

    def _delayed(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.sent.set()
        time.sleep(WRITE_DELAY_S)
        try:
            return fn(*args, **kwargs)
        finally:
            self.landed_at = time.time()

    def put_object(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if self.slow != "put_object":
            return super().put_object(*args, **kwargs)
        return self._delayed(super().put_object, *args, **kwargs)

    def _create_multipart_upload(self, *args: Any, **kwargs: Any) -> Any:
        if self.slow != "create":
            return super()._create_multipart_upload(*args, **kwargs)
        return self._delayed(super()._create_multipart_upload, *args, **kwargs)

    def _upload_part(self, *args: Any, **kwargs: Any) -> Any:
        if self.slow != "part":
            return super()._upload_part(*args, **kwargs)
        return self._delayed(super()._upload_part, *args, **kwargs)

    def _execute(self, method: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        # CompleteMultipartUpload (activities.multipart sends it itself, with the checksums).
        complete = method == "POST" and "uploadId" in (kwargs.get("query_params") or {})
        if self.slow != "complete" or not complete:
            return super()._execute(method, *args, **kwargs)
        return self._delayed(super()._execute, method, *args, **kwargs)


def _ogg_like(size: int) -> bytes:
    return b"OggS" + os.urandom(size - 4)


@pytest.mark.parametrize(
    ("slow", "size"),
    [("put_object", 64 * 1024), ("create", 11 * MiB), ("part", 11 * MiB), ("complete", 11 * MiB)],
    ids=["single-put", "multipart-create", "multipart-part", "multipart-complete"],
)
async def test_an_upload_in_flight_cannot_store_its_recording_after_the_erasure(
    temporal_dev_env: WorkflowEnvironment,
    pg_dsn: str,
    db: asyncpg.Connection,
    s3: Any,
    slow: str,
    size: int,
) -> None:
    client = temporal_dev_env.client
    call_id = m.new_call_id()
    key = f"conversations/{call_id}/1.ogg"
    staging = "egress"
    s3.client.put_object(staging, key, io.BytesIO(_ogg_like(size)), size)  # what Egress wrote
    await db.execute(
        "INSERT INTO calls (call_id, room_name, customer_name, status, recording_status) "
        "VALUES ($1, $2, 'Ana Customer', 'completed', 'uploading')",
        call_id,
        m.room_name_for(call_id),
    )
    slow_s3 = SlowWrites(
        s3.endpoint, slow, access_key=s3.access_key, secret_key=s3.secret_key, secure=False
    )
    storage = StorageActivities(
        slow_s3, s3.bucket, part_size=5 * MiB, staging_bucket=staging, s3_endpoints=(s3.endpoint,)
    )
    ended: list[tuple[str, float]] = []  # how the upload ended, and when

    @activity.defn(name=DOWNLOAD_AND_STORE_RECORDING)
    async def upload(inp: m.RecordingInput) -> m.RecordingResult:
        try:
            return await storage.download_and_store_recording(inp)
        except BaseException as exc:
            ended.append((type(exc).__name__, time.time()))
            raise

    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4, init=init_connection)
    erase = EraseActivities(pool, s3.client, client, s3.bucket, staging, pipeline_stop_wait_s=60)
    queue = f"erase-race-{uuid.uuid4().hex[:8]}"
    try:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[RecordingWorkflow, EraseCallWorkflow],
            activities=[
                upload,
                DatabaseActivities(pool).record_recording,
                *erase.activities(),
            ],
            # As worker.py: a cancellation reaches the upload within seconds.
            max_heartbeat_throttle_interval=timedelta(seconds=1),
        ):
            pipeline = await client.start_workflow(
                RecordingWorkflow.run,
                m.RecordingInput(
                    call_id=call_id,
                    room_name=m.room_name_for(call_id),
                    egress_id="EG_race",
                    location="",
                    expected_size=size,
                    expected_duration_s=0.0,
                    call_duration_s=0.0,
                    report_to_call=True,
                    object_key=key,
                ),
                id=m.recording_workflow_id(call_id),
                task_queue=queue,
            )
            async with asyncio.timeout(30):  # the upload's write is on the wire
                while not slow_s3.sent.is_set():
                    await asyncio.sleep(0.05)
            erasure_started = time.time()
            result = await asyncio.wait_for(
                client.execute_workflow(
                    EraseCallWorkflow.run,
                    m.EraseCallInput(call_id, "admin-race", datetime.now(UTC).isoformat()),
                    id=m.erase_workflow_id(call_id),
                    task_queue=queue,
                ),
                120,
            )
            erased_at = time.time()
            # Give a write the erasure did not wait for every chance to land before looking.
            await asyncio.sleep(max(0.0, erasure_started + WRITE_DELAY_S + 1 - time.time()))
    finally:
        await pool.close()

    for bucket in s3.client.list_buckets():  # no object of the call anywhere
        left = s3.client.list_objects(
            bucket.name, prefix=f"conversations/{call_id}", recursive=True
        )
        assert not [o.object_name for o in left], bucket.name
        uploads = s3.client._list_multipart_uploads(bucket.name, prefix=f"conversations/{call_id}")
        assert not list(uploads.uploads), bucket.name
    # The upload was cancelled mid-write and said so only once its write had landed.
    assert [how for how, _ in ended] == ["CancelledError"]
    assert 0 < slow_s3.landed_at <= ended[0][1] < erased_at
    assert result.object_deleted and result.rows_deleted >= 1
    assert result.executions_deleted == 1  # the pipeline's run (no call workflow here)
    with contextlib.suppress(RPCError):  # its deletion may have completed already
        assert (await pipeline.describe()).status == WorkflowExecutionStatus.CANCELED
    assert await db.fetchval("SELECT count(*) FROM calls WHERE call_id = $1", call_id) == 0
    assert await db.fetchval("SELECT count(*) FROM recordings WHERE call_id = $1", call_id) == 0
    record = await db.fetchrow("SELECT * FROM erasures WHERE call_id = $1", call_id)
    assert record["requested_by"] == "admin-race" and record["object_deleted"]
    # Nor can an ops retry put the recording back now.
    with pytest.raises(RecordingRetryRefused) as refused:
        await retry_recording(client, call_id, by="ops-1")
    assert refused.value.code == "erasing"
