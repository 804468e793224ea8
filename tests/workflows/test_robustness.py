"""A call never fails, and never loses events silently, because LiveKit or PostgreSQL failed."""

from __future__ import annotations

from temporalio.client import WorkflowHandle

from activities import types as act
from core import models as m
from testkit.harness import Harness
from testkit.standins import until
from workflows.call import CallWorkflow
from workflows.recording import RecordingWorkflow

S = m.CallStatus
R = m.RecordingStatus


async def recorded_call_whose_egress_end_is_missed(h: Harness) -> WorkflowHandle:
    """A recorded call that the customer leaves; no `egress_ended` webhook ever comes."""
    handle, _ = await h.start(egress_end_timeout_s=600)
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hello, this call is recorded.")
    await until(lambda: h.fakes.count(act.START_EGRESS) == 1, what="egress start")
    await h.customer_leaves(handle)
    return handle


async def test_livekit_down_across_the_hang_up_stores_the_file_found_in_staging(
    harness: Harness,
) -> None:
    h, f = harness, harness.fakes
    f.get_failures = 10_000
    handle = await recorded_call_whose_egress_end_is_missed(h)
    call_id = handle.id.removeprefix("call-")
    key = m.recording_object_key(call_id, 1)
    f.staged[key] = 4321  # Egress got the file there; only LiveKit's API is down
    result = await handle.result()
    assert result.status == S.COMPLETED and result.end_reason == "customer_left"
    asks = f.of_kind("recording")
    assert [e.data["status"] for e in asks].count("egress_poll_failed") == 6  # bounded
    assert f.count(act.GET_EGRESS) == 6 * 5  # each ask retried by QUICK_RETRY, then given up
    assert [q.object_key for q in f.calls[act.FIND_STAGED_RECORDING]] == [key]
    assert "found_in_staging" in [e.data["status"] for e in asks]
    pipeline = h.client.get_workflow_handle_for(
        RecordingWorkflow.run, m.recording_workflow_id(call_id)
    )
    stored = await pipeline.result()
    assert not stored.given_up and stored.key == key
    [(inp, _)] = f.calls[act.DOWNLOAD_AND_STORE_RECORDING]
    assert inp.object_key == key and inp.expected_size == 4321


async def test_livekit_down_and_the_file_not_in_staging_leaves_a_pipeline_waiting_for_ops(
    harness: Harness,
) -> None:
    h, f = harness, harness.fakes
    f.get_failures = 10_000
    handle = await recorded_call_whose_egress_end_is_missed(h)
    call_id = handle.id.removeprefix("call-")
    result = await handle.result()
    assert result.status == S.COMPLETED
    state = await handle.query(CallWorkflow.get_state)
    assert "unreachable" in state.recording_error  # the record says why
    pipeline = h.client.get_workflow_handle_for(
        RecordingWorkflow.run, m.recording_workflow_id(call_id)
    )
    await until(lambda: any(r.status == R.FAILED for r in f.recording_rows), 30)
    status = await pipeline.query(RecordingWorkflow.get_status)
    assert status["waiting_for_ops"] and "404" in status["error"]
    [(inp, _)] = f.calls[act.DOWNLOAD_AND_STORE_RECORDING]
    assert inp.location == "" and inp.object_key == m.recording_object_key(call_id, 1)
    # The file turns up (Egress finished its upload late): ops retry, and it is stored.
    f.staged[inp.object_key] = 999
    await pipeline.execute_update(
        RecordingWorkflow.retry, m.RecordingOpsRequest(by="ops-1", reason="file is there now")
    )
    stored = await pipeline.result()
    assert not stored.given_up and stored.key == inp.object_key
    assert f.recording_rows[-1].status == R.STORED


async def test_livekit_unreachable_once_is_asked_again_and_the_recording_stored(
    harness: Harness,
) -> None:
    h, f = harness, harness.fakes
    f.get_failures = 5  # the first ask's every attempt
    handle = await recorded_call_whose_egress_end_is_missed(h)
    result = await handle.result()
    assert (
        result.status == S.COMPLETED and result.recording_status == R.UPLOADING
    )  # stored next, by the pipeline
    assert f.count(act.GET_EGRESS) == 6
    state = await handle.query(CallWorkflow.get_state)
    assert state.recording_error == ""
    statuses = [e.data["status"] for e in f.of_kind("recording")]
    assert statuses.count("egress_poll_failed") == 1 and "egress_lost" not in statuses


