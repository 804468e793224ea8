"""A missed room webhook is reconciled: a call that has heard nothing from its room for
`room_check_after_s` asks LiveKit (`get_room_presence`), and a lost `room_finished` or
`participant_left` ends or heals the call as the webhook would have, long before the max
duration (time-skipping test server, stand-in activities)."""

from __future__ import annotations

from activities import types as act
from core import models as m
from testkit.harness import AGENT, Harness
from testkit.standins import until
from tests.workflows.test_healing import customer_joins
from workflows.call import CallWorkflow

S = m.CallStatus


async def talking_call(h: Harness, **config: object) -> tuple[object, str]:
    config.setdefault("recording_consent", "off")
    config.setdefault("room_check_after_s", 60)
    handle, _ = await h.start(**config)
    await customer_joins(h, handle)
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hi, I'm Sarah.")
    return handle, handle.id.removeprefix("call-")


def reconciled(h: Harness) -> list[str]:
    return [e.data["room_reconciled"] for e in h.fakes.of_kind("status")
            if "room_reconciled" in e.data]  # fmt: skip


async def test_a_lost_room_finished_is_found_and_ends_the_call(harness: Harness) -> None:
    h, f = harness, harness.fakes
    handle, _ = await talking_call(h)
    f.room_gone = True  # the room closed; its room_finished webhook never came
    result = await handle.result()  # type: ignore[attr-defined]
    assert (result.status, result.end_reason) == (S.COMPLETED, "room_finished")
    assert f.count(act.GET_ROOM_PRESENCE) == 1
    state = await handle.query(CallWorkflow.get_state)  # type: ignore[attr-defined]
    assert state.ended_by == "livekit"
    await until(lambda: reconciled(h) == ["room_gone"], what="the finding logged")


async def test_a_lost_customer_left_is_found_and_ends_the_call_after_the_grace(
    harness: Harness,
) -> None:
    h, f = harness, harness.fakes
    handle, call_id = await talking_call(h, customer_rejoin_grace_s=30)
    f.room_absent = frozenset({m.customer_identity(call_id)})
    result = await handle.result()  # type: ignore[attr-defined]
    assert result.end_reason == "customer_left"
    asked = f.calls[act.GET_ROOM_PRESENCE][0]
    assert sorted(asked.expected) == sorted([m.customer_identity(call_id), AGENT])
    await until(lambda: reconciled(h) == ["customer_absent"], what="the finding logged")


async def test_a_lost_agent_left_is_found_and_the_agent_replaced(harness: Harness) -> None:
    h, f = harness, harness.fakes
    handle, _ = await talking_call(h)
    f.room_absent = frozenset({AGENT})
    await h.env.sleep(70)  # quiet for longer than room_check_after_s
    await until(lambda: f.count(act.DISPATCH_AGENT) == 1, what="a replacement dispatched")
    assert f.calls[act.DISPATCH_AGENT][0].resume
    state = await h.query(handle, CallWorkflow.get_state)  # type: ignore[arg-type]
    assert state.status == S.IN_PROGRESS and state.agent_lost
    await h.customer_leaves(handle)  # type: ignore[arg-type]
    assert (await handle.result()).end_reason == "customer_left"  # type: ignore[attr-defined]


async def test_a_room_that_talks_is_not_asked(harness: Harness) -> None:
    h, f = harness, harness.fakes
    handle, _ = await talking_call(h)
    for i in range(6):
        await h.env.sleep(40)
        await h.say(handle, "customer", f"still here {i}")  # type: ignore[arg-type]
    assert f.count(act.GET_ROOM_PRESENCE) == 0
    await h.env.sleep(70)  # quiet for longer than room_check_after_s: asked once
    await until(lambda: f.count(act.GET_ROOM_PRESENCE) == 1, what="one check")
    state = await h.query(handle, CallWorkflow.get_state)  # type: ignore[arg-type]
    assert state.status == S.IN_PROGRESS  # everyone is in: nothing changes
    await h.customer_leaves(handle)  # type: ignore[arg-type]
    await handle.result()  # type: ignore[attr-defined]


async def test_livekit_unreachable_is_asked_again_after_another_quiet_period(
    harness: Harness,
) -> None:
    h, f = harness, harness.fakes
    f.presence_failures, f.room_gone = 5, True  # one check's five attempts fail
    handle, _ = await talking_call(h)
    result = await handle.result()  # type: ignore[attr-defined]
    assert result.end_reason == "room_finished" and f.count(act.GET_ROOM_PRESENCE) == 6
    failed = [e for e in f.of_kind("status") if "room_check_failed" in e.data]
    assert len(failed) == 1 and "unreachable" in failed[0].data["room_check_failed"]
