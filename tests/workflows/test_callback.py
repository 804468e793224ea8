"""CallbackWorkflow on a time-skipping test server of its own (its clock is moved months ahead
to a daylight-saving change, which the shared server's other tests must not see): the due time
in the customer's local window across DST, waiting for the window, busy then answered, three
no-answers then failed, cancel and reschedule while it sleeps, a do-not-call entry, a worker
restart mid-sleep. The far end is scripted (testkit/callbacks.py); the call's own report of
its dial is tested in tests/workflows/test_phone.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import core.callbacks as cb
from core import models as m
from testkit.callbacks import CallbackStandIns
from testkit.temporal import start_time_skipping
from workflows.callback import CallbackWorkflow

C = cb.CallbackStatus
TO = "+13125550142"
CHICAGO = "America/Chicago"
# Friday noon in Chicago, two days before the US moves its clocks (2027-03-14 02:00 local).
FRIDAY = datetime(2027, 3, 12, 18, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_time_skipping()
    now = await env.get_current_time()
    assert now < FRIDAY, "the test server starts at the real time"
    await env.sleep(FRIDAY - now)
    yield env
    await env.shutdown()


class Rig:
    def __init__(self, env: WorkflowEnvironment) -> None:
        self.env = env
        self.fakes = CallbackStandIns(env.client)
        self.queue = f"callbacks-{uuid.uuid4().hex[:8]}"

    def worker(self, **kw: Any) -> Worker:
        return Worker(self.env.client, task_queue=self.queue, workflows=[CallbackWorkflow],
                      activities=self.fakes.activities(), **kw)  # fmt: skip

    async def start(self, at: datetime, tz: str = CHICAGO, **kw: Any) -> WorkflowHandle:
        cid = f"cb{uuid.uuid4().hex[:12]}"
        req = cb.CallbackRequest(
            cid, TO, at.timestamp(), tz, reason="the Silverado test drive", **kw
        )
        return await self.env.client.start_workflow(
            CallbackWorkflow.run, req, id=cb.callback_workflow_id(cid), task_queue=self.queue
        )

    async def now(self) -> datetime:
        """The test server's time, to the second (as `dialled_at` reports)."""
        return (await self.env.get_current_time()).replace(microsecond=0)

    def dialled_at(self) -> list[datetime]:
        """When each attempt's call was placed, to the second (the activity is scheduled a few
        milliseconds of workflow time after the timer fires)."""
        return [datetime.fromtimestamp(int(t), UTC) for _, t in self.fakes.dials]


@pytest.fixture
async def rig(env: WorkflowEnvironment) -> AsyncIterator[Rig]:
    r = Rig(env)
    async with r.worker():
        yield r


def local(dt: datetime) -> datetime:
    return dt.astimezone(ZoneInfo(CHICAGO))


# --- the window, a pure function -------------------------------------------------------------


def test_the_window_opens_at_local_nine_on_either_side_of_a_dst_change() -> None:
    tz, w = ZoneInfo(CHICAGO), cb.Window.parse("09:00-20:00")
    # 07:30 CST on Saturday (UTC-6) waits for 09:00 CST; 08:30 CDT on Sunday (UTC-5) for 09:00 CDT.
    assert cb.next_dial_at(datetime(2027, 3, 13, 13, 30, tzinfo=UTC), tz, w) == datetime(
        2027, 3, 13, 15, 0, tzinfo=UTC)  # fmt: skip
    assert cb.next_dial_at(datetime(2027, 3, 14, 13, 30, tzinfo=UTC), tz, w) == datetime(
        2027, 3, 14, 14, 0, tzinfo=UTC)  # fmt: skip
    # 20:00 local is closed: the next morning.
    assert cb.next_dial_at(datetime(2027, 3, 15, 1, 0, tzinfo=UTC), tz, w) == datetime(
        2027, 3, 15, 14, 0, tzinfo=UTC)  # fmt: skip
    inside = datetime(2027, 3, 15, 18, 0, tzinfo=UTC)
    assert cb.next_dial_at(inside, tz, w) == inside


