"""RecordingWorkflow: retries with backoff, gives up after its window, and ops restart it."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError

from activities import types as act
from core import models as m
from tests.workflows.conftest import Harness
from tests.workflows.standins import until
from workflows import search as sa
from workflows.call import CallWorkflow
from workflows.ops import RecordingRetryRefused, retry_recording
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


async def test_download_fails_five_times_then_succeeds(harness: Harness) -> None:
    harness.fakes.download_failures = 5
    call_id, result = await record_a_call(harness)
    assert result.recording_status == R.STORED
    attempts = harness.fakes.calls[act.DOWNLOAD_AND_STORE_RECORDING]
    assert len(attempts) == 6
    rec = harness.client.get_workflow_handle(m.recording_workflow_id(call_id))
    desc = await rec.describe()
    assert desc.typed_search_attributes.get(sa.RECORDING_STATUS) == "stored"
    assert harness.fakes.recording_rows[-1].status == "stored"
    # The call's own log says stored, once.
    stored = [e for e in harness.fakes.of_kind("recording") if e.data["status"] == "stored"]
    assert len(stored) == 1 and stored[0].data["sha256"] == "ab" * 32


async def test_download_fails_for_good_then_ops_restart_it(harness: Harness) -> None:
    h, f = harness, harness.fakes
    f.download_failures = 10**6
    call_id, result = await record_a_call(h, recording_retry_for_s=3600)
    assert result.status == "completed" and result.recording_status == R.FAILED
    call = h.client.get_workflow_handle(m.call_workflow_id(call_id))
    assert "connection reset" in (await call.query(CallWorkflow.get_state)).recording_error
    failed_attempts = f.count(act.DOWNLOAD_AND_STORE_RECORDING)
    assert failed_attempts > 5  # it kept trying, with backoff, for the hour
    rec = h.client.get_workflow_handle(m.recording_workflow_id(call_id))
    with pytest.raises(WorkflowFailureError):
        await rec.result()
    assert f.recording_rows[-1].status == "failed"
    assert (await rec.describe()).typed_search_attributes.get(sa.RECORDING_STATUS) == "failed"

    # Ops fix the cause and replay the pipeline: a new run of the same id, same input.
    f.download_failures = 0
    retry = await retry_recording(h.client, call_id)
    assert retry.previous_status == "FAILED" and retry.run_id != retry.previous_run_id
    stored = await h.client.get_workflow_handle_for(
        RecordingWorkflow.run, retry.workflow_id, run_id=retry.run_id
    ).result()
    assert stored.key == f"conversations/{call_id}.ogg"
    row = f.recording_rows[-1]
    assert row.status == "stored" and row.append_event_for_run == retry.run_id
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
    _, result = await record_a_call(harness)
    assert result.recording_status == R.STORED
    assert result.recording and result.recording.incomplete
    assert len(harness.fakes.of_kind("recording_incomplete")) == 1


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
    assert harness.fakes.recording_rows[-1].append_event_for_run == ""  # the parent reports
