"""CallWorkflow's lifecycle on the time-skipping test server, with stand-in activities."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError

from activities import types as act
from core import models as m
from testkit.harness import AGENT, CUSTOMER, Harness
from testkit.standins import egress_file, until
from workflows import search as sa
from workflows.call import CallWorkflow

S = m.CallStatus
R = m.RecordingStatus


def assert_contiguous(h: Harness) -> None:
    seqs = sorted(h.fakes.events)
    assert seqs == list(range(1, len(seqs) + 1)), "event seqs must be 1..N without gaps"


async def test_happy_path_end_to_end(harness: Harness) -> None:
    h, f = harness, harness.fakes
    handle, grant = await h.start()
    call_id = handle.id.removeprefix("call-")
    assert grant.call_id == call_id
    assert grant.room_name == f"call-{call_id}"
    assert grant.participant_identity == f"customer-{call_id}"
    assert grant.token_id and grant.livekit_url == "ws://livekit.test" and grant.expires_at
    assert grant.token == "" and grant.name == CUSTOMER  # signed by the API, never in history
    room = f.calls[act.CREATE_ROOM][0]
    assert room.agent_name == "sarah-cme" and room.room_name == grant.room_name

    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hi, I'm Sarah from CME Auto Sales. This call is recorded.")
    await until(lambda: f.count(act.START_EGRESS) == 1, what="egress start")
    start = f.calls[act.START_EGRESS][0]
    assert start.filepath == start.object_key == f"conversations/{call_id}/1.ogg"
    await h.env.sleep(5)
    await h.say(handle, "customer", "I'd like to test drive a Camry.")
    await h.say(handle, "assistant", "Sure, what day suits you?")

    state = await handle.query(CallWorkflow.get_state)
    assert state.status == S.IN_PROGRESS and state.recording_status == R.RECORDING
    assert state.agent_identity == AGENT and state.customer_name == CUSTOMER
    assert state.egress and state.egress.egress_id == "EG_1"
    assert [e.speaker for e in state.last_lines] == ["assistant", "customer", "assistant"]

    await h.env.sleep(20)
    await h.customer_leaves(handle)
    await until(lambda: f.count(act.STOP_EGRESS) == 1, what="egress stop")
    await handle.signal(
        CallWorkflow.egress_ended,
        m.EgressUpdate(h.sid("ee"), "EG_1", "EGRESS_COMPLETE", file=egress_file(call_id, 25)),
    )
    result = await handle.result()

    # The call ends once its recording pipeline has started; the pipeline reports the rest.
    assert result.status == S.COMPLETED and result.end_reason == "customer_left"
    assert result.recording_status == R.UPLOADING and result.line_count == 3
    assert [(g.n, g.object_key) for g in result.segments] == [(1, f"conversations/{call_id}/1.ogg")]
    stored = await h.client.get_workflow_handle(
        m.recording_workflow_id(call_id), result_type=m.RecordingResult
    ).result()
    assert stored.key == f"conversations/{call_id}/1.ogg" and not stored.given_up
    assert [g.key for g in stored.segments] == [stored.key]
    assert f.count(act.DELETE_ROOM) == 1 and f.count(act.GET_EGRESS) == 0
    rec_in, _ = f.calls[act.DOWNLOAD_AND_STORE_RECORDING][0]
    assert rec_in.egress_id == "EG_1" and rec_in.expected_duration_s == 25
    assert rec_in.object_key == stored.key
    assert rec_in.call_duration_s >= 25  # recorded from the greeting to the hang-up
    assert [r.status for r in f.recording_rows] == ["uploading", "stored"]
    assert f.recording_rows[-1].segments[0]["key"] == stored.key

    assert_contiguous(h)
    statuses = [e.data["status"] for e in f.of_kind("status")]
    assert statuses == ["waiting_for_agent", "in_progress", "ending", "completed"]
    recording = [e.data["status"] for e in f.of_kind("recording")]
    assert recording == ["recording", "stopping", "uploading"]
    # What was said is the API's to store (the agent sends it there): never the workflow's.
    assert f.of_kind("final_transcript") == [] and f.of_kind("keyword_alert") == []
    final_row = f.call_rows[-1]
    assert final_row.status == "completed" and final_row.recording_status == "uploading"
    assert final_row.row_version == max(f.events)  # the row's version: the call's last event
    assert len({e.id for e in f.events.values()}) == len(f.events)  # ids unique in the call

    desc = await handle.describe()
    attrs = desc.typed_search_attributes
    assert attrs.get(sa.CALL_STATUS) == "completed"
    assert attrs.get(sa.RECORDING_STATUS) == "uploading"  # the pipeline's own says stored
    assert attrs.get(sa.ROOM_NAME) == grant.room_name
    assert attrs.get(sa.CUSTOMER_NAME) == CUSTOMER
    assert attrs.get(sa.SILENCE_ALERTS) == 0

    page = await handle.query(CallWorkflow.get_transcript, 0)
    assert [ln.text for ln in page.lines][1] == "I'd like to test drive a Camry."
    later = await handle.query(CallWorkflow.get_transcript, page.lines[0].seq)
    assert len(later.lines) == 2 and not later.more


async def test_agent_never_joins(harness: Harness) -> None:
    handle, _ = await harness.start(agent_join_timeout_s=60)
    result = await handle.result()
    assert result.status == S.NO_AGENT and result.end_reason == "no_agent_in_time"
    assert harness.fakes.count(act.DELETE_ROOM) == 1
    assert harness.fakes.count(act.START_EGRESS) == 0
    assert harness.fakes.call_rows[-1].status == "no_agent"
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(sa.CALL_STATUS) == "no_agent"


async def test_customer_hangs_up_before_the_agent(harness: Harness) -> None:
    handle, _ = await harness.start()
    await harness.customer_leaves(handle)
    result = await handle.result()
    assert result.status == S.COMPLETED and result.end_reason == "customer_left"
    assert result.recording_status == R.NONE
    assert harness.fakes.count(act.DELETE_ROOM) == 1
    # A late agent changes nothing.
    state = await handle.query(CallWorkflow.get_state)
    assert state.agent_joined_at == ""


async def test_supervisor_ends_the_call(harness: Harness) -> None:
    h, f = harness, harness.fakes
    f.stop_reports = "EGRESS_COMPLETE"
    handle, _ = await h.start()
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hello, this call is recorded.")
    await until(lambda: f.count(act.START_EGRESS) == 1)
    ended = await handle.execute_update(
        CallWorkflow.end_call, m.EndCallRequest("abusive caller", by="supervisor")
    )
    assert ended.status in ("ending", "completed") and ended.reason == "abusive caller"
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(CallWorkflow.end_call, m.EndCallRequest("again"))
    result = await handle.result()
    assert result.status == S.COMPLETED and result.end_reason == "abusive caller"
    assert result.recording_status == R.UPLOADING  # stop answered COMPLETE: no webhook wait
    call_id = handle.id.removeprefix("call-")
    await h.client.get_workflow_handle(m.recording_workflow_id(call_id)).result()
    assert f.recording_rows[-1].status == R.STORED
    actions = f.of_kind("supervisor_action")
    assert len(actions) == 1 and actions[0].data["reason"] == "abusive caller"
    assert f.count(act.GET_EGRESS) == 0


async def test_end_call_validation(harness: Harness) -> None:
    handle, _ = await harness.start()
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(CallWorkflow.end_call, m.EndCallRequest("   "))
    state = await handle.query(CallWorkflow.get_state)
    assert state.status == S.WAITING_FOR_AGENT  # a refused update touched nothing


async def test_agent_leaving_a_call_nobody_is_expected_in_ends_it(harness: Harness) -> None:
    """No token was issued and no customer is in: there is nobody to heal the call for (a
    customer who holds a token is expected: test_healing)."""
    handle = await harness.start_without_token(recording_consent="off")
    await harness.agent_joins(handle)
    await handle.signal(
        CallWorkflow.participant_left, m.ParticipantLeft(harness.sid("pl"), AGENT, "agent")
    )
    result = await handle.result()
    assert result.status == S.COMPLETED and result.end_reason == "agent_left"
    assert harness.fakes.count(act.START_EGRESS) == 0


async def test_max_duration_reached(harness: Harness) -> None:
    h, f = harness, harness.fakes
    f.stop_reports = "EGRESS_COMPLETE"
    handle, _ = await h.start(max_duration_s=3600)
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hello, this call is recorded.")
    await h.env.sleep(3601)  # to the max-duration timer
    result = await handle.result()
    assert result.status == S.COMPLETED and result.end_reason == "max_duration"
    state = await handle.query(CallWorkflow.get_state)
    assert state.ended_by == "system"


async def test_silence_alert_after_quiet(harness: Harness) -> None:
    h, f = harness, harness.fakes
    handle, _ = await h.start(recording_consent="off", silence_alert_s=30)
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hello?")
    await h.env.sleep(29)
    assert (await handle.query(CallWorkflow.get_state)).silence_alerts == 0
    await h.env.sleep(2)
    state = await handle.query(CallWorkflow.get_state)
    assert state.silence_alerts == 1
    await h.env.sleep(120)  # still quiet: one alert per quiet period, not one per 30 s
    assert (await handle.query(CallWorkflow.get_state)).silence_alerts == 1
    await h.say(handle, "customer", "Sorry, I'm back.")
    await h.env.sleep(31)
    assert (await handle.query(CallWorkflow.get_state)).silence_alerts == 2
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(sa.SILENCE_ALERTS) == 2
    # (The log is written by an activity after the task that decided: wait for it.)
    await until(lambda: [a.data["source"] for a in f.of_kind("silence_alert")]
                == ["workflow", "workflow"], what="both alerts written")  # fmt: skip


async def test_no_silence_alert_while_lines_keep_coming(harness: Harness) -> None:
    h = harness
    handle, _ = await h.start(recording_consent="off", silence_alert_s=30)
    await h.agent_joins(handle)
    for i in range(24):  # four minutes, a line every 10 s
        await h.say(handle, "customer" if i % 2 else "assistant", f"line {i}")
        await h.env.sleep(10)
    state = await handle.query(CallWorkflow.get_state)
    assert state.silence_alerts == 0 and state.line_count == 24
    # The check moved with the lines inside their own tasks: it never fired while they came
    # (a fire costs a workflow task of its own).
    history = await handle.fetch_history()
    assert not [e for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED]
    # ...and still alerts 30 s after the last line (said 10 s ago).
    await h.env.sleep(19)
    assert (await handle.query(CallWorkflow.get_state)).silence_alerts == 0
    await h.env.sleep(2)
    assert (await handle.query(CallWorkflow.get_state)).silence_alerts == 1


async def test_agent_reported_silence_counts_once_per_quiet_period(harness: Harness) -> None:
    h = harness
    handle, _ = await h.start(recording_consent="off", silence_alert_s=30)
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hello?")
    await h.env.sleep(10)
    sig = m.SilenceSignal(h.sid("si"), "customer", 10.0)
    await handle.signal(CallWorkflow.silence, sig)
    await handle.signal(CallWorkflow.silence, sig)  # duplicate
    await h.env.sleep(40)
    state = await handle.query(CallWorkflow.get_state)
    assert state.silence_alerts == 1  # the agent's; the workflow's timer does not double it
    await until(lambda: [a.data["source"] for a in h.fakes.of_kind("silence_alert")] == ["agent"],
                what="the agent's alert written")  # fmt: skip


async def test_silent_line_is_hung_up_with_its_reason(harness: Harness) -> None:
    """A customer who says nothing for `silent_hangup_s` is hung up (`silent`, by the system);
    the agent talking into the silence does not keep the line open, a customer line does."""
    h, f = harness, harness.fakes
    handle, _ = await h.start(recording_consent="off", silence_alert_s=30, silent_hangup_s=300)
    await h.agent_joins(handle)
    await h.env.sleep(200)
    await h.say(handle, "customer", "Hello?")  # the clock starts again here
    for _ in range(5):  # the agent keeps asking; that is no sign of a customer
        await h.env.sleep(55)
        await h.say(handle, "assistant", "Are you still there?")
    await h.env.sleep(20)  # 295 s after the customer's line
    state = await handle.query(CallWorkflow.get_state)
    assert state.status == S.IN_PROGRESS and not state.end_reason
    await h.env.sleep(10)
    result = await handle.result()
    assert result.status == S.COMPLETED and result.end_reason == "silent"
    assert (await handle.query(CallWorkflow.get_state)).ended_by == "system"
    await until(lambda: any(a.data.get("speaker") == "customer" and a.data.get("quiet_s") == 300
                            for a in f.of_kind("silence_alert")), what="the hang-up's alert")  # fmt: skip
    await until(lambda: [e.data.get("reason") for e in f.of_kind("status")
                         if e.data.get("status") == S.ENDING] == ["silent"], what="why it ended")  # fmt: skip


async def test_one_quiet_timer_serves_silence_the_silent_line_and_the_room(
    harness: Harness,
) -> None:
    """The call's quiet periods share one durable timer: while the call talks only the
    shortest (the silence check) moves, the room check and the silent line start no timer of
    their own; once quiet, each still acts at its own time: the alert at 30 s, the room asked
    at 120 s, the line hung up at 300 s."""
    h, f = harness, harness.fakes
    handle, _ = await h.start(recording_consent="off", silence_alert_s=30, silent_hangup_s=300,
                              room_check_after_s=120)  # fmt: skip
    await h.agent_joins(handle)
    for i in range(30):  # five minutes, a line every 10 s
        await h.say(handle, "customer" if i % 2 else "assistant", f"line {i}")
        await h.env.sleep(10)
    history = await handle.fetch_history()
    timers = Counter(
        e.user_metadata.summary.data.decode()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED and e.HasField("user_metadata")
    )
    assert '"silence check"' in timers, timers
    assert '"room check"' not in timers and '"silent line"' not in timers, timers
    assert f.count(act.GET_ROOM_PRESENCE) == 0
    await h.env.sleep(25)  # 35 s after the last line (a customer's)
    assert (await handle.query(CallWorkflow.get_state)).silence_alerts == 1
    await h.env.sleep(90)  # 125 s
    await until(lambda: f.count(act.GET_ROOM_PRESENCE) == 1, what="the room asked once")
    await h.env.sleep(180)  # 305 s
    result = await handle.result()
    assert result.end_reason == "silent"
    assert f.count(act.GET_ROOM_PRESENCE) == 2  # asked again 120 s after the first check


async def test_silent_hangup_off_keeps_a_quiet_call(harness: Harness) -> None:
    h = harness
    handle, _ = await h.start(recording_consent="off", silence_alert_s=30, silent_hangup_s=0)
    await h.agent_joins(handle)
    await h.env.sleep(1800)
    state = await handle.query(CallWorkflow.get_state)
    assert state.status == S.IN_PROGRESS and state.silence_alerts == 1


async def test_keyword_alert(harness: Harness) -> None:
    h = harness
    handle, _ = await h.start(keywords=["manager", "cancel my order"], recording_consent="off")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Would you like to speak to a manager?")  # not the customer
    await h.say(handle, "customer", "Yes, get me your MANAGER. I want to cancel my order.")
    await h.say(handle, "customer", "Managerial skills are rare.")  # not the whole word
    state = await handle.query(CallWorkflow.get_state)
    assert state.keyword_alerts == 1  # counted; the alert itself the API stored with the line
    assert h.fakes.of_kind("keyword_alert") == []


@pytest.mark.parametrize("answer", [True, False, None])
async def test_consent_ask(harness: Harness, answer: bool | None) -> None:
    h, f = harness, harness.fakes
    f.stop_reports = "EGRESS_COMPLETE"
    handle, _ = await h.start(recording_consent="ask")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "May I record this call?")
    await h.env.sleep(5)
    assert f.count(act.START_EGRESS) == 0  # the greeting alone is not consent
    if answer is not None:
        await handle.signal(
            CallWorkflow.recording_consent, m.RecordingConsentSignal(h.sid("rc"), answer)
        )
        # A refusal is final; a second grant changes nothing (a withdrawal after a grant is
        # test_safety's consent scenario).
        await handle.signal(
            CallWorkflow.recording_consent, m.RecordingConsentSignal(h.sid("rc"), True)
        )
    await h.say(handle, "customer", "Okay.")
    await h.env.sleep(5)
    await h.customer_leaves(handle)
    result = await handle.result()
    assert f.count(act.START_EGRESS) == (1 if answer else 0)
    assert result.recording_status == (R.UPLOADING if answer else R.NONE)
    state = await handle.query(CallWorkflow.get_state)
    assert state.consent == {True: "granted", False: "refused", None: ""}[answer]


async def test_consent_announce_an_objection_before_the_greeting_records_nothing(
    harness: Harness,
) -> None:
    """Under `announce` a customer who objects before the egress starts is heard: none starts,
    and a later "yes" does not undo the objection."""
    h, f = harness, harness.fakes
    handle, _ = await h.start(recording_consent="announce")
    await h.agent_joins(handle)
    await handle.signal(CallWorkflow.recording_consent, m.RecordingConsentSignal("rc-1", False))
    await handle.signal(CallWorkflow.recording_consent, m.RecordingConsentSignal("rc-2", True))
    await h.say(handle, "assistant", "Hello! Just so you know, this call is recorded.")
    await h.env.sleep(5)
    await h.customer_leaves(handle)
    result = await handle.result()
    assert f.count(act.START_EGRESS) == 0 and result.recording_status == R.NONE
    state = await handle.query(CallWorkflow.get_state)
    assert state.consent == "withdrawn"


async def test_consent_off_never_records(harness: Harness) -> None:
    h = harness
    handle, _ = await h.start(recording_consent="off")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hello!")
    await h.customer_leaves(handle)
    result = await handle.result()
    assert result.recording_status == R.NONE and h.fakes.count(act.START_EGRESS) == 0


async def test_egress_fails_to_start(harness: Harness) -> None:
    h, f = harness, harness.fakes
    f.egress_start_failures = 10
    handle, _ = await h.start(egress_retry_delay_s=10, max_egress_starts=2)
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hello, this call is recorded.")
    await until(lambda: f.count(act.START_EGRESS) == 1)
    # The failure reaches the workflow a task after the fake was called: ask until it has.
    for _ in range(50):
        state = await handle.query(CallWorkflow.get_state)
        if state.recording_error:
            break
        await asyncio.sleep(0.1)
    assert state.status == S.IN_PROGRESS and "unavailable" in state.recording_error
    await h.env.sleep(11)
    await until(lambda: f.count(act.START_EGRESS) == 2, what="one retry")
    await h.say(handle, "customer", "Still there?")
    await h.env.sleep(60)
    assert f.count(act.START_EGRESS) == 2  # retried once, not more
    await h.customer_leaves(handle)
    result = await handle.result()
    assert result.status == S.COMPLETED and result.line_count == 2  # the call went on
    assert result.recording_status == R.FAILED
    failures = [e for e in f.of_kind("recording") if e.data["status"] == "egress_start_failed"]
    assert [e.data["will_retry"] for e in failures] == [True, False]


async def test_egress_start_succeeds_on_the_retry(harness: Harness) -> None:
    h, f = harness, harness.fakes
    f.egress_start_failures = 1
    f.stop_reports = "EGRESS_COMPLETE"
    handle, _ = await h.start(egress_retry_delay_s=10)
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hello, this call is recorded.")
    await h.env.sleep(15)
    await until(lambda: f.count(act.START_EGRESS) == 2)
    await h.customer_leaves(handle)
    result = await handle.result()
    assert result.recording_status == R.UPLOADING


async def test_egress_ended_never_arrives(harness: Harness) -> None:
    h, f = harness, harness.fakes
    f.stop_reports = "EGRESS_ENDING"
    f.get_reports = "EGRESS_COMPLETE"
    handle, _ = await h.start(egress_end_timeout_s=600)
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hello, this call is recorded.")
    await until(lambda: f.count(act.START_EGRESS) == 1)
    await h.customer_leaves(handle)
    result = await handle.result()  # skips the 10 minutes; then the workflow asks LiveKit
    assert f.count(act.GET_EGRESS) == 1
    assert result.recording_status == R.UPLOADING


async def test_egress_ended_during_the_stop_is_kept_and_nothing_waits(harness: Harness) -> None:
    """The lost update at hang-up: `egress_ended` (COMPLETE, with its file) arrives while
    stop_egress runs. The call keeps it and stores the recording at once, never asking LiveKit
    after a 10-minute wait."""
    h, f = harness, harness.fakes
    f.stop_gate, f.stop_reports = asyncio.Event(), "EGRESS_ENDING"
    handle, _ = await h.start(egress_end_timeout_s=600)
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hello, this call is recorded.")
    await until(lambda: f.count(act.START_EGRESS) == 1)
    await h.customer_leaves(handle)
    await until(lambda: f.count(act.STOP_EGRESS) == 1, what="the stop (held)")
    await handle.signal(
        CallWorkflow.egress_ended,
        m.EgressUpdate("ee-during-stop", "EG_1", "EGRESS_COMPLETE", file=egress_file(call_id)),
    )
    await asyncio.sleep(0.5)  # the report is in before the stop answers EGRESS_ENDING
    f.stop_gate.set()
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.recording_status == R.UPLOADING  # the pipeline has started: the call is over
    stored = await asyncio.wait_for(recording_result(h, call_id), 60)
    assert stored.key and not stored.given_up
    assert f.count(act.GET_EGRESS) == 0  # no 600 s wait, no asking LiveKit


async def test_egress_still_ending_is_polled_until_it_ends(harness: Harness) -> None:
    h, f = harness, harness.fakes
    f.get_reports = "EGRESS_ENDING"
    handle, _ = await h.start(egress_end_timeout_s=600)
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hello, this call is recorded.")
    await until(lambda: f.count(act.START_EGRESS) == 1)
    await h.customer_leaves(handle)
    await h.env.sleep(600 + 1)
    await until(lambda: f.count(act.GET_EGRESS) >= 1)
    f.get_reports = "EGRESS_COMPLETE"
    result = await handle.result()
    assert f.count(act.GET_EGRESS) == 2 and result.recording_status == R.UPLOADING


async def test_egress_lost_by_livekit_fails_the_recording_not_the_call(harness: Harness) -> None:
    h, f = harness, harness.fakes
    f.get_reports = "UNKNOWN"
    handle, _ = await h.start(egress_end_timeout_s=600)
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hello, this call is recorded.")
    await until(lambda: f.count(act.START_EGRESS) == 1)
    await h.customer_leaves(handle)
    result = await handle.result()
    assert result.status == S.COMPLETED and result.recording_status == R.FAILED
    state = await handle.query(CallWorkflow.get_state)
    assert "unknown" in state.recording_error
    assert f.count(act.DOWNLOAD_AND_STORE_RECORDING) == 0


async def test_egress_failing_mid_call_is_retried_once(harness: Harness) -> None:
    h, f = harness, harness.fakes
    f.stop_reports = "EGRESS_COMPLETE"
    handle, _ = await h.start(egress_retry_delay_s=5)
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hello, this call is recorded.")
    await until(lambda: f.count(act.START_EGRESS) == 1)
    await handle.signal(
        CallWorkflow.egress_ended,
        m.EgressUpdate(h.sid("ee"), "EG_1", "EGRESS_FAILED", error="pipeline crashed"),
    )
    await h.env.sleep(6)
    await until(lambda: f.count(act.START_EGRESS) == 2)
    await h.customer_leaves(handle)
    result = await handle.result()
    assert result.recording_status == R.UPLOADING
    await recording_result(h, handle.id.removeprefix("call-"))
    rec_ins = [inp.egress_id for inp, _ in f.calls[act.DOWNLOAD_AND_STORE_RECORDING]]
    assert rec_ins[-1] == "EG_2"


async def test_room_creation_failure_fails_the_update_and_the_call(harness: Harness) -> None:
    h = harness
    h.fakes.room_fails = True
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await h.start()
    assert "room" in str(info.value.cause).lower()
    # The call itself settles as failed.
    [inp] = [c for c in h.fakes.calls[act.CREATE_ROOM]]
    handle = h.client.get_workflow_handle(m.call_workflow_id(inp.call_id))
    result = await handle.result()
    assert result["status"] == "failed"


async def recording_result(h: Harness, call_id: str) -> m.RecordingResult:
    """The call's recording pipeline's own outcome (the call no longer waits for it)."""
    handle = h.client.get_workflow_handle(
        m.recording_workflow_id(call_id), result_type=m.RecordingResult
    )
    return await handle.result()
