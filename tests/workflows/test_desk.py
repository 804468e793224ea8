"""`DeskWorkflow` on the time-skipping server: offers ring out and move on, two reps never hold
one call, a rep leaving with an offer hands it on, waiting calls survive a worker restart,
a call that ends while waiting is abandoned, the longest wait ends in a plain notice, and the
caller hears their position and estimate when they change. The last tests hand a real call
(CallWorkflow with stand-in activities) to the desk."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import core.desk as d
import core.models as m
from activities import types as act
from testkit.harness import Harness
from testkit.standins import StandIns
from workflows.call import CallWorkflow
from workflows.desk import DeskWorkflow
from workflows.desk_client import DeskClient, DeskRefused


async def until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Ask (real time) until `check()` answers something truthy; a generous limit, not a
    measurement: the desk decides in its own workflow task after the signal or update."""
    deadline = asyncio.get_running_loop().time() + 30
    while not (value := await check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)
    return value


CFG = d.DeskConfig(offer_timeout_s=20, wrap_up_s=30, max_wait_s=300, service_level_s=20)


@dataclass
class Desk:
    env: WorkflowEnvironment
    client: DeskClient
    fakes: StandIns

    async def rep(
        self, rep_id: str, state: str = "available", skills: tuple = ("general",)
    ) -> d.Rep:
        return await self.client.set_rep(d.SetRep(rep_id, rep_id.title(), state, list(skills)))

    async def snap(self) -> d.Snapshot:
        return await self.client.snapshot()

    async def offer_of(self, rep_id: str) -> d.Offer | None:
        return next((o for o in (await self.snap()).offers if o.rep_id == rep_id), None)

    async def enqueue(self, call_id: str, skill: str = "general") -> None:
        await self.client.enqueue(d.Enqueue(f"e-{call_id}", call_id, skill, "wants a person"))

    def told(self, call_id: str) -> list[d.Announcement]:
        return [n for n in self.fakes.calls[act.TELL_CALLER] if n.call_id == call_id]

    async def stop(self) -> None:
        """Cancel the desk and wait for it to end (a request the workflow acts on in its own
        task), not terminate it: a run terminated while its workflow task is in flight stops
        the time-skipping server skipping time (tests/fixtures/services.py)."""
        handle = self.client.handle()
        await handle.cancel()
        with contextlib.suppress(WorkflowFailureError):
            await handle.result()


@asynccontextmanager
async def desk_worker(env: WorkflowEnvironment, queue: str, fakes: StandIns,
                      cached: bool = True) -> AsyncIterator[None]:  # fmt: skip
    # Uncached (no sticky queue), a worker that stops leaves nothing the next one must wait out.
    async with Worker(env.client, task_queue=queue, workflows=[DeskWorkflow],
                      activities=[fakes.tell_caller], max_cached_workflows=1000 if cached else 0):  # fmt: skip
        yield


@pytest.fixture
async def desk(temporal_test_env: WorkflowEnvironment) -> AsyncIterator[Desk]:
    queue = f"desk-{uuid.uuid4().hex[:8]}"
    fakes = StandIns()
    client = DeskClient(temporal_test_env.client, CFG, queue, workflow_id=queue)
    async with desk_worker(temporal_test_env, queue, fakes):
        dk = Desk(temporal_test_env, client, fakes)
        yield dk
        await dk.stop()


async def test_an_offer_rings_out_sets_the_rep_away_and_moves_to_the_next_rep(desk: Desk) -> None:
    await desk.rep("ann")
    await desk.env.sleep(5)  # ann has been idle longer than bob
    await desk.rep("bob")
    await desk.enqueue("call1")
    first = await until(lambda: desk.offer_of("ann"), what="an offer to ann")
    assert first.call_id == "call1" and await desk.offer_of("bob") is None

    await desk.env.sleep(CFG.offer_timeout_s + 1)
    second = await until(lambda: desk.offer_of("bob"), what="the offer moved to bob")
    assert second.call_id == "call1" and second.id != first.id
    snap = await desk.snap()
    assert {r.id: r.state for r in snap.reps} == {"ann": "away", "bob": "available"}
    with pytest.raises(DeskRefused, match="no longer yours"):  # ann's late answer
        await desk.client.answer(d.AnswerOffer("ann", first.id, True))
    got = await desk.client.answer(d.AnswerOffer("bob", second.id, True))
    assert got is not None and got.call_id == "call1"


