"""Phone calls in CallWorkflow on the time-skipping test server (workflows/phone.py): every
dial outcome, an answered call that runs as usual, an inbound call started by the agent's job
whose webhook is lost (and by both: one call), a caller who hangs up while it rings, the cold
transfer, and a web call that cannot be transferred."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities import types as act
from core import models as m
from testkit.harness import Harness
from testkit.standins import until
from workflows import client as wclient
from workflows.call import CallWorkflow

S = m.CallStatus
K = m.EventKind
TO = "+15551230001"
ROOM = "phone_0001_AbCdEfGh1234"


def statuses(h: Harness) -> list[str]:
    return [e.data["status"] for e in h.fakes.of_kind(K.STATUS) if "dial" not in e.data]


@pytest.mark.parametrize("outcome", ["busy", "no_answer", "rejected", "unavailable", "dial_failed"])
async def test_a_dial_that_is_not_answered_ends_the_call_with_its_outcome(
    harness: Harness, outcome: str
) -> None:
    h, f = harness, harness.fakes
    f.dial_outcome = outcome
    handle = await h.start_phone(dial=m.DialRequest(TO, reason="test drive follow-up"))
    result = await handle.result()
    assert result.status == S.COMPLETED and result.end_reason == outcome
    assert result.recording_status == m.RecordingStatus.NONE
    dial = f.calls[act.DIAL_OUTBOUND]
    assert len(dial) == 1, "an outcome is never an activity retry"
    call_id = handle.id.removeprefix("call-")
    assert dial[0].to == TO and dial[0].identity == m.customer_identity(call_id)
    assert dial[0].room_name == m.room_name_for(call_id)
    assert f.count(act.CREATE_ROOM) == 1 and f.count(act.DELETE_ROOM) == 1
    assert f.count(act.START_EGRESS) == 0
    assert not f.of_kind(K.HANDOFF_REQUESTED)
    assert S.DIALING in statuses(h) and S.IN_PROGRESS not in statuses(h)
    dialed = [e.data for e in f.of_kind(K.STATUS) if e.data.get("dial")]
    assert [d["dial"] for d in dialed] == [outcome]


async def test_livekit_unreachable_is_retried_once_then_dial_failed(harness: Harness) -> None:
    h, f = harness, harness.fakes
    f.dial_error = act.ERR_LIVEKIT_UNAVAILABLE
    handle = await h.start_phone(dial=m.DialRequest(TO))
    result = await handle.result()
    assert result.end_reason == "dial_failed" and f.count(act.DIAL_OUTBOUND) == 2


async def test_an_answered_call_runs_as_usual_and_a_hang_up_ends_it(harness: Harness) -> None:
    h, f = harness, harness.fakes
    handle = await h.start_phone(dial=m.DialRequest(TO), customer_rejoin_grace_s=30.0)
    await until(lambda: f.count(act.DIAL_OUTBOUND) == 1, what="dial")
    await h.agent_joins(handle)
    await h.say(
        handle, "assistant", "Hi, this is Sarah from CME Auto Sales. This call is recorded."
    )
    await until(lambda: f.count(act.START_EGRESS) == 1, what="egress start")
    state = await handle.query(CallWorkflow.get_state)
    assert state.status == S.IN_PROGRESS
    assert (state.channel, state.direction, state.phone) == ("phone", "outbound", TO)
    # A phone that hangs up is gone: no rejoin grace, whatever the web calls' setting.
    await h.customer_leaves(handle)
    result = await handle.result()
    assert result.end_reason == "customer_left" and f.count(act.STOP_EGRESS) == 1
    assert statuses(h)[:3] == [S.WAITING_FOR_AGENT, S.DIALING, S.WAITING_FOR_AGENT]
    row = f.call_rows[-1]
    assert (row.channel, row.direction, row.phone) == ("phone", "outbound", TO)


async def test_inbound_call_started_by_the_agent_whose_webhook_is_lost(harness: Harness) -> None:
    h, f = harness, harness.fakes
    handle = await h.start_phone(room_name=ROOM)
    assert handle.id == m.call_workflow_id(m.phone_call_id(ROOM))
    await h.agent_joins(handle)  # the caller's participant_joined never arrives
    await h.say(handle, "assistant", "CME Auto Sales, Sarah speaking. This call is recorded.")
    await h.say(handle, "customer", "Hi, do you have the Camry in blue?")
    await until(lambda: f.count(act.START_EGRESS) == 1, what="egress start")
    assert f.calls[act.START_EGRESS][0].room_name == ROOM
    assert f.count(act.CREATE_ROOM) == 0, "LiveKit made the room (the dispatch rule)"
    state = await handle.query(CallWorkflow.get_state)
    assert (state.status, state.room_name, state.channel, state.direction) == (
        S.IN_PROGRESS, ROOM, "phone", "inbound")  # fmt: skip
    await handle.signal(CallWorkflow.participant_left,
                        m.ParticipantLeft(h.sid("pl"), "sip_ab12", "customer"))  # fmt: skip
    result = await handle.result()
    assert result.end_reason == "customer_left"
    assert f.calls[act.DELETE_ROOM][-1].room_name == ROOM


async def test_agent_and_webhook_start_one_call_and_an_ended_one_never_again(
    harness: Harness,
) -> None:
    h = harness
    room = "phone_0002_ZyXwVu987654"
    call_id = m.phone_call_id(room)
    h.started += [m.call_workflow_id(call_id), m.recording_workflow_id(call_id)]
    cfg = m.CallConfig(livekit_url="ws://livekit.test")
    # The webhook first (signal-with-start), then the agent's job: one run, both delivered.
    joined = m.ParticipantJoined(h.sid("pj"), "sip_ab12", "customer")
    got = await wclient.start_inbound_phone_call(h.client, room, cfg, task_queue=h.task_queue,
                                                 signal=m.SIGNAL_PARTICIPANT_JOINED, arg=joined)  # fmt: skip
    handle = h.client.get_workflow_handle(m.call_workflow_id(call_id))
    first_run = (await handle.describe()).run_id
    again = await wclient.start_inbound_phone_call(h.client, room, cfg, task_queue=h.task_queue)
    assert got == again == call_id
    assert (await handle.describe()).run_id == first_run
    await h.agent_joins(handle)
    state = await handle.query(CallWorkflow.get_state)
    assert [p.kind for p in state.participants] == ["customer", "agent"]
    await handle.signal(CallWorkflow.participant_left,
                        m.ParticipantLeft(h.sid("pl"), "sip_ab12", "customer"))  # fmt: skip
    await handle.result()
    with pytest.raises(WorkflowAlreadyStartedError):  # a late webhook starts nothing
        await wclient.start_inbound_phone_call(h.client, room, cfg, task_queue=h.task_queue,
                                               signal=m.SIGNAL_PARTICIPANT_JOINED, arg=joined)  # fmt: skip
    assert (await handle.describe()).run_id == first_run
    assert (await handle.describe()).run_id == first_run


async def test_a_caller_who_hangs_up_while_it_rings_ends_the_call(harness: Harness) -> None:
    h, f = harness, harness.fakes
    handle = await h.start_phone(room_name="phone_0003_QwErTy123456")
    await handle.signal(CallWorkflow.participant_joined,
                        m.ParticipantJoined(h.sid("pj"), "sip_ab12", "customer"))  # fmt: skip
    await handle.signal(CallWorkflow.participant_left,
                        m.ParticipantLeft(h.sid("pl"), "sip_ab12", "customer"))  # fmt: skip
    result = await handle.result()
    assert (result.status, result.end_reason) == (S.COMPLETED, "customer_left")
    assert f.count(act.START_EGRESS) == 0 and f.count(act.DISPATCH_AGENT) == 0


async def test_cold_transfer_ends_the_call_transferred(harness: Harness) -> None:
    h, f = harness, harness.fakes
    handle = await h.start_phone(room_name="phone_0004_TrAnSfEr1234")
    await handle.signal(CallWorkflow.participant_joined,
                        m.ParticipantJoined(h.sid("pj"), "sip_ab12", "customer"))  # fmt: skip
    await h.agent_joins(handle)
    await until(lambda: any(e.data.get("status") == S.IN_PROGRESS
                            for e in f.of_kind(K.STATUS)), what="in progress")  # fmt: skip
    f.transfer_failure = "busy (resource_exhausted)"
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(m.UPDATE_TRANSFER, m.TransferRequest("tel:+15559990000"),
                                    result_type=m.EndCallResult)  # fmt: skip
    state = await handle.query(CallWorkflow.get_state)
    assert state.status == S.IN_PROGRESS, "a failed transfer leaves the caller with Sarah"
    f.transfer_failure = ""
    done = await handle.execute_update(m.UPDATE_TRANSFER,
                                       m.TransferRequest("tel:+15559990000", by="sup-1"),
                                       result_type=m.EndCallResult)  # fmt: skip
    assert done.reason == "transferred"
    # The caller leaves because of the REFER: it must not turn the end into customer_left.
    await handle.signal(CallWorkflow.participant_left,
                        m.ParticipantLeft(h.sid("pl"), "sip_ab12", "customer"))  # fmt: skip
    result = await handle.result()
    assert (result.end_reason, f.calls[act.TRANSFER_CALL][-1].identity) == (
        "transferred", "sip_ab12")  # fmt: skip
    actions = [e.data for e in f.of_kind(K.SUPERVISOR_ACTION)]
    assert [a["action"] for a in actions] == ["transfer", "transfer"]
    assert actions[-1]["by"] == "sup-1"


async def test_a_web_call_cannot_be_transferred(harness: Harness) -> None:
    h = harness
    handle, _ = await h.start()
    await h.agent_joins(handle)
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(m.UPDATE_TRANSFER, m.TransferRequest("tel:+15559990000"),
                                    result_type=m.EndCallResult)  # fmt: skip
    assert err.value.cause.type == m.ERR_NOT_PHONE  # type: ignore[union-attr]


async def test_a_callbacks_call_reports_its_dial_outcome_to_the_callback(harness: Harness) -> None:
    """The hook CallbackWorkflow waits on: the call signals `dial_outcome` to `report_to`
    (the callback here runs on a queue nobody polls: its history shows what arrived)."""
    import core.callbacks as cb
    from workflows.callback import CallbackWorkflow

    h, f = harness, harness.fakes
    f.dial_outcome = "busy"
    req = cb.CallbackRequest("cb_hook", TO, 0.0, "America/Chicago")
    callback = await h.client.start_workflow(CallbackWorkflow.run, req,
                                             id=cb.callback_workflow_id("cb_hook"),
                                             task_queue="nobody-polls-this")  # fmt: skip
    try:
        handle = await h.start_phone(dial=m.DialRequest(TO, report_to=callback.id))
        result = await handle.result()
        assert result.end_reason == "busy"
        signals = [e.workflow_execution_signaled_event_attributes async for e in callback.fetch_history_events()
                   if e.HasField("workflow_execution_signaled_event_attributes")]  # fmt: skip
        assert [s.signal_name for s in signals] == [cb.SIGNAL_DIAL_OUTCOME]
        outcome = await h.client.data_converter.decode(signals[0].input.payloads, [cb.DialOutcome])
        assert outcome == [cb.DialOutcome(handle.id.removeprefix("call-"), "busy", 486)]
    finally:
        await callback.terminate("test over")


async def test_a_callbacks_call_whose_callback_is_gone_ends_as_usual(harness: Harness) -> None:
    h, f = harness, harness.fakes
    f.dial_outcome = "no_answer"
    handle = await h.start_phone(dial=m.DialRequest(TO, report_to="callback-gone"))
    assert (await handle.result()).end_reason == "no_answer"
