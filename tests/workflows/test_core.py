"""The call decides, PostgreSQL records: what an outage of the database, a deploy or a
continue-as-new can no longer do to a call (each froze a call or lost a decision before)."""

from __future__ import annotations

import asyncio

from activities import types as act
from core import models as m
from testkit.harness import AGENT, CUSTOMER, Harness
from testkit.standins import until
from workflows.call import CallWorkflow

S = m.CallStatus
R = m.RecordingStatus
DOWN = 10**6  # append failures: PostgreSQL down until a test says otherwise


async def test_issue_token_answers_while_the_database_is_down(harness: Harness) -> None:
    """The event log is a regular activity: its retries are the server's, so no workflow task
    waits on PostgreSQL and the customer's token comes at once."""
    h, f = harness, harness.fakes
    f.append_failures = DOWN
    handle, grant = await h.start()
    assert grant.token_id and f.event_writes == 0  # answered with nothing written yet
    again = await handle.execute_update(
        m.UPDATE_ISSUE_TOKEN, m.IssueTokenRequest(customer_name=CUSTOMER), result_type=m.TokenGrant
    )
    assert again.token_id and f.event_writes == 0
    history = await handle.fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert act.APPEND_CALL_EVENTS in scheduled
    f.append_failures = 0  # back: everything waiting is written
    await until(lambda: f.event_writes >= 1, 30, "the log written once the database is back")


async def test_max_duration_with_the_database_down_ends_the_call(dev_harness: Harness) -> None:
    """The call reaches its max duration while PostgreSQL is down and its history is past the
    continue-as-new threshold: it ends on time (egress stopped, room deleted), and writes its
    log once the database is back. (It used to spin: every task failed, the call never ended.)"""
    h, f = dev_harness, dev_harness.fakes
    f.append_failures = DOWN
    handle, _ = await h.start(max_duration_s=6, continue_as_new_after_events=20)
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hi, this call is recorded.")
    await until(lambda: f.count(act.START_EGRESS) == 1, what="egress start")
    for i in range(12):
        await h.say(handle, "customer", f"line {i}")
    await until(lambda: f.count(act.DELETE_ROOM) == 1, 30, "the room deleted at max duration")
    state = await h.query(handle, CallWorkflow.get_state)
    assert state.status == S.COMPLETED and state.end_reason == "max_duration"
    assert f.count(act.STOP_EGRESS) == 1 and f.event_writes == 0
    f.append_failures = 0
    await handle.signal(
        CallWorkflow.egress_ended,
        m.EgressUpdate("ee-1", "EG_1", "EGRESS_COMPLETE", file=None),
    )
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == S.COMPLETED and result.line_count == 13
    statuses = [e.data["status"] for e in f.of_kind("status")]
    assert statuses[-1] == "completed" and statuses.count("completed") == 1


async def test_a_withdrawal_in_a_runs_first_task_is_heard(harness: Harness) -> None:
    """A consent withdrawal that arrives with a run's very first task (right after a
    continue-as-new or a deploy: handlers run before `run()`) stops the egress, and the
    `delete` policy deletes what was recorded."""
    h, f = harness, harness.fakes
    call_id = m.new_call_id()
    h.started += [m.call_workflow_id(call_id), m.recording_workflow_id(call_id)]
    key = m.recording_object_key(call_id, 1)
    now = (await h.env.get_current_time()).timestamp()  # the server's clock, not the wall's
    carried = m.CallCarry(
        status=S.IN_PROGRESS, recording_status=R.RECORDING, created_at=now, room_ready=True,
        agent_joined_at=now, agent_identity=AGENT, greeted=True, consent="granted",
        egress=m.EgressState("EG_1", "EGRESS_ACTIVE", n=1, object_key=key), egress_attempts=1,
        last_heard_at=now, runs=2,
    )  # fmt: skip
    cfg = m.CallConfig(recording_consent="ask", recording_on_withdrawal="delete",
                       max_duration_s=10**9, customer_rejoin_grace_s=0.0)  # fmt: skip
    handle = await h.client.start_workflow(
        CallWorkflow.run,
        m.CallInput(call_id, CUSTOMER, cfg, carried=carried),
        id=m.call_workflow_id(call_id),
        task_queue=h.task_queue,
        start_signal=m.SIGNAL_RECORDING_CONSENT,
        start_signal_args=[m.RecordingConsentSignal("rc-withdraw", False)],
    )
    await until(lambda: f.count(act.STOP_EGRESS) == 1, what="the egress stopped")
    state = await handle.query(CallWorkflow.get_state)
    assert state.consent == "withdrawn" and state.status == S.IN_PROGRESS
    await h.customer_leaves(handle)
    await handle.signal(
        CallWorkflow.egress_ended, m.EgressUpdate("ee-1", "EG_1", "EGRESS_COMPLETE", file=None)
    )
    result = await handle.result()
    assert result.recording_status == R.NONE
    assert f.deleted_keys == [key] and f.count(act.DOWNLOAD_AND_STORE_RECORDING) == 0