async def test_two_reps_racing_for_one_call_one_gets_it(desk: Desk) -> None:
    await desk.rep("ann")
    await desk.rep("bob")
    await desk.enqueue("call1")
    offer = await until(lambda: desk.offer_of("ann"), what="an offer")
    results = await asyncio.gather(
        desk.client.answer(d.AnswerOffer("ann", offer.id, True)),
        desk.client.answer(d.AnswerOffer("bob", offer.id, True)),
        desk.client.answer(d.AnswerOffer("ann", offer.id, True)),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, d.Accepted)]
    assert len(won) == 1 and won[0].call_id == "call1"
    assert all(isinstance(r, DeskRefused) for r in results if not isinstance(r, d.Accepted))
    snap = await desk.snap()
    assert {r.id: (r.state, r.call_id) for r in snap.reps} == {
        "ann": ("busy", "call1"), "bob": ("available", "")}  # fmt: skip
    assert snap.queue == [] and snap.offers == [] and snap.stats.answered == 1


async def test_a_rep_going_on_break_hands_the_offer_on(desk: Desk) -> None:
    await desk.rep("ann")
    await desk.rep("bob")
    await desk.enqueue("call1")
    offer = await until(lambda: desk.offer_of("ann"), what="an offer to ann")
    await desk.rep("ann", "break")
    moved = await until(lambda: desk.offer_of("bob"), what="the offer moved to bob")
    assert moved.call_id == "call1"
    snap = await desk.snap()
    assert {r.id: r.state for r in snap.reps}["ann"] == "break"  # a choice, not a ring-out
    assert snap.stats.reps_by_state["away"] == 0
    with pytest.raises(DeskRefused):
        await desk.client.answer(d.AnswerOffer("ann", offer.id, True))


async def test_calls_waiting_survive_a_worker_restart(
    temporal_test_env: WorkflowEnvironment,
) -> None:
    queue = f"desk-{uuid.uuid4().hex[:8]}"
    fakes = StandIns()
    desk = Desk(temporal_test_env, DeskClient(temporal_test_env.client, CFG, queue, queue), fakes)
    async with desk_worker(temporal_test_env, queue, fakes, cached=False):
        await desk.rep("ann")
        await desk.enqueue("call0")
        offer = await until(lambda: desk.offer_of("ann"), what="an offer")
        await desk.client.answer(d.AnswerOffer("ann", offer.id, True))  # ann is on call0
        for n in (1, 2, 3):
            await desk.enqueue(f"call{n}")
        await until(lambda: _queued(desk, 3), what="three calls waiting")
    # No worker now; a new one (a new process) picks the desk up where it was.
    async with desk_worker(temporal_test_env, queue, StandIns()):
        snap = await desk.snap()
        assert [(q.call_id, q.position) for q in snap.queue] == [
            ("call1", 1), ("call2", 2), ("call3", 3)]  # fmt: skip
        await desk.rep("ann", "wrap_up")
        await desk.rep("ann", "available")
        offer = await until(lambda: desk.offer_of("ann"), what="an offer after the restart")
        assert offer.call_id == "call1"  # the longest-waiting first
        await desk.stop()


async def test_a_call_that_ends_while_waiting_is_abandoned(desk: Desk) -> None:
    await desk.rep("ann")
    await desk.enqueue("call1")
    offer = await until(lambda: desk.offer_of("ann"), what="an offer")
    await desk.client.call_left(d.CallLeft("left-call1", "call1", "customer_left"))
    await until(lambda: _empty(desk), what="the queue empty")
    snap = await desk.snap()
    assert snap.stats.abandoned == 1 and snap.stats.abandon_rate_pct == 100.0
    assert [r.state for r in snap.reps] == ["available"] and snap.reps[0].offer_id == ""
    with pytest.raises(DeskRefused):
        await desk.client.answer(d.AnswerOffer("ann", offer.id, True))


async def _queued(desk: Desk, n: int) -> bool:
    return len((await desk.snap()).queue) == n


async def _async(value: Any) -> Any:
    return value


async def _empty(desk: Desk) -> bool:
    snap = await desk.snap()
    return not snap.queue and not snap.offers


