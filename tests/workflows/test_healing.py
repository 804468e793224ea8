"""CallWorkflow heals itself: unanswered dispatches, a lost agent, a dropped customer
(time-skipping test server, stand-in activities)."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from activities import types as act
from core import models as m
from testkit.harness import AGENT, Harness
from testkit.standins import until
from workflows.call import CallWorkflow
from workflows.healing import AGENT_LOST_END_REASON, ROOM_GONE_END_REASON

S = m.CallStatus
K = m.EventKind


async def customer_joins(h: Harness, handle: object) -> None:
    call_id = handle.id.removeprefix("call-")  # type: ignore[attr-defined]
    await handle.signal(  # type: ignore[attr-defined]
        CallWorkflow.participant_joined,
        m.ParticipantJoined(h.sid("pj"), m.customer_identity(call_id), "customer"),
    )


async def agent_leaves(h: Harness, handle: object, identity: str = AGENT) -> None:
    await handle.signal(  # type: ignore[attr-defined]
        CallWorkflow.participant_left, m.ParticipantLeft(h.sid("pl"), identity, "agent")
    )


async def test_no_agent_after_every_dispatch_attempt(harness: Harness) -> None:
    h, f = harness, harness.fakes
    handle, _ = await h.start(agent_join_timeout_s=60, agent_redispatch_after_s=10)
    result = await handle.result()
    assert result.status == S.NO_AGENT and result.end_reason == "no_agent_in_time"
    sent = f.calls[act.DISPATCH_AGENT]
    assert [d.serial for d in sent] == [2, 3]  # the room's own dispatch was the first
    assert not any(d.resume for d in sent)
    events = f.of_kind(K.AGENT_DISPATCH)
    assert [e.data["attempt"] for e in events] == [1, 2, 3]
    assert [e.data["reason"] for e in events] == ["room_created"] + ["no_agent_joined"] * 2
    assert all(e.data["of"] == 3 for e in events)


async def test_a_redispatched_agent_joins(harness: Harness) -> None:
    h, f = harness, harness.fakes
    handle, _ = await h.start(agent_redispatch_after_s=10)
    await h.env.sleep(11)
    await until(lambda: f.count(act.DISPATCH_AGENT) == 1, what="second dispatch")
    await h.agent_joins(handle)
    state = await h.query(handle, CallWorkflow.get_state)
    assert state.status == S.IN_PROGRESS and state.dispatch_attempts == 2
    await h.env.sleep(60)
    assert f.count(act.DISPATCH_AGENT) == 1  # no more once one is in


async def test_lost_agent_is_replaced_and_the_call_goes_on(harness: Harness) -> None:
    h, f = harness, harness.fakes
    handle, _ = await h.start(recording_consent="off")
    await customer_joins(h, handle)
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hi, I'm Sarah.")
    await h.say(handle, "customer", "I want a Camry.")
    await agent_leaves(h, handle)
    await until(lambda: f.count(act.DISPATCH_AGENT) == 1, what="replacement dispatch")
    assert f.calls[act.DISPATCH_AGENT][0].resume
    state = await h.query(handle, CallWorkflow.get_state)
    assert state.status == S.IN_PROGRESS and state.agent_lost
    # The lost agent's late "left" webhook duplicate changes nothing.
    await agent_leaves(h, handle)
    await handle.signal(CallWorkflow.agent_joined, m.AgentJoined(h.sid("aj"), "agent-new"))
    state = await h.query(handle, CallWorkflow.get_state)
    assert not state.agent_lost and state.agent_identity == "agent-new"
    expected = ["dispatched", "agent_lost", "dispatched", "agent_replaced"]
    # (The log is written by an activity after the task that decided: wait for it.)
    await until(lambda: [e.data["status"] for e in f.of_kind(K.AGENT_DISPATCH)] == expected,
                what="the dispatch events written")  # fmt: skip
    # The customer gone for good ends the call the old way.
    await h.customer_leaves(handle)
    result = await handle.result()
    assert result.status == S.COMPLETED and result.end_reason == "customer_left"


async def test_lost_agent_never_replaced_asks_for_a_human(harness: Harness) -> None:
    h, f = harness, harness.fakes
    handle, _ = await h.start(recording_consent="off", agent_redispatch_after_s=10)
    await customer_joins(h, handle)
    await h.agent_joins(handle)
    await agent_leaves(h, handle)
    result = await handle.result()
    assert result.status == S.COMPLETED and result.end_reason == AGENT_LOST_END_REASON
    assert f.count(act.DISPATCH_AGENT) == 3
    handoff = f.of_kind(K.HANDOFF_REQUESTED)
    assert len(handoff) == 1 and handoff[0].data["source"] == "workflow"
    assert "person" in handoff[0].data["detail"]
    [queued] = f.calls[act.ENQUEUE_HANDOFF]  # into the desk's queue, not only an event
    assert queued.call_id == handle.id.removeprefix("call-") and queued.by == "workflow"
    assert queued.id == handoff[0].data["id"]


async def test_lost_agent_never_replaced_waits_in_the_queue_for_a_rep_who_takes_it(
    dev_harness: Harness,
) -> None:
    """The lost call stays open while it waits for a rep (`agent_lost_queue_s`); a rep who
    joins keeps it open past that; when the rep leaves with still no agent, the call ends and
    the desk hears it left. On the dev server (real time, short waits): the time-skipping
    server sometimes stopped skipping time when this call ended after a long skip."""
    h, f = dev_harness, dev_harness.fakes
    handle, _ = await h.start(recording_consent="off", agent_redispatch_after_s=0.2,
                              agent_lost_queue_s=1.0)  # fmt: skip
    await customer_joins(h, handle)
    await h.agent_joins(handle)
    await agent_leaves(h, handle)
    rep = "rep-ann-0123abcd"
    await until(lambda: f.count(act.ENQUEUE_HANDOFF) == 1, what="the call in the desk's queue")
    await handle.signal(
        CallWorkflow.participant_joined, m.ParticipantJoined(h.sid("pj"), rep, "rep")
    )
    await asyncio.sleep(3)  # past agent_lost_queue_s; a call ended early would show below
    state = await h.query(handle, CallWorkflow.get_state)
    assert state.status == S.IN_PROGRESS, "a rep on the call keeps it open"
    await handle.signal(CallWorkflow.participant_left, m.ParticipantLeft(h.sid("pl"), rep, "rep"))
    result = await handle.result()
    assert result.status == S.COMPLETED and result.end_reason == AGENT_LOST_END_REASON
    await until(lambda: f.count(act.LEAVE_DESK) == 1, what="the desk told the call left")
    assert f.calls[act.LEAVE_DESK][0].call_id == handle.id.removeprefix("call-")


async def test_agent_lost_before_the_customer_joins_is_replaced(harness: Harness) -> None:
    """The customer's browser or phone is still connecting when the agent crashes: until the
    join timeout the customer is expected, so the agent is replaced, not the call ended."""
    h, f = harness, harness.fakes
    handle, _ = await h.start(recording_consent="off", customer_join_timeout_s=120)
    await h.agent_joins(handle)
    await agent_leaves(h, handle)
    await until(lambda: f.count(act.DISPATCH_AGENT) == 1, what="replacement dispatch")
    assert f.calls[act.DISPATCH_AGENT][0].resume
    await handle.signal(CallWorkflow.agent_joined, m.AgentJoined(h.sid("aj"), "agent-new"))
    await customer_joins(h, handle)
    state = await h.query(handle, CallWorkflow.get_state)
    assert state.status == S.IN_PROGRESS and state.agent_identity == "agent-new"
    await h.customer_leaves(handle)
    result = await handle.result()
    assert result.end_reason == "customer_left"


async def test_customer_rejoins_within_the_grace(harness: Harness) -> None:
    h, f = harness, harness.fakes
    handle, _ = await h.start(recording_consent="off", customer_rejoin_grace_s=30)
    await customer_joins(h, handle)
    await h.agent_joins(handle)
    await h.customer_leaves(handle)
    state = await h.query(handle, CallWorkflow.get_state)
    assert state.status == S.IN_PROGRESS and state.customer_reconnecting
    await h.env.sleep(20)
    await customer_joins(h, handle)
    await h.env.sleep(30)
    state = await h.query(handle, CallWorkflow.get_state)
    assert state.status == S.IN_PROGRESS and not state.customer_reconnecting
    await until(lambda: [e.data["status"] for e in f.of_kind(K.CUSTOMER_CONNECTION)]
                == ["reconnecting", "rejoined"], what="the connection events written")  # fmt: skip
    await h.customer_leaves(handle)
    result = await handle.result()
    assert result.end_reason == "customer_left"
    conn = [e.data["status"] for e in f.of_kind(K.CUSTOMER_CONNECTION)]
    assert conn[-2:] == ["reconnecting", "gone"]


async def rejoin(handle: object, grant: m.TokenGrant) -> m.TokenGrant:
    """`issue_token` as the API asks it for a rejoin: the proof's token id and expiry."""
    req = m.IssueTokenRequest(
        rejoin_of=grant.token_id,
        proof_expires_at=datetime.fromisoformat(grant.expires_at).timestamp(),
    )
    return await handle.execute_update(CallWorkflow.issue_token, req)  # type: ignore[attr-defined,no-any-return]