@pytest.mark.parametrize("hours", ["07:00-20:00", "09:00-21:30", "12:00-10:00", "9-5", "x"])
def test_a_window_outside_eight_to_nine_is_refused(hours: str) -> None:
    with pytest.raises(ValueError):
        cb.Window.parse(hours)


def test_one_request_id_or_one_call_names_one_callback() -> None:
    assert cb.callback_id_for(request_id="r1") == cb.callback_id_for(request_id="r1")
    assert cb.callback_id_for(call_id="c1") != cb.callback_id_for(request_id="c1")
    assert cb.callback_id_for(request_id="r1", call_id="c1") == cb.callback_id_for(request_id="r1")
    assert cb.callback_id_for(random="abc0123456") == "cbabc0123456"
    ids = {
        cb.callback_id_for(call_id="c1"),
        cb.attempt_call_id("cbx", 1),
        cb.attempt_call_id("cbx", 2),
    }
    assert len(ids) == 3 and all(
        m.CALL_ID_RE.match(i) for i in ids - {cb.callback_id_for(call_id="c1")}
    )
    assert all(
        cb.CALLBACK_ID_RE.match(cb.callback_id_for(**kw))
        for kw in ({"call_id": "c"}, {"request_id": "r"})
    )


# --- the workflow ----------------------------------------------------------------------------


async def test_a_callback_two_days_ahead_dials_at_the_local_time_across_dst(rig: Rig) -> None:
    # Sunday 08:30 CDT, asked for on Friday (CST): too early, so the window's 09:00 CDT.
    handle = await rig.start(datetime(2027, 3, 14, 13, 30, tzinfo=UTC))
    state = await handle.query(CallbackWorkflow.get_state)
    assert state.status == C.SCHEDULED
    assert cb.from_epoch(state.due_at) == datetime(2027, 3, 14, 14, 0, tzinfo=UTC)
    result = await handle.result()
    assert result.status == C.COMPLETED and result.end_reason == "answered"
    [when] = rig.dialled_at()
    assert when == datetime(2027, 3, 14, 14, 0, tzinfo=UTC)
    assert (local(when).hour, local(when).minute) == (9, 0), "09:00 local, not 08:00 or 10:00"
    assert [a.outcome for a in result.attempts] == ["answered"]
    req = rig.fakes.dials[0][0]
    assert req.phone == TO and req.report_to == handle.id
    assert req.call_id == cb.attempt_call_id(result.callback_id, 1)
    assert [r.status for r in rig.fakes.rows] == [C.SCHEDULED, C.DIALING, C.COMPLETED]


async def test_a_time_outside_the_window_waits_for_the_window(rig: Rig) -> None:
    now = await rig.now()
    late = datetime.combine(local(now).date() + timedelta(days=1), datetime.min.time(),
                            tzinfo=ZoneInfo(CHICAGO)).replace(hour=22)  # fmt: skip
    handle = await rig.start(late, hours="10:00-18:00")
    result = await handle.result()
    [when] = rig.dialled_at()
    assert local(when).date() == late.date() + timedelta(days=1)
    assert (local(when).hour, local(when).minute) == (10, 0)
    assert result.status == C.COMPLETED


async def test_busy_then_answered_retries_after_the_backoff(rig: Rig) -> None:
    rig.fakes.outcomes = ["busy", "answered"]
    start = await rig.now()
    due = cb.next_dial_at(start + timedelta(hours=1), ZoneInfo(CHICAGO), cb.Window())
    handle = await rig.start(due, retry_s=1200)
    result = await handle.result()
    assert result.status == C.COMPLETED
    assert [a.outcome for a in result.attempts] == ["busy", "answered"]
    first, second = rig.dialled_at()
    assert first == due
    assert second >= first + timedelta(seconds=1200)
    assert cb.Window().start <= local(second).time() < cb.Window().end
    assert len({a.call_id for a in result.attempts}) == 2, "each attempt is a call of its own"


