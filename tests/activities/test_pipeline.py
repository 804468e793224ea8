"""The real activities together: a recording made by the LiveKit emulator, stored in S3, and a
whole call run by the real workflows on the dev server with every real activity."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import uuid
from typing import Any

import asyncpg
from livekit.api import ListEgressRequest
from livekit.protocol.egress import EgressStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import build_activities
from activities import types as act
from activities.livekit import EgressUpload, LiveKitActivities
from activities.storage import StorageActivities
from core import eventlog
from core import models as m
from core.temporal import connect_temporal
from tests.activities.conftest import Run
from tests.fixtures.livekit import LiveKitEmulator
from workflows import client as wclient
from workflows.call import CallWorkflow
from workflows.erase import EraseCallWorkflow
from workflows.recording import RecordingWorkflow


async def until(check: Any, timeout: float = 15.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (value := await check()):
            await asyncio.sleep(0.05)
    return value


def stored_sha256(s3: Any, key: str) -> str:
    resp = s3.client.get_object(s3.bucket, key)
    try:
        return hashlib.sha256(resp.read()).hexdigest()
    finally:
        resp.close()
        resp.release_conn()


async def test_an_emulator_recording_is_stored_with_its_duration(
    livekit_emulator: LiveKitEmulator, s3: Any, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    lk = livekit_emulator
    call_id = m.new_call_id()
    room = m.room_name_for(call_id)
    async with lk.api() as client:
        upload = EgressUpload("egress", f"http://{s3.endpoint}", "us-east-1", True,
                              s3.access_key, s3.secret_key)  # fmt: skip
        live = LiveKitActivities(client, upload)
        await Run()(live.create_room, act.CreateRoomInput(call_id, room, "sarah-cme"))
        await lk.join(room, m.customer_identity(call_id), kind="customer")
        ref = act.EgressRef(call_id, "")
        started = await Run()(
            live.start_egress, act.StartEgressInput(call_id, room, m.recording_object_key(call_id))
        )
        ref.egress_id = started.egress_id
        out = lk.handle.emulator.egresses[ref.egress_id].info.room_composite.file_outputs[0]
        assert out.disable_manifest and out.s3.bucket == "egress" and out.s3.force_path_style
        assert out.s3.secret == "{redacted}"  # LiveKit never echoes storage credentials
        assert s3.secret_key not in repr(upload) and s3.secret_key not in caplog.text

        async def active() -> bool:
            return (await Run()(live.get_egress, ref)).status == "EGRESS_ACTIVE"

        await until(active)
        await lk.advance(ref.egress_id, 95)
        await Run()(live.stop_egress, ref)

        async def complete() -> m.EgressState | None:
            got = await Run()(live.get_egress, ref)
            return got if got.status == "EGRESS_COMPLETE" else None

        done = await until(complete)
    assert done.file is not None
    key = m.recording_object_key(call_id)
    # Egress uploaded to staging and reported it as Egress does (path style, custom endpoint).
    assert done.file.location == f"http://{s3.endpoint}/egress/{key}"
    assert done.file.filename == key
    assert s3.client.stat_object("egress", key).size == done.file.size
    storage = StorageActivities(s3.client, s3.bucket, s3_endpoints=(s3.endpoint,))
    inp = m.RecordingInput(
        call_id=call_id, room_name=room, egress_id=ref.egress_id, location=done.file.location,
        expected_size=done.file.size, expected_duration_s=done.file.duration_s, call_duration_s=96,
    )  # fmt: skip
    result = await Run()(storage.download_and_store_recording, inp)
    assert result.size == done.file.size and not result.already_stored
    # Measured from the Ogg pages themselves, it agrees with what egress reported.
    assert abs(result.duration_s - done.file.duration_s) < 0.1, (result, done.file)
    assert not result.incomplete
    assert stored_sha256(s3, result.key) == result.sha256
    assert not list(s3.client.list_objects("egress", prefix=key))  # staging copy removed
    shorter = m.RecordingInput(**{**inp.__dict__, "call_duration_s": 400.0})
    again = await Run()(storage.download_and_store_recording, shorter)
    assert again.already_stored and again.incomplete  # 95 s of a 400 s call
    assert s3.secret_key not in caplog.text  # nor the presigned source URL's signature
    assert "X-Amz-Signature" not in caplog.text
    assert "egress_started" in caplog.text and "staging_object_deleted" in caplog.text


async def test_a_whole_call_on_the_real_activities(
    temporal_dev_env: WorkflowEnvironment,
    pg_dsn: str,
    s3: Any,
    livekit_emulator: LiveKitEmulator,
    make_settings: Any,
) -> None:
    lk = livekit_emulator
    queue = f"pipeline-{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        TEMPORAL_ADDRESS=temporal_dev_env.client.service_client.config.target_host,
        TEMPORAL_TASK_QUEUE=queue,
        DATABASE_URL=pg_dsn,
        MINIO_ENDPOINT=s3.endpoint,
        MINIO_ACCESS_KEY=s3.access_key,
        MINIO_SECRET_KEY=s3.secret_key,
        RECORDINGS_BUCKET=s3.bucket,
        LIVEKIT_URL=lk.url,
        LIVEKIT_API_KEY=lk.api_key,
        LIVEKIT_API_SECRET=lk.api_secret,
        PAYLOAD_KEYS="t1:" + base64.b64encode(os.urandom(32)).decode(),
    )
    client = await connect_temporal(settings)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4)
    call_id = m.new_call_id()
    room = m.room_name_for(call_id)
    config = m.CallConfig(livekit_url=lk.url, egress_end_timeout_s=2, silence_alert_s=3600)
    try:
        async with (
            lk.api() as lkapi,
            Worker(
                client,
                task_queue=queue,
                workflows=[CallWorkflow, RecordingWorkflow, EraseCallWorkflow],
                activities=build_activities(
                    settings, pool=pool, lk=lkapi, minio=s3.client, client=client
                ),
            ),
        ):
            grant = await wclient.start_call(client, call_id, "Ada", config, task_queue=queue)
            assert grant.room_name == room and grant.livekit_url == lk.url
            await lk.join(room, grant.participant_identity, kind="customer")
            handle = client.get_workflow_handle_for(CallWorkflow.run, m.call_workflow_id(call_id))
            agent = await until(lambda: _agent_in(lk, room))
            await handle.signal(CallWorkflow.agent_joined, m.AgentJoined("aj-1", agent))

            async def say(line: m.TranscriptLine) -> None:
                # As the agent does (no API here): stored in PostgreSQL, then signalled.
                await eventlog.store_line(pool, call_id, line, config.keywords)
                await handle.signal(CallWorkflow.transcript, line)

            await say(
                m.TranscriptLine("l1", "assistant", "Hi, this is Sarah. This call is recorded.")
            )

            async def recording() -> m.EgressState | None:
                return (await handle.query(CallWorkflow.get_state)).egress

            egress = await until(recording, 20)  # started by the workflow after the greeting

            async def active() -> bool:
                # No webhooks here (no API): ask LiveKit, as the workflow's poll would.
                listed = await lkapi.egress.list_egress(
                    ListEgressRequest(egress_id=egress.egress_id)
                )
                return listed.items[0].status == EgressStatus.EGRESS_ACTIVE

            await until(active)
            await lk.advance(egress.egress_id, 60)
            await say(m.TranscriptLine("l2", "customer", "I'd like a test drive"))
            await wclient.end_call(client, call_id, "test over", "ops")
            result = await asyncio.wait_for(handle.result(), 60)
            # The call is over once its pipeline started; the pipeline reports its own outcome.
            pipeline = client.get_workflow_handle(
                m.recording_workflow_id(call_id), result_type=m.RecordingResult
            )
            rec = await asyncio.wait_for(pipeline.result(), 60)
    finally:
        await pool.close()

    assert result.status == m.CallStatus.COMPLETED and result.line_count == 2
    assert result.recording_status == m.RecordingStatus.UPLOADING, result
    assert not rec.given_up and rec.egress_id == egress.egress_id and rec.duration_s >= 60
    assert stored_sha256(s3, rec.key) == rec.sha256
    assert not list(s3.client.list_objects("egress", prefix=f"conversations/{call_id}"))

    conn = await asyncpg.connect(pg_dsn)
    try:
        call = await conn.fetchrow("SELECT * FROM calls WHERE call_id = $1", call_id)
        assert (call["status"], call["recording_status"]) == ("completed", "stored")
        assert call["line_count"] == 2 and call["egress_id"] == egress.egress_id
        seqs = [r["seq"] for r in await conn.fetch(
            "SELECT seq FROM call_events WHERE call_id = $1 ORDER BY seq", call_id)]  # fmt: skip
        assert seqs == list(range(1, call["last_seq"] + 1))
        row = await conn.fetchrow("SELECT * FROM recordings WHERE call_id = $1", call_id)
        assert (row["sha256"], row["size_bytes"]) == (rec.sha256, rec.size)
    finally:
        await conn.close()
    rooms = (await lk.state())["rooms"]
    assert room not in {r["name"] if isinstance(r, dict) else r for r in rooms}


async def _agent_in(lk: LiveKitEmulator, room: str) -> str:
    async with lk.api() as client:
        from livekit.protocol import room as room_pb

        res = await client.room.list_participants(room_pb.ListParticipantsRequest(room=room))
    return next((p.identity for p in res.participants if p.identity.startswith("agent-")), "")