async def refused(handle: object, grant: m.TokenGrant) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await rejoin(handle, grant)
    cause = err.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == m.ERR_REJOIN_REFUSED, cause
    return cause.message


async def test_a_rejoin_proof_works_once_and_expired_only_within_the_grace(
    harness: Harness,
) -> None:
    """Only the latest token proves a rejoin (so each works once, an older one never); past
    its expiry it does only within the grace of the expiry or of the customer's drop. Each
    accepted rejoin is recorded (`customer_rejoined`)."""
    h, f = harness, harness.fakes
    handle, first = await h.start(recording_consent="off", customer_rejoin_grace_s=30)
    await customer_joins(h, handle)
    await h.agent_joins(handle)
    await h.customer_leaves(handle)
    second = await rejoin(handle, first)
    assert second.token_id not in ("", first.token_id) and not second.token
    assert "latest" in await refused(handle, first)  # the same proof twice
    await customer_joins(h, handle)
    await h.env.sleep(m.CallConfig().token_ttl_s + 31)  # `second` expired 31 s ago
    assert "grace" in await refused(handle, second)
    await h.customer_leaves(handle)  # dropped now: the expired token brings them back
    third = await rejoin(handle, second)
    assert "latest" in await refused(handle, first)  # an older token, never
    await until(lambda: len(f.of_kind(K.CUSTOMER_REJOINED)) == 2, what="the rejoins written")
    recorded = [e.data for e in f.of_kind(K.CUSTOMER_REJOINED)]
    assert [(r["replaces"], r["token_id"]) for r in recorded] == [
        (first.token_id, second.token_id),
        (second.token_id, third.token_id),
    ]
    assert not any(r["while_connected"] for r in recorded)
    await handle.execute_update(CallWorkflow.end_call, m.EndCallRequest("done", "ops"))  # type: ignore[attr-defined]


