"""RecordingWorkflow given up on by ops part-way through a multi-segment recording: the
segments stored before keep rows naming them, and the pipeline says it was given up (its
query and its Web UI details), no longer that it waits for ops."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHandle

from core import models as m
from testkit.harness import Harness
from testkit.standins import until
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


async def waiting_for_ops(h: Harness, failing_segment: int) -> tuple[str, WorkflowHandle]:
    """A two-segment pipeline whose `failing_segment` never downloads: out of retries, it
    reports failed and waits for ops."""
    call_id = m.new_call_id()
    key = m.recording_object_key(call_id, failing_segment)
    h.fakes.download_failing_keys = frozenset({key})
    h.started.append(m.recording_workflow_id(call_id))
    rec = await h.client.start_workflow(
        RecordingWorkflow.run,
        two_segments(call_id),
        id=m.recording_workflow_id(call_id),
        task_queue=h.task_queue,
        result_type=m.RecordingResult,
    )
    await until(lambda: any(r.status == R.FAILED for r in h.fakes.recording_rows), 30)
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
