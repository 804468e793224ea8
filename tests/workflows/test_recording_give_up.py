"""RecordingWorkflow and ops: given up on part-way through a multi-segment recording, the
segments stored before keep rows naming them and the pipeline says it was given up (its query,
its Web UI details, a refused retry), no longer that it waits for ops; a retry that raced an
erasure stops the run it started."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    StartWorkflowInput,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDReusePolicy

from activities import types as act
from core import models as m
from testkit.harness import Harness
from workflows.client import RecordingRetryRefused, give_up_recording, retry_recording
from workflows.recording import RecordingWorkflow

R = m.RecordingStatus


def two_segments(call_id: str) -> m.RecordingInput:
    return m.RecordingInput(
        call_id=call_id,
        room_name=m.room_name_for(call_id),
        egress_id="EG_1",
        location="",
        expected_size=0,
        expected_duration_s=60.0,
        call_duration_s=60.0,
        retry_for_s=2,  # out of retries in real seconds
        segments=[
            m.RecordingSegment(
                n=n,
                egress_id=f"EG_{n}",
                object_key=m.recording_object_key(call_id, n),
                location=f"http://egress.invalid/{n}.ogg",
                expected_size=1000 * n,
                expected_duration_s=30.0,
                recorded_for_s=30.0,
            )
            for n in (1, 2)
        ],
    )


async def start_two_segments(h: Harness, call_id: str) -> WorkflowHandle:
    h.started.append(m.recording_workflow_id(call_id))
    return await h.client.start_workflow(
        RecordingWorkflow.run,
        two_segments(call_id),
        id=m.recording_workflow_id(call_id),
        task_queue=h.task_queue,
        result_type=m.RecordingResult,
    )


async def waiting_for_ops(h: Harness, failing_segment: int) -> tuple[str, WorkflowHandle]:
    """A two-segment pipeline whose `failing_segment` never downloads: out of retries, it
    reports failed and waits for ops."""
    call_id = m.new_call_id()
    key = m.recording_object_key(call_id, failing_segment)
    h.fakes.download_failing_keys = frozenset({key})
    rec = await start_two_segments(h, call_id)
    await h.waiting_for_ops(call_id)
    return call_id, rec


async def details(handle: WorkflowHandle) -> str:
    meta = await handle.query("__temporal_workflow_metadata")
    return str(getattr(meta, "current_details", "") or meta)


async def test_give_up_on_a_later_segment_keeps_rows_for_the_stored_ones(
    harness: Harness,
) -> None:
    h, f = harness, harness.fakes
    call_id, rec = await waiting_for_ops(h, failing_segment=2)
    first = m.recording_object_key(call_id, 1)
    assert (await rec.query(RecordingWorkflow.get_status))["waiting_for_ops"]
    assert "waiting for ops" in await details(rec)

    await rec.execute_update(
        RecordingWorkflow.give_up, m.RecordingOpsRequest(by="ops-7", reason="egress 2 is lost")
    )
    result = await rec.result()
    assert result.given_up and [s.key for s in result.segments] == [first]
    # The stored segment is named by a row (incomplete), written without a `recording` event:
    # the call's recording stays failed, given up by ops-7.
    [rows] = [r for r in f.recording_rows if r.status == R.STORED]
    assert rows.object_key == first and rows.incomplete and not rows.append_event_for_run
    assert [s["key"] for s in rows.segments] == [first]
    failed = [r for r in f.recording_rows if r.status == R.FAILED and r.by == "ops-7"]
    assert failed and "given up by ops-7" in failed[-1].error

    status = await rec.query(RecordingWorkflow.get_status)
    assert status["given_up"] and not status["waiting_for_ops"]
    shown = await details(rec)
    assert "given up by ops-7" in shown and "waiting for ops" not in shown


async def test_a_retry_of_a_given_up_pipeline_says_so(harness: Harness) -> None:
    """Not "already stored": the run completed because ops gave up on it."""
    call_id, rec = await waiting_for_ops(harness, failing_segment=1)
    await give_up_recording(harness.client, call_id, by="ops-7")
    assert (await rec.result()).given_up
    with pytest.raises(RecordingRetryRefused) as refused:
        await retry_recording(harness.client, call_id)
    assert refused.value.code == "given_up"


class ErasureStartsDuringTheRetry(Interceptor):
    """Starts `erase-<call_id>` (an execution no worker runs: it stays running) just before
    the retry starts the pipeline's new run: the race between an ops retry and an erasure."""

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _EraseFirst(next)


class _EraseFirst(OutboundInterceptor):
    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle:
        if input.workflow == m.WORKFLOW_RECORDING:
            call_id = input.id.removeprefix("recording-")
            await super().start_workflow(
                dataclasses.replace(
                    input,
                    workflow="EraseCallWorkflow",
                    args=[],
                    id=m.erase_workflow_id(call_id),
                    task_queue=f"nobody-{uuid.uuid4().hex}",
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                )
            )
        return await super().start_workflow(input)


async def test_a_retry_that_raced_an_erasure_stops_its_new_run(dev_harness: Harness) -> None:
    """On the dev server: the time-skipping one stalls a run started after a termination."""
    h, f = dev_harness, dev_harness.fakes
    call_id, rec = await waiting_for_ops(h, failing_segment=1)
    await rec.terminate("an old run that failed")  # a new run is what the retry starts
    f.download_failing_keys, f.upload_gate = frozenset(), asyncio.Event()  # held mid-upload
    racing = Client(**{**h.client.config(), "interceptors": [ErasureStartsDuringTheRetry()]})
    h.started.append(m.erase_workflow_id(call_id))
    try:
        with pytest.raises(RecordingRetryRefused) as refused:
            await retry_recording(racing, call_id)
        assert refused.value.code == "erasing"
        new = h.client.get_workflow_handle(m.recording_workflow_id(call_id))
        async with asyncio.timeout(30):
            while (await new.describe()).status != WorkflowExecutionStatus.CANCELED:
                await asyncio.sleep(0.1)
        assert not any(r.status == R.STORED for r in f.recording_rows)  # nothing came back
        assert f.recording_rows[-1].error.startswith("cancelled: erasure started")
    finally:
        f.upload_gate.set()
        await h.client.get_workflow_handle(m.erase_workflow_id(call_id)).terminate("test over")


async def test_the_store_step_refusing_an_erased_call_ends_the_run(harness: Harness) -> None:
    """CallErased: no report (the call's rows are gone) and no ops to wait for."""
    h, f = harness, harness.fakes
    f.download_error = act.ERR_CALL_ERASED
    result = await (await start_two_segments(h, m.new_call_id())).result()
    assert result.given_up and not result.segments
    assert f.count(act.DOWNLOAD_AND_STORE_RECORDING) == 1  # refused for good: not retried
    assert [r.status for r in f.recording_rows] == [R.UPLOADING]