async def test_no_grace_ends_at_once(harness: Harness) -> None:
    h = harness
    handle, _ = await h.start(recording_consent="off", customer_rejoin_grace_s=0)
    await customer_joins(h, handle)
    await h.agent_joins(handle)
    await h.customer_leaves(handle)
    result = await handle.result()
    assert result.end_reason == "customer_left"
    assert not h.fakes.of_kind(K.CUSTOMER_CONNECTION)


async def test_room_finished_mid_call_ends_it_without_dispatching_into_a_gone_room(
    harness: Harness,
) -> None:
    """The customer's `participant_left` was lost, then the agent left and the room finished:
    the call ends `room_finished` with no agent dispatched into a room that no longer exists
    and no hand-off requested (found by the soak with a dropped webhook)."""
    h, f = harness, harness.fakes
    handle, _ = await h.start(recording_consent="off")
    await h.agent_joins(handle)
    await h.say(handle, "customer", "Thanks, bye.")
    await handle.signal(CallWorkflow.room_finished, m.RoomFinished("rf-1"))
    result = await handle.result()
    assert (result.status, result.end_reason) == (S.COMPLETED, "room_finished")
    assert f.count(act.DISPATCH_AGENT) == 0
    assert not f.of_kind("handoff_requested")


def seconds(state: m.CallState) -> float:
    return (datetime.fromisoformat(state.ended_at) - datetime.fromisoformat(state.created_at)).total_seconds()  # fmt: skip


