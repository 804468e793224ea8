"""RecordingWorkflow: retries with backoff, gives up after its window, and ops restart it."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import CancelledError

from activities import types as act
from core import models as m
from testkit.harness import Harness
from testkit.standins import until
from workflows import search as sa
from workflows.client import RecordingRetryRefused, retry_recording
from workflows.recording import RecordingWorkflow

R = m.RecordingStatus


async def record_a_call(h: Harness, **config: object) -> tuple[str, m.CallResult]:
    """A call that records, ends, and hands its file to the recording pipeline."""
    h.fakes.stop_reports = "EGRESS_COMPLETE"
    handle, _ = await h.start(**config)
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hello, this call is recorded.")
    await until(lambda: h.fakes.count(act.START_EGRESS) == 1)
    await h.env.sleep(120)
    await h.say(handle, "customer", "Bye.")
    await h.customer_leaves(handle)
    return handle.id.removeprefix("call-"), await handle.result()


async def stored_result(h: Harness, call_id: str) -> m.RecordingResult:
    return await h.client.get_workflow_handle(
        m.recording_workflow_id(call_id), result_type=m.RecordingResult
    ).result()


async def test_download_fails_twice_then_succeeds(harness: Harness) -> None:
    harness.fakes.download_failures = 2  # backoff 5 s, 10 s (real time: the call has ended)
    call_id, result = await record_a_call(harness)
    assert result.recording_status == R.UPLOADING  # the call ends once the pipeline started
    rows = harness.fakes.recording_rows
    await until(lambda: rows and rows[-1].status == "stored", 60, "stored after retries")
    attempts = harness.fakes.calls[act.DOWNLOAD_AND_STORE_RECORDING]
    assert len(attempts) == 3 and rows[-1].sha256 == "ab" * 32
    rec = harness.client.get_workflow_handle(m.recording_workflow_id(call_id))
    for _ in range(50):  # the search attribute follows the report by one workflow task
        desc = await rec.describe()
        if desc.typed_search_attributes.get(sa.RECORDING_STATUS) == "stored":
            break
        await asyncio.sleep(0.1)
    assert desc.typed_search_attributes.get(sa.RECORDING_STATUS) == "stored"
    # The pipeline reports to the call's log itself, once per report.
    rows = harness.fakes.recording_rows
    assert [r.status for r in rows] == ["uploading", "stored"]
    assert len({r.append_event_for_run for r in rows}) == 2
    assert all(r.append_event_for_run.startswith(desc.run_id + "/") for r in rows)


async def test_download_fails_for_good_then_ops_restart_it(harness: Harness) -> None:
    h, f = harness, harness.fakes
    f.download_failures = 10**6
    call_id, result = await record_a_call(h, recording_retry_for_s=2)
    assert result.status == "completed" and result.recording_status == R.UPLOADING
    await until(lambda: f.recording_rows and f.recording_rows[-1].status == "failed", 30)
    assert "connection reset" in f.recording_rows[-1].error
    rec = h.client.get_workflow_handle(m.recording_workflow_id(call_id))
    desc = await rec.describe()
    assert desc.status is not None and desc.status.name == "RUNNING"  # waiting for ops
    assert desc.typed_search_attributes.get(sa.RECORDING_STATUS) == "failed"

    # Ops fix the cause and retry: the same run goes on from the segment that failed.
    f.download_failures = 0
    retry = await retry_recording(h.client, call_id, by="ops-1")
    assert retry.previous_status == "WAITING_FOR_OPS" and retry.run_id == desc.run_id
    stored = await stored_result(h, call_id)
    assert stored.key == f"conversations/{call_id}/1.ogg"
    assert [r.status for r in f.recording_rows] == ["uploading", "failed", "uploading", "stored"]
    last_input, _ = f.calls[act.DOWNLOAD_AND_STORE_RECORDING][-1]
    assert last_input.report_to_call and last_input.egress_id == "EG_1"

    with pytest.raises(RecordingRetryRefused) as refused:
        await retry_recording(h.client, call_id)
    assert refused.value.code == "already_stored"
    with pytest.raises(RecordingRetryRefused) as refused:
        await retry_recording(h.client, m.new_call_id())
    assert refused.value.code == "not_found"


async def test_much_shorter_recording_is_flagged_incomplete(harness: Harness) -> None:
    harness.fakes.download_incomplete = True
    await record_a_call(harness)
    rows = harness.fakes.recording_rows
    await until(lambda: rows and rows[-1].status == "stored", 30, "stored")
    assert rows[-1].incomplete


async def test_recording_workflow_alone(harness: Harness) -> None:
    """What ops see when they start one by hand: search attributes and a clear result."""
    call_id = m.new_call_id()
    harness.started.append(m.recording_workflow_id(call_id))
    inp = m.RecordingInput(
        call_id=call_id,
        room_name=m.room_name_for(call_id),
        egress_id="EG_x",
        location="http://egress.invalid/x.ogg",
        expected_size=1000,
        expected_duration_s=30,
        call_duration_s=31,
    )
    result = await harness.client.execute_workflow(
        RecordingWorkflow.run,
        inp,
        id=m.recording_workflow_id(call_id),
        task_queue=harness.task_queue,
    )
    assert result.size == 1000 and not result.incomplete
    # It reports to PostgreSQL itself (uploading, then stored), each report with its own id.
    assert [r.status for r in harness.fakes.recording_rows] == ["uploading", "stored"]


async def test_cancelled_while_waiting_for_ops_reports_it_and_ends_cancelled(
    harness: Harness,
) -> None:
    """What erasure does to a pipeline out of retries: it reports why and ends cancelled."""
    h, f = harness, harness.fakes
    f.download_failures = 10**6
    call_id, _ = await record_a_call(h, recording_retry_for_s=2)
    await until(lambda: f.recording_rows and f.recording_rows[-1].status == "failed", 30)
    rec = h.client.get_workflow_handle(m.recording_workflow_id(call_id))
    await rec.cancel(reason="erasure requested by admin-1")
    with pytest.raises(WorkflowFailureError) as failed:
        await rec.result()
    assert isinstance(failed.value.cause, CancelledError)
    desc = await rec.describe()
    assert desc.status == WorkflowExecutionStatus.CANCELED
    assert desc.typed_search_attributes.get(sa.RECORDING_STATUS) == "failed"
    last = f.recording_rows[-1]
    assert (last.status, last.error) == ("failed", "cancelled: erasure requested by admin-1")
    assert [r.status for r in f.recording_rows] == ["uploading", "failed", "failed"]
    assert len(f.calls[act.DOWNLOAD_AND_STORE_RECORDING]) == 1  # nothing tried once waiting


async def test_cancelled_mid_upload_waits_for_the_upload_to_stop(harness: Harness) -> None:
    """The run closes only after its upload confirmed the cancellation (erasure relies on it)."""
    h, f = harness, harness.fakes
    f.upload_gate, f.stop_reports = asyncio.Event(), "EGRESS_COMPLETE"
    call_id, _ = await record_a_call(h)
    await until(lambda: f.count(act.DOWNLOAD_AND_STORE_RECORDING) == 1, 30, "upload started")
    rec = h.client.get_workflow_handle(m.recording_workflow_id(call_id))
    await rec.cancel(reason="erasure requested by admin-1")
    with pytest.raises(WorkflowFailureError):
        await rec.result()
    assert f.uploads_cancelled == 1
    kinds = [EventType.Name(e.event_type) for e in (await rec.fetch_history()).events]
    assert "EVENT_TYPE_ACTIVITY_TASK_CANCELED" in kinds
    # The upload said it stopped before the run reported and closed.
    assert kinds.index("EVENT_TYPE_ACTIVITY_TASK_CANCELED") < kinds.index(
        "EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED"
    )
    assert (await rec.describe()).status == WorkflowExecutionStatus.CANCELED
    last = f.recording_rows[-1]
    assert (last.status, last.error) == ("failed", "cancelled: erasure requested by admin-1")
    assert len(f.calls[act.DOWNLOAD_AND_STORE_RECORDING]) == 1  # no retry after the cancel