async def test_three_no_answers_then_failed_with_every_attempt(rig: Rig) -> None:
    rig.fakes.outcomes = ["no_answer"] * 5
    start = await rig.now()
    handle = await rig.start(start + timedelta(hours=2), retry_s=3600, max_attempts=3)
    result = await handle.result()
    assert result.status == C.FAILED and result.end_reason == "attempts_exhausted"
    assert [a.outcome for a in result.attempts] == ["no_answer"] * 3
    assert len(rig.fakes.dials) == 3
    for when in rig.dialled_at():
        assert cb.Window().start <= local(when).time() < cb.Window().end


async def test_rejected_is_not_retried(rig: Rig) -> None:
    rig.fakes.outcomes = ["rejected"]
    start = await rig.now()
    result = await (await rig.start(start + timedelta(hours=1))).result()
    assert (result.status, result.end_reason, len(result.attempts)) == (C.FAILED, "rejected", 1)


async def test_cancel_while_sleeping_dials_nothing(rig: Rig) -> None:
    start = await rig.now()
    handle = await rig.start(start + timedelta(days=1))
    state = await handle.execute_update(CallbackWorkflow.cancel, cb.CancelCallback(by="sup"))
    assert state.status == C.CANCELLED and state.end_reason == "cancelled"
    assert (await handle.result()).status == C.CANCELLED
    assert rig.fakes.dials == []
    assert rig.fakes.rows[-1].status == C.CANCELLED


async def test_reschedule_while_sleeping_moves_the_dial(rig: Rig) -> None:
    start = await rig.now()
    handle = await rig.start(start + timedelta(days=1))
    later = cb.next_dial_at(start + timedelta(days=3), ZoneInfo("Europe/Berlin"), cb.Window())
    state = await handle.execute_update(
        CallbackWorkflow.reschedule, cb.Reschedule(later.timestamp(), "Europe/Berlin", "sup")
    )
    assert state.status == C.SCHEDULED and state.timezone == "Europe/Berlin"
    assert cb.from_epoch(state.due_at) == later
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(CallbackWorkflow.reschedule,
                                    cb.Reschedule(later.timestamp(), "Mars/Olympus"))  # fmt: skip
    assert "unknown time zone" in str(refused.value.cause)
    result = await handle.result()
    assert rig.dialled_at() == [later] and result.status == C.COMPLETED


async def test_a_do_not_call_entry_cancels_it_before_it_dials(rig: Rig) -> None:
    start = await rig.now()
    handle = await rig.start(start + timedelta(hours=30))
    rig.fakes.dnc.add(TO)  # added while it sleeps
    result = await handle.result()
    assert (result.status, result.end_reason) == (C.CANCELLED, "do_not_call")
    assert rig.fakes.dials == []


async def test_a_worker_restart_mid_sleep_still_dials_on_time(env: WorkflowEnvironment) -> None:
    rig = Rig(env)
    start = await rig.now()
    due = cb.next_dial_at(start + timedelta(days=2), ZoneInfo(CHICAGO), cb.Window())
    # No cache: the test server never moves a task off a gone worker's sticky queue (a real
    # server does after schedule_to_start), so the first worker must not take one.
    async with rig.worker(max_cached_workflows=0):
        handle = await rig.start(due)
        await handle.query(CallbackWorkflow.get_state)  # its first task ran: it sleeps
    async with rig.worker():  # a new worker process, nothing kept in memory but Temporal's
        result = await handle.result()
    assert result.status == C.COMPLETED and rig.dialled_at() == [due]


async def test_a_full_hourly_cap_delays_the_dial_without_spending_an_attempt(rig: Rig) -> None:
    rig.fakes.capped = 2
    start = await rig.now()
    due = cb.next_dial_at(start + timedelta(hours=5), ZoneInfo(CHICAGO), cb.Window())
    result = await (await rig.start(due, max_attempts=1)).result()
    assert result.status == C.COMPLETED and [a.n for a in result.attempts] == [1]
    [when] = rig.dialled_at()
    assert when >= due + timedelta(seconds=2 * 300), "looked again after the cap, twice"