async def test_lost_agent_redispatch_into_a_gone_room_ends_the_call(harness: Harness) -> None:
    """The customer hung up and the room closed, but neither webhook has come yet when the
    agent leaves: the replacement dispatch is refused `RoomGone`, and the call ends as the
    `room_finished` webhook would end it, at once: no more dispatches, no hand-off."""
    h, f = harness, harness.fakes
    handle, _ = await h.start(recording_consent="off", agent_redispatch_after_s=10)
    await customer_joins(h, handle)
    await h.agent_joins(handle)
    f.dispatch_error = act.ERR_ROOM_GONE
    await h.say(handle, "customer", "Thanks, bye.")
    lost_at = (await h.query(handle, CallWorkflow.get_state)).created_at
    await agent_leaves(h, handle)
    result = await handle.result()
    assert (result.status, result.end_reason) == (S.COMPLETED, ROOM_GONE_END_REASON)
    state = await h.query(handle, CallWorkflow.get_state)
    assert state.ended_by == "livekit"
    assert (datetime.fromisoformat(state.ended_at) - datetime.fromisoformat(lost_at)).total_seconds() < 10  # fmt: skip
    assert f.count(act.DISPATCH_AGENT) == 1  # refused once, never asked again
    failed = [e.data for e in f.of_kind(K.AGENT_DISPATCH) if e.data["status"] == "dispatch_failed"]
    assert len(failed) == 1 and act.ERR_ROOM_GONE in failed[0]["error"]
    assert not f.of_kind(K.HANDOFF_REQUESTED)


async def test_redispatch_while_waiting_into_a_gone_room_ends_the_call(harness: Harness) -> None:
    """No agent yet and the room already gone: the first redispatch's refusal ends the call,
    instead of dispatching on until the join timeout and calling it `no_agent`."""
    h, f = harness, harness.fakes
    f.dispatch_error = act.ERR_ROOM_GONE
    handle, _ = await h.start(agent_join_timeout_s=60, agent_redispatch_after_s=10)
    result = await handle.result()
    assert (result.status, result.end_reason) == (S.COMPLETED, ROOM_GONE_END_REASON)
    assert f.count(act.DISPATCH_AGENT) == 1
    assert seconds(await h.query(handle, CallWorkflow.get_state)) < 20
    assert not f.of_kind(K.HANDOFF_REQUESTED)


async def test_lost_agent_with_livekit_unreachable_dispatches_on_then_asks_for_a_human(
    harness: Harness,
) -> None:
    """LiveKit unreachable is not a gone room: each dispatch is retried, counted as a failed
    attempt, the next comes after the usual wait, and a person is asked for in the end."""
    h, f = harness, harness.fakes
    handle, _ = await h.start(recording_consent="off", agent_redispatch_after_s=10)
    await customer_joins(h, handle)
    await h.agent_joins(handle)
    f.dispatch_error = act.ERR_LIVEKIT_UNAVAILABLE
    await agent_leaves(h, handle)
    result = await handle.result()
    assert result.status == S.COMPLETED and result.end_reason == AGENT_LOST_END_REASON
    failed = [e.data for e in f.of_kind(K.AGENT_DISPATCH) if e.data["status"] == "dispatch_failed"]
    assert [e["attempt"] for e in failed] == [1, 2, 3]
    assert f.count(act.DISPATCH_AGENT) > 3  # each attempt retried by Temporal
    assert len(f.of_kind(K.HANDOFF_REQUESTED)) == 1
