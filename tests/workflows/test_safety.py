"""Release 2 (issue 10/11): no interleaving freezes a call, no state is lost across an await,
late signals change nothing, segments, consent withdrawal, the staging fallback, a recording
pipeline that waits for ops, and a carry bounded by its encoded size."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities import types as act
from core import models as m
from testkit.harness import Harness, continued_as_new_input_sizes
from testkit.standins import egress_file, until
from workflows import search as sa
from workflows.call import CallWorkflow
from workflows.client import when_ready, workflow_not_ready
from workflows.recording import RecordingWorkflow

S = m.CallStatus
R = m.RecordingStatus


async def history_length(handle: WorkflowHandle) -> int:
    desc = await handle.describe()
    return desc.raw_description.workflow_execution_info.history_length


async def push_history_past(h: Harness, handle: WorkflowHandle, events: int) -> None:
    i = 0
    while await history_length(handle) < events:
        await h.say(handle, "customer", f"filler line {i}")
        i += 1


# --- no interleaving freezes a call -------------------------------------------------------
# Continue-as-new under a stream of signals runs on the dev server: there the time-skipping
# server fails workflow tasks (UnhandledCommand) and, under load, stops skipping time.


async def test_end_wins_over_continue_as_new_with_an_egress_start_in_flight(
    dev_harness: Harness,
) -> None:
    h, f = dev_harness, dev_harness.fakes
    f.egress_gate, f.stop_reports = asyncio.Event(), "EGRESS_COMPLETE"
    handle, _ = await h.start(continue_as_new_after_events=40)
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "This call is recorded.")
    await until(lambda: f.count(act.START_EGRESS) == 1, what="egress start (blocked)")
    await push_history_past(h, handle, 45)  # continue-as-new now waits for the start
    end = await handle.start_update(
        CallWorkflow.end_call,
        m.EndCallRequest("wrap up", "supervisor"),
        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
    )
    await h.customer_leaves(handle)
    await asyncio.sleep(0.5)
    f.egress_gate.set()
    ended = await asyncio.wait_for(end.result(), 60)
    result = await asyncio.wait_for(handle.result(), 60)
    assert ended.reason == "wrap up" and result.status == S.COMPLETED
    assert result.end_reason == "wrap up" and f.count(act.STOP_EGRESS) == 1
    assert (await handle.describe()).run_id == handle.first_execution_run_id  # never continued


async def test_end_wins_over_continue_as_new_with_an_update_in_flight(dev_harness: Harness) -> None:
    """A token update arrives while the history passes the continue-as-new threshold, then an
    end request. Nothing freezes: the end is accepted, the call completes `done`, the token
    request gets an answer (a grant, or `CallEnded`). Once the room exists a token needs no
    activity at all (the workflow decides the grant, the API signs it), so it is answered in
    the task that receives it."""
    h = dev_harness
    handle, _ = await h.start(continue_as_new_after_events=40, recording_consent="off")
    latest = h.client.get_workflow_handle(handle.id)  # whichever run is current
    await h.agent_joins(handle)
    token = asyncio.create_task(
        when_ready(lambda: latest.execute_update(CallWorkflow.issue_token, m.IssueTokenRequest()))
    )
    await push_history_past(h, handle, 45)
    end = await when_ready(
        lambda: latest.start_update(
            CallWorkflow.end_call,
            m.EndCallRequest("done", "supervisor"),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        ),
        for_s=60,
    )
    assert (await asyncio.wait_for(end.result(), 60)).reason == "done"
    result = await asyncio.wait_for(handle.result(), 60)  # follows continued runs
    assert result.status == S.COMPLETED and result.end_reason == "done"
    try:
        grant = await asyncio.wait_for(token, 60)
        assert grant.token_id and not grant.token
    except WorkflowUpdateFailedError as err:
        assert isinstance(err.cause, ApplicationError) and err.cause.type == "CallEnded", err.cause
    except RPCError as err:
        assert err.status == RPCStatusCode.NOT_FOUND or workflow_not_ready(err), err


async def test_egress_ended_during_the_stop_is_kept_and_nothing_waits_for_a_timeout(
    harness: Harness,
) -> None:
    """The lost update: egress_ended (COMPLETE, with its file) arrives while stop_egress runs."""
    h, f = harness, harness.fakes
    f.stop_gate, f.stop_reports = asyncio.Event(), "EGRESS_ENDING"
    handle, _ = await h.start(egress_end_timeout_s=600, continue_as_new_after_events=40)
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "This call is recorded.")
    await until(lambda: f.count(act.START_EGRESS) == 1)
    await h.customer_leaves(handle)
    await until(lambda: f.count(act.STOP_EGRESS) == 1, what="stop (blocked)")
    await handle.signal(
        CallWorkflow.egress_ended,
        m.EgressUpdate("ee-1", "EG_1", "EGRESS_COMPLETE", file=egress_file(call_id)),
    )
    await h.say(handle, "assistant", "Goodbye!")  # still the call's (it is ending)
    await asyncio.sleep(0.3)
    f.stop_gate.set()
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.recording_status == R.UPLOADING and result.line_count == 2
    assert f.count(act.GET_EGRESS) == 0  # no 600 s wait, no asking LiveKit
    await h.client.get_workflow_handle(m.recording_workflow_id(call_id)).result()
    assert f.recording_rows[-1].status == R.STORED


async def test_late_signals_while_the_recording_is_awaited_are_ignored(harness: Harness) -> None:
    h, f = harness, harness.fakes
    f.stop_reports = "EGRESS_ENDING"
    handle, _ = await h.start(egress_end_timeout_s=600)
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "This call is recorded.")
    await until(lambda: f.count(act.START_EGRESS) == 1)
    await h.customer_leaves(handle)
    await until(lambda: f.count(act.DELETE_ROOM) == 1)
    state = await h.query(handle, CallWorkflow.get_state)
    assert state.status == S.COMPLETED  # waiting for egress_ended now
    ended = (state.end_reason, state.ended_by, state.ended_at)
    await h.say(handle, "customer", "one more thing")
    await handle.signal(CallWorkflow.room_finished, m.RoomFinished("rf-late"))
    await handle.signal(CallWorkflow.silence, m.SilenceSignal("si-late", "customer", 40))
    await handle.signal(CallWorkflow.agent_alert, m.AgentAlert("al-late", "handoff_requested"))
    await handle.signal(CallWorkflow.agent_metrics, m.AgentMetrics("am-late", 0.1))
    await handle.signal(
        CallWorkflow.egress_ended,
        m.EgressUpdate("ee", "EG_1", "EGRESS_COMPLETE", file=egress_file(call_id)),
    )
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.line_count == 1
    kinds = f.kinds()
    assert "silence_alert" not in kinds and "handoff_requested" not in kinds
    assert "agent_metrics" not in kinds
    state = await handle.query(CallWorkflow.get_state)
    assert state.silence_alerts == 0
    assert (state.end_reason, state.ended_by, state.ended_at) == ended  # room_finished came late


# --- segments, consent withdrawal, the staging fallback -----------------------------------


async def test_an_egress_failing_mid_call_with_a_partial_file_is_restarted_and_both_stored(
    harness: Harness,
) -> None:
    h, f = harness, harness.fakes
    f.stop_reports = "EGRESS_COMPLETE"
    handle, _ = await h.start(egress_retry_delay_s=5)
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "This call is recorded.")
    await until(lambda: f.count(act.START_EGRESS) == 1)
    partial = egress_file(call_id, duration_s=12, size=96_000)
    await handle.signal(
        CallWorkflow.egress_updated,
        m.EgressUpdate("eu-1", "EG_1", "EGRESS_FAILED", error="pipeline crashed", file=partial),
    )
    await until(lambda: f.count(act.START_EGRESS) == 2, what="a second egress")
    keys = [s.object_key for s in f.calls[act.START_EGRESS]]
    assert keys == [f"conversations/{call_id}/1.ogg", f"conversations/{call_id}/2.ogg"]
    await h.customer_leaves(handle)
    result = await asyncio.wait_for(handle.result(), 60)
    assert [(g.n, g.egress_id) for g in result.segments] == [(1, "EG_1"), (2, "EG_2")]
    stored = await h.client.get_workflow_handle(
        m.recording_workflow_id(call_id), result_type=m.RecordingResult
    ).result()
    assert [g.key for g in stored.segments] == keys
    stored_keys = [inp.object_key for inp, _ in f.calls[act.DOWNLOAD_AND_STORE_RECORDING]]
    assert stored_keys == keys
    assert [s["n"] for s in f.recording_rows[-1].segments] == [1, 2]
    mid = [
        e.data for e in f.of_kind("recording") if e.data.get("status") == "egress_ended_mid_call"
    ]
    assert mid and mid[0]["will_restart"] and mid[0]["segment"] == 1


@pytest.mark.parametrize("consent", ["ask", "announce"])
@pytest.mark.parametrize("policy", ["delete", "keep"])
async def test_consent_withdrawn_mid_call_stops_the_egress(
    harness: Harness, consent: str, policy: str
) -> None:
    """Under `ask` a grant is withdrawn; under `announce` the customer objects to the recording
    the greeting announced: either way the egress stops and RECORDING_ON_WITHDRAWAL applies."""
    h, f = harness, harness.fakes
    f.stop_reports = "EGRESS_COMPLETE"
    handle, _ = await h.start(recording_consent=consent, recording_on_withdrawal=policy)
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    if consent == "ask":
        await handle.signal(CallWorkflow.recording_consent, m.RecordingConsentSignal("c1", True))
    else:
        await h.say(handle, "assistant", "Hello! Just so you know, this call is recorded.")
    await until(lambda: f.count(act.START_EGRESS) == 1)
    await handle.signal(CallWorkflow.recording_consent, m.RecordingConsentSignal("c2", False))
    await until(lambda: f.count(act.STOP_EGRESS) == 1, what="the egress stopped")
    await h.say(handle, "customer", "thanks")
    await h.customer_leaves(handle)
    result = await asyncio.wait_for(handle.result(), 60)
    assert f.count(act.START_EGRESS) == 1  # never restarted after the withdrawal
    consent = [e.data for e in f.of_kind("recording") if e.data.get("consent") == "withdrawn"]
    assert consent and consent[0]["recorded"] == policy
    if policy == "delete":
        assert result.recording_status == R.NONE
        assert f.deleted_keys == [f"conversations/{call_id}/1.ogg"]
        assert f.count(act.DOWNLOAD_AND_STORE_RECORDING) == 0
    else:
        assert result.recording_status == R.UPLOADING and not f.deleted_keys
        await h.client.get_workflow_handle(m.recording_workflow_id(call_id)).result()
        assert f.recording_rows[-1].status == R.STORED


async def test_a_refused_delete_of_withdrawn_segments_ends_the_call(harness: Harness) -> None:
    """StorageRefused is non-retryable: the call's FOREVER_RETRY honours it, records
    `delete_failed` and completes (it used to retry for ever and never finish)."""
    h, f = harness, harness.fakes
    f.stop_reports, f.delete_refused = "EGRESS_COMPLETE", True
    handle, _ = await h.start(recording_consent="ask", recording_on_withdrawal="delete")
    await h.agent_joins(handle)
    await handle.signal(CallWorkflow.recording_consent, m.RecordingConsentSignal("c1", True))
    await until(lambda: f.count(act.START_EGRESS) == 1)
    await handle.signal(CallWorkflow.recording_consent, m.RecordingConsentSignal("c2", False))
    await until(lambda: f.count(act.STOP_EGRESS) == 1, what="the egress stopped")
    await h.customer_leaves(handle)
    await asyncio.wait_for(handle.result(), 60)
    assert f.count(act.DELETE_RECORDING_SEGMENTS) == 1  # tried once, not again
    failed = [e.data for e in f.of_kind("recording") if e.data.get("status") == "delete_failed"]
    assert failed and "AccessDenied" in failed[0]["error"]


async def test_a_lost_egress_whose_file_is_in_staging_is_stored(harness: Harness) -> None:
    h, f = harness, harness.fakes
    f.stop_reports, f.get_reports = "EGRESS_ENDING", "UNKNOWN"
    handle, _ = await h.start(egress_end_timeout_s=60)
    call_id = handle.id.removeprefix("call-")
    f.staged[f"conversations/{call_id}/1.ogg"] = 123_456
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "This call is recorded.")
    await until(lambda: f.count(act.START_EGRESS) == 1)
    await h.customer_leaves(handle)
    result = await handle.result()  # no webhook; LiveKit forgot it
    assert result.recording_status == R.UPLOADING
    assert [q.object_key for q in f.calls[act.FIND_STAGED_RECORDING]] == [
        f"conversations/{call_id}/1.ogg"
    ]
    await h.client.get_workflow_handle(m.recording_workflow_id(call_id)).result()
    inp, _ = f.calls[act.DOWNLOAD_AND_STORE_RECORDING][0]
    assert inp.object_key == f"conversations/{call_id}/1.ogg" and inp.expected_size == 123_456


# --- the recording pipeline waits for ops -------------------------------------------------


async def recording_waiting_for_ops(h: Harness) -> tuple[str, WorkflowHandle]:
    h.fakes.download_failures, h.fakes.stop_reports = 10**6, "EGRESS_COMPLETE"
    handle, _ = await h.start(recording_retry_for_s=2)  # out of retries in real seconds
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "This call is recorded.")
    await until(lambda: h.fakes.count(act.START_EGRESS) == 1)
    await h.customer_leaves(handle)
    result = await handle.result()  # the call is over once the pipeline started
    assert result.status == S.COMPLETED and result.recording_status == R.UPLOADING
    rec = h.client.get_workflow_handle(m.recording_workflow_id(call_id))
    await until(lambda: any(r.status == R.FAILED for r in h.fakes.recording_rows), 30)
    return call_id, rec


async def test_pipeline_out_of_retries_waits_for_ops_then_a_retry_stores_it(
    harness: Harness,
) -> None:
    h, f = harness, harness.fakes
    call_id, rec = await recording_waiting_for_ops(h)
    desc = await rec.describe()
    assert desc.status is not None and desc.status.name == "RUNNING"  # waiting, not failed
    assert desc.typed_search_attributes.get(sa.RECORDING_STATUS) == R.FAILED
    assert (await rec.query(RecordingWorkflow.get_status))["waiting_for_ops"]
    f.download_failures = 0
    req = m.RecordingOpsRequest(by="ops-1", reason="storage is back")
    first, second = await asyncio.gather(
        rec.execute_update(RecordingWorkflow.retry, req),
        rec.execute_update(RecordingWorkflow.retry, req),
        return_exceptions=True,
    )
    outcomes = [first, second]
    ok = [o for o in outcomes if isinstance(o, m.RecordingOpsResult)]
    refused = [o for o in outcomes if isinstance(o, WorkflowUpdateFailedError)]
    assert len(ok) == 1 and len(refused) == 1  # two concurrent retries start one
    assert ok[0].status == R.UPLOADING
    # The status in PostgreSQL is right as soon as the retry returns.
    assert [r.status for r in f.recording_rows][-1] in (R.UPLOADING, R.STORED)
    assert any(r.status == R.UPLOADING and r.by == "ops-1" for r in f.recording_rows)
    await rec.result()
    assert f.recording_rows[-1].status == R.STORED and call_id


async def test_ops_give_up_ends_the_pipeline_failed(harness: Harness) -> None:
    h, f = harness, harness.fakes
    call_id, rec = await recording_waiting_for_ops(h)
    with pytest.raises(WorkflowUpdateFailedError):  # nobody is named: refused, nothing changes
        await rec.execute_update(RecordingWorkflow.give_up, m.RecordingOpsRequest(by=" "))
    done = await rec.execute_update(
        RecordingWorkflow.give_up, m.RecordingOpsRequest(by="ops-2", reason="file is gone")
    )
    assert done.status == R.FAILED
    result = await h.client.get_workflow_handle(
        m.recording_workflow_id(call_id), result_type=m.RecordingResult
    ).result()
    assert result.given_up and not result.segments
    last = f.recording_rows[-1]
    assert last.status == R.FAILED and "ops-2" in last.error and last.by == "ops-2"
    with pytest.raises((WorkflowUpdateFailedError, RPCError)):  # the run is over
        await rec.execute_update(RecordingWorkflow.retry, m.RecordingOpsRequest(by="late"))


# --- the carry is bounded by its encoded size ---------------------------------------------


async def test_three_thousand_long_lines_carry_a_few_kilobytes(dev_harness: Harness) -> None:
    h, f = dev_harness, dev_harness.fakes
    handle, _ = await h.start(recording_consent="off", continue_as_new_after_events=60)
    await h.agent_joins(handle)
    text = "word " * 120  # 600 characters: 3,000 of them were a 4.4 MB carry once
    for i in range(0, 3000, 50):
        lines = [m.TranscriptLine(f"L{j}", "customer", text) for j in range(i, i + 50)]
        await handle.signal(CallWorkflow.transcript_batch, m.TranscriptBatch(f"B{i}", lines))
    ended = await h.query(handle, CallWorkflow.get_state)
    assert ended.line_count == 3000
    await handle.execute_update(CallWorkflow.end_call, m.EndCallRequest("done", "supervisor"))
    result = await handle.result()
    assert result.line_count == 3000 and result.status == S.COMPLETED
    sizes = await continued_as_new_input_sizes(h, handle)
    assert sizes and max(sizes) < 8 * 1024, sizes  # whatever the call's length
    assert sorted(f.events) == list(range(1, len(f.events) + 1))  # each event once, no gap


async def test_database_down_in_a_long_call_carries_its_few_events_and_loses_none(
    dev_harness: Harness,
) -> None:
    """PostgreSQL down while the history grows: the call continues as new on time (nothing
    waits for the database), carries the events not yet written, and each is written once."""
    h, f = dev_harness, dev_harness.fakes
    f.append_failures = 5  # ~31 s of retries by the server (1 + 2 + 4 + 8 + 16 s)
    handle, _ = await h.start(recording_consent="off", continue_as_new_after_events=30)
    await h.agent_joins(handle)
    for i in range(0, 80, 10):
        lines = [m.TranscriptLine(f"D{j}", "customer", "y" * 400) for j in range(i, i + 10)]
        await handle.signal(CallWorkflow.transcript_batch, m.TranscriptBatch(f"DB{i}", lines))
        await handle.signal(CallWorkflow.silence, m.SilenceSignal(f"S{i}", "customer", 31.0))
    for _ in range(100):
        if (await h.query(handle, CallWorkflow.get_state)).runs > 1:
            break
        await asyncio.sleep(0.2)
    assert f.event_writes == 0, "the call continued as new while the database was down"
    await h.customer_leaves(handle)
    result = await handle.result()
    assert result.line_count == 80
    sizes = await continued_as_new_input_sizes(h, handle)
    assert sizes and max(sizes) < 8 * 1024, sizes
    assert sorted(f.events) == list(range(1, len(f.events) + 1))  # each event once, no gap
    alerts = [e.data["id"] for e in f.of_kind("silence_alert")]
    assert sorted(alerts) == sorted(f"S{i}" for i in range(0, 80, 10))


async def test_ledger_and_common_run_inside_the_sandbox(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Patched in this (host) process, they change nothing inside the workflow: the sandbox
    imports its own copies, so a clock or I/O placed there fails as in any workflow code."""
    import workflows.common
    import workflows.ledger

    monkeypatch.setattr(workflows.common, "iso", lambda ts: "host-copy")
    monkeypatch.setattr(workflows.ledger, "iso", lambda ts: "host-copy")
    handle, _ = await harness.start(recording_consent="off")
    await harness.customer_leaves(handle)
    await handle.result()
    assert harness.fakes.events and all(e.at != "host-copy" for e in harness.fakes.events.values())