async def test_past_the_longest_wait_the_caller_is_told_no_one_can_come(desk: Desk) -> None:
    await desk.rep("ann")
    await desk.enqueue("call1")
    offer = await until(lambda: desk.offer_of("ann"), what="an offer")
    await desk.client.answer(d.AnswerOffer("ann", offer.id, True))  # ann is busy from now on
    await desk.enqueue("call2")
    await desk.env.sleep(CFG.max_wait_s + 1)
    await until(lambda: _empty(desk), what="call2 out of the queue")
    notices = [n.notice for n in desk.told("call2")]
    assert notices[-1] == d.Notice.MAX_WAIT
    assert (await desk.snap()).stats.timed_out == 1


async def test_with_no_rep_signed_in_the_call_is_not_queued_and_the_caller_told(desk: Desk) -> None:
    await desk.rep("ann", "offline")
    await desk.enqueue("call1")
    await until(lambda: _async(desk.told("call1")), what="the caller told")
    assert [n.notice for n in desk.told("call1")] == [d.Notice.NO_REP]
    snap = await desk.snap()
    assert snap.queue == [] and snap.stats.unstaffed == 1


async def test_the_caller_hears_position_and_estimate_when_they_change(desk: Desk) -> None:
    await desk.rep("ann")
    await desk.enqueue("call1")
    offer = await until(lambda: desk.offer_of("ann"), what="an offer")
    await desk.env.sleep(15)
    await desk.client.answer(d.AnswerOffer("ann", offer.id, True))  # waited ~15 s: holdtime ~3.75
    await desk.enqueue("call2")
    await desk.enqueue("call3")
    await until(lambda: _async(len(desk.told("call3")) >= 1), what="call3 told")
    c2, c3 = desk.told("call2"), desk.told("call3")
    assert [(n.notice, n.position) for n in c2] == [(d.Notice.POSITION, 1)]
    assert [(n.notice, n.position) for n in c3] == [(d.Notice.POSITION, 2)]
    assert c2[0].estimate_s is not None and 0 < c2[0].estimate_s <= 4
    # ann wraps up and comes back: call2 is offered and taken, call3 moves up and hears it.
    await desk.rep("ann", "wrap_up")
    await desk.rep("ann", "available")
    offer2 = await until(lambda: desk.offer_of("ann"), what="call2 offered")
    assert offer2.call_id == "call2"
    await desk.client.answer(d.AnswerOffer("ann", offer2.id, True))
    await until(lambda: _async(len(desk.told("call3")) >= 2), what="call3 told again")
    assert desk.told("call3")[-1].position == 1
    assert [n.notice for n in desk.told("call2")][-1] == d.Notice.JOINING


async def test_a_rep_on_a_call_cannot_go_offline_and_wraps_up_into_available(desk: Desk) -> None:
    await desk.rep("ann")
    await desk.enqueue("call1")
    offer = await until(lambda: desk.offer_of("ann"), what="an offer")
    await desk.client.answer(d.AnswerOffer("ann", offer.id, True))
    with pytest.raises(DeskRefused, match="wrap it up first"):
        await desk.rep("ann", "offline")
    with pytest.raises(DeskRefused, match="state must be one of"):
        await desk.rep("ann", "busy")
    await desk.client.call_left(d.CallLeft("left-call1", "call1", "customer_left"))
    await until(lambda: _rep_state(desk, "ann", "wrap_up"), what="wrap-up")
    await desk.env.sleep(CFG.wrap_up_s + 1)
    await until(lambda: _rep_state(desk, "ann", "available"), what="available again")
    stats = (await desk.snap()).stats
    assert stats.answered == 1 and stats.average_handle_s is not None


async def _rep_state(desk: Desk, rep_id: str, state: str) -> bool:
    return any(r.id == rep_id and r.state == state for r in (await desk.snap()).reps)


