"""`find_staged_recording` and `delete_recording_segments` against a real S3 endpoint (moto),
and the background heartbeat of the download activity."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from minio import Minio

from activities import types as act
from activities.storage import StorageActivities, heartbeating
from core import models as m
from tests.activities.conftest import Run, app_error
from tests.fixtures.s3_http import access_denied, s3_served_by


@pytest.fixture
def staging(s3: Any) -> StorageActivities:
    bucket = "egress"
    if not s3.client.bucket_exists(bucket):
        s3.client.make_bucket(bucket)
    return StorageActivities(s3.client, s3.bucket, staging_bucket=bucket)


async def test_a_segment_in_staging_is_found_at_its_key(staging: StorageActivities) -> None:
    call_id = m.new_call_id()
    key = m.recording_object_key(call_id, 2)
    staging.minio.put_object("egress", key, io.BytesIO(b"OggS" + b"x" * 96), 100)
    found = await Run()(staging.find_staged_recording, act.StagedRecordingQuery(call_id, key))
    assert found is not None and found.size == 100 and found.filename == key
    assert found.location.endswith(f"/egress/{key}")
    missing = m.recording_object_key(call_id, 3)
    none = await Run()(staging.find_staged_recording, act.StagedRecordingQuery(call_id, missing))
    assert none is None
    err = await app_error(  # another call's key is refused, not looked up
        Run()(
            staging.find_staged_recording,
            act.StagedRecordingQuery(call_id, "conversations/x/1.ogg"),
        )
    )
    assert err.type == act.ERR_INVALID_INPUT and err.non_retryable


async def test_withdrawn_segments_are_deleted_from_both_buckets(
    staging: StorageActivities,
) -> None:
    call_id = m.new_call_id()
    keys = [m.recording_object_key(call_id, n) for n in (1, 2)]
    for bucket in ("egress", staging.bucket):
        staging.minio.put_object(bucket, keys[0], io.BytesIO(b"OggS"), 4)
    asked = await Run()(staging.delete_recording_segments, act.SegmentsToDelete(call_id, keys))
    assert asked == 2  # the second never got there: fine
    for bucket in ("egress", staging.bucket):
        assert not list(staging.minio.list_objects(bucket, prefix=f"conversations/{call_id}/"))


async def test_heartbeating_outside_an_activity_just_runs_the_body() -> None:
    async with heartbeating(every_s=0.01):
        await asyncio.sleep(0.03)


async def test_background_beats_while_no_bytes_arrive() -> None:
    """Backoff, back-pressure, completing: the activity still heartbeats."""
    run = Run()

    async def slow_phase() -> None:
        async with heartbeating(every_s=0.05):
            await asyncio.sleep(0.4)

    await run(slow_phase)
    assert len(run.heartbeats) >= 4


@pytest.fixture
async def refusing_s3() -> AsyncIterator[Minio]:
    """An S3 endpoint that refuses every request with AccessDenied, as S3 does when the
    worker's credentials may not delete (a stand-in at the HTTP boundary: moto allows all)."""

    async with s3_served_by(access_denied, "AKIDSECRETISH", "very-secret-key") as minio:
        yield minio


async def test_access_denied_on_delete_is_refused_for_good(refusing_s3: Minio) -> None:
    """A permanent refusal must not be retried for ever (the call would never complete)."""
    storage = StorageActivities(refusing_s3, "recordings", staging_bucket="egress")
    call_id = m.new_call_id()
    key = m.recording_object_key(call_id, 1)
    err = await app_error(
        Run()(storage.delete_recording_segments, act.SegmentsToDelete(call_id, [key]))
    )
    assert err.type == act.ERR_STORAGE_REFUSED and err.non_retryable
    assert f"s3://egress/{key}" in str(err) and "AccessDenied" in str(err)
    assert "AKIDSECRETISH" not in str(err) and "very-secret-key" not in str(err)


async def test_an_erased_call_is_never_stored_again(s3: Any, pg_dsn: str) -> None:
    """An ops retry that raced the erasure reaches the store step after the erasure was
    recorded: it is refused for good, and nothing is written."""
    import asyncpg

    call_id = m.new_call_id()
    key = m.recording_object_key(call_id, 1)
    s3.client.put_object("egress", key, io.BytesIO(b"OggS" + b"x" * 96), 100)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        storage = StorageActivities(s3.client, s3.bucket, staging_bucket="egress", pool=pool)
        await pool.execute(
            "INSERT INTO erasures (call_id, requested_by, requested_at, rows_deleted, "
            "object_deleted, executions_deleted) VALUES ($1, 'admin-x', now(), 3, true, 2)",
            call_id,
        )
        inp = m.RecordingInput(
            call_id=call_id,
            room_name=m.room_name_for(call_id),
            egress_id="EG_1",
            location="",
            expected_size=100,
            expected_duration_s=1.0,
            call_duration_s=1.0,
            object_key=key,
        )
        err = await app_error(Run()(storage.download_and_store_recording, inp))
    finally:
        await pool.close()
    assert err.type == act.ERR_CALL_ERASED and err.non_retryable
    assert not list(s3.client.list_objects(s3.bucket, prefix=f"conversations/{call_id}/"))