async def test_database_down_for_a_while_loses_and_doubles_no_event(harness: Harness) -> None:
    h, f = harness, harness.fakes
    f.append_failures = 3  # the activity is retried by the server: 1 + 2 + 4 s
    handle, _ = await h.start()
    await h.agent_joins(handle)
    for i in range(5):
        await h.say(handle, "customer" if i % 2 else "assistant", f"line {i}")
    await h.customer_leaves(handle)
    result = await handle.result()
    assert result.status == S.COMPLETED and result.line_count == 5
    assert f.append_attempts > f.append_failures
    written = [seq for batch in f.written_batches for seq in batch]
    assert written == list(range(1, len(written) + 1)), "each event once, in order"
    assert f.call_rows[-1].row_version == len(written) == max(f.events)


async def test_a_batch_rejected_for_good_is_dropped_and_noted_and_later_events_written(
    harness: Harness,
) -> None:
    h, f = harness, harness.fakes
    f.append_rejects = frozenset({2})
    handle, _ = await h.start()
    await h.agent_joins(handle)
    await until(lambda: f.append_attempts >= 2, what="the rejected batch")
    for i in range(3):
        await h.say(handle, "assistant", f"after {i}")
    await h.customer_leaves(handle)
    result = await handle.result()
    assert result.status == S.COMPLETED and result.line_count == 3

    state = await handle.query(CallWorkflow.get_state)
    missing = sorted(set(range(1, state.last_seq + 1)) - set(f.events))
    assert missing, "the rejected batch is not in the database"
    assert "can never be written" in state.event_log_error
    [note] = [e for e in f.of_kind("status") if "events_rejected" in e.data]
    assert note.data["events_rejected"] == str(len(missing))
    assert "can never be written" in note.data["error"]
    assert note.seq > max(missing)  # the events after the refused batch are written
    assert f.call_rows[-1].status == "completed" and f.call_rows[-1].row_version == state.last_seq


async def test_a_customer_who_never_joins_ends_the_call_after_the_timeout(
    harness: Harness,
) -> None:
    h, f = harness, harness.fakes
    handle, _ = await h.start(customer_join_timeout_s=120, silence_alert_s=10_000)
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hello, this call is recorded.")
    await h.env.sleep(110)
    state = await h.query(handle, CallWorkflow.get_state)
    assert state.status == S.IN_PROGRESS and state.end_reason == ""
    result = await handle.result()
    assert result.status == S.COMPLETED and result.end_reason == "customer_never_joined"
    state = await h.query(handle, CallWorkflow.get_state)
    assert state.ended_by == "system"
    assert f.count(act.DELETE_ROOM) == 1 and f.count(act.STOP_EGRESS) == 1
    assert f.call_rows[-1].status == "completed"
    assert f.call_rows[-1].end_reason == "customer_never_joined"


async def test_a_customer_who_joins_keeps_the_call_past_the_timeout(harness: Harness) -> None:
    h = harness
    handle, _ = await h.start(customer_join_timeout_s=120, silence_alert_s=10_000)
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    joined = m.ParticipantJoined(h.sid("pj"), m.customer_identity(call_id), "customer")
    await handle.signal(CallWorkflow.participant_joined, joined)
    await h.env.sleep(300)
    state = await h.query(handle, CallWorkflow.get_state)
    assert state.status == S.IN_PROGRESS and state.end_reason == ""
    await h.customer_leaves(handle)
    result = await handle.result()
    assert result.status == S.COMPLETED and result.end_reason == "customer_left"


async def test_a_customer_line_counts_as_joined(harness: Harness) -> None:
    h = harness
    handle, _ = await h.start(customer_join_timeout_s=120, silence_alert_s=10_000)
    await h.agent_joins(handle)
    await h.say(handle, "customer", "Hello?")
    await h.env.sleep(300)
    state = await h.query(handle, CallWorkflow.get_state)
    assert state.status == S.IN_PROGRESS and state.end_reason == ""