async def test_a_calls_hand_off_queues_it_and_its_end_abandons_it(
    harness: Harness, desk: Desk
) -> None:
    harness.fakes.desk = desk.client
    await desk.rep("ann", skills=("sales",))
    handle, _ = await harness.start()
    await harness.agent_joins(handle)
    call_id = handle.id.removeprefix("call-")
    await handle.signal(CallWorkflow.agent_alert, m.AgentAlert(
        "h1", m.EventKind.HANDOFF_REQUESTED, "customer asked for a manager", skill="sales"))  # fmt: skip
    await handle.signal(CallWorkflow.agent_alert, m.AgentAlert(  # a repeat changes nothing
        "h1", m.EventKind.HANDOFF_REQUESTED, "customer asked for a manager", skill="sales"))  # fmt: skip
    queue = await until(lambda: _queue(desk), what="the call in the desk's queue")
    assert [(q.call_id, q.skill, q.reason) for q in queue] == [
        (call_id, "sales", "customer asked for a manager")]  # fmt: skip
    await until(lambda: desk.offer_of("ann"), what="an offer to ann")
    await harness.customer_leaves(handle)
    await handle.result()
    await until(lambda: _empty(desk), what="the call out of the queue")
    snap = await desk.snap()
    assert snap.stats.abandoned == 1 and snap.reps[0].offer_id == ""
    assert (
        harness.fakes.count(act.ENQUEUE_HANDOFF) == 1 and harness.fakes.count(act.LEAVE_DESK) == 1
    )


async def _queue(desk: Desk) -> list[d.QueueEntry]:
    return (await desk.snap()).queue


async def test_a_call_never_handed_off_never_calls_the_desk(harness: Harness) -> None:
    handle, _ = await harness.start()
    await harness.agent_joins(handle)
    await harness.customer_leaves(handle)
    await handle.result()
    assert (
        harness.fakes.count(act.ENQUEUE_HANDOFF) == 0 and harness.fakes.count(act.LEAVE_DESK) == 0
    )


async def test_past_the_longest_wait_an_accepted_callback_offer_is_scheduled_by_the_queue(
    desk: Desk, temporal_dev_env: WorkflowEnvironment, pg_dsn: str,
    make_settings: Callable[..., Any],
) -> None:  # fmt: skip
    """Max wait → Sarah offers a callback (agent/desk.py) → the customer accepts → the API's
    `schedule(..., by="queue")` starts a CallbackWorkflow for that number. The desk runs on the
    time-skipping server; the callback on the dev server (update-with-start, which the
    time-skipping server cannot take: docs/testing.md)."""
    import asyncpg

    import core.callbacks as cb
    from agent.desk import notice_text
    from api.domain import callbacks
    from testkit.callbacks import CallbackStandIns
    from workflows.callback import CallbackWorkflow

    await desk.rep("ann")
    await desk.enqueue("call1")
    offer = await until(lambda: desk.offer_of("ann"), what="an offer")
    await desk.client.answer(d.AnswerOffer("ann", offer.id, True))  # ann is busy from now on
    call_id = m.new_call_id()
    await desk.enqueue(call_id)
    await desk.env.sleep(CFG.max_wait_s + 1)
    await until(lambda: _empty(desk), what="the call out of the queue")
    note = desk.told(call_id)[-1]
    assert note.notice == d.Notice.MAX_WAIT
    said = notice_text(dataclasses.asdict(note), can_call_back=True)
    assert "call you back" in said and "joining" not in said

    settings = make_settings(
        TEMPORAL_TASK_QUEUE=f"cb-{uuid.uuid4().hex[:8]}", SIP_OUTBOUND_ALLOWED_PREFIXES="+1555"
    )
    phone = "+1555" + str(uuid.uuid4().int)[:7]
    at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    dev = temporal_dev_env.client
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        async with Worker(dev, task_queue=settings.TEMPORAL_TASK_QUEUE,
                          workflows=[CallbackWorkflow],
                          activities=CallbackStandIns(dev).activities()):  # fmt: skip
            st = await callbacks.schedule(dev, pool, settings, phone=phone, at=at,
                                          timezone="America/Chicago", by="queue",
                                          reason="call back from the queue", call_id=call_id)  # fmt: skip
            assert st.phone == phone and st.call_id == call_id and st.status == "scheduled"
            handle = dev.get_workflow_handle(cb.callback_workflow_id(st.callback_id))
            started = (await handle.fetch_history()).events[0]
            attrs = started.workflow_execution_started_event_attributes
            assert attrs.workflow_type.name == "CallbackWorkflow"
            req = (await dev.data_converter.decode(attrs.input.payloads, [cb.CallbackRequest]))[0]
            assert req.by == "queue" and req.phone == phone
            await callbacks.cancel(dev, st.callback_id, cb.CancelCallback("test"))
    finally:
        await pool.close()
