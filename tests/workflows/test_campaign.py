"""CampaignWorkflow on the time-skipping test server, the phone line stood in for at its
protocol boundary (testkit/campaigns.py: the real activity names and the real `dial_outcome`
signal): the window in the campaign's zone; do-not-call numbers skipped at dial time; never
more than `max_concurrent` ringing; pause, resume and cancel; a worker restart mid-campaign;
a capped start looked at again later; and 10,000 numbers with `max_concurrent` 5 whose every
run's history stays bounded (it continues as new carrying a cursor, the counts and the calls
still ringing). Where outcomes come in real time (several ringing at once), time skipping is
off: the workflow's only timers are long (a silent call's deadline), and the waits here are on
conditions, never on durations."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import core.callbacks as cb
import core.campaigns as cp
from testkit.campaigns import CampaignStandIns
from workflows.campaign import HELD_BACK_S, CampaignWorkflow

S = cp.CampaignStatus


def zone_at(now: datetime, hour: int) -> str:
    """A fixed-offset zone whose local time is about `hour`:MM at `now`."""
    offset = (hour - now.hour + 12) % 24 - 12  # hours east of UTC, -12..11
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")


def numbers(count: int) -> list[str]:
    return [f"+1555{i:07d}" for i in range(count)]


async def until(what: Callable[[], Any], timeout: float = 120.0) -> None:
    """Wait for a condition (generously: the machine is shared); fail if it never holds."""
    async with asyncio.timeout(timeout):
        while not what():
            await asyncio.sleep(0.02)


async def run_lengths(env: WorkflowEnvironment, handle: WorkflowHandle) -> list[int]:
    """Every run's history length, first to last, following continue-as-new."""
    lengths, run_id = [], handle.first_execution_run_id or handle.result_run_id
    while run_id:
        events = (await env.client.get_workflow_handle(handle.id, run_id=run_id)
                  .fetch_history()).events  # fmt: skip
        lengths.append(len(events))
        last = events[-1]
        run_id = (last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                  if last.HasField("workflow_execution_continued_as_new_event_attributes")
                  else "")  # fmt: skip
    return lengths


class Rig:
    def __init__(self, env: WorkflowEnvironment, count: int, **kw: Any) -> None:
        self.env = env
        self.fakes = CampaignStandIns(env.client, numbers(count), **kw)
        self.queue = f"campaign-{uuid.uuid4().hex[:8]}"

    def worker(self, **kw: Any) -> Worker:
        return Worker(self.env.client, task_queue=self.queue, workflows=[CampaignWorkflow],
                      activities=self.fakes.activities(), **kw)  # fmt: skip

    async def start(self, hour: int = 14, **kw: Any) -> tuple[WorkflowHandle, cp.CampaignRequest]:
        zone = zone_at(await self.env.get_current_time(), hour)
        req = cp.CampaignRequest(f"cp{uuid.uuid4().hex[:12]}", zone, len(self.fakes.numbers),
                                 **kw)  # fmt: skip
        handle = await self.env.client.start_workflow(
            CampaignWorkflow.run, req, id=cp.campaign_workflow_id(req.campaign_id),
            task_queue=self.queue, execution_timeout=timedelta(days=30),
        )  # fmt: skip
        return handle, req

    async def state(self, handle: WorkflowHandle) -> cp.CampaignState:
        return await handle.query(CampaignWorkflow.progress)


@pytest.fixture
def env(temporal_test_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return temporal_test_env


async def test_dials_only_inside_the_window_and_skips_do_not_call(env: WorkflowEnvironment) -> None:
    rig = Rig(env, 12, dnc={numbers(12)[3], numbers(12)[9]})
    async with rig.worker():
        handle, req = await rig.start(hour=22, max_concurrent=3, batch_size=5)  # closed now
        result = await handle.result()
    assert result.status == S.COMPLETED
    p = result.progress
    assert (p.dialled, p.skipped, p.answered, p.remaining) == (10, 2, 10, 0)
    assert rig.fakes.started == [s for s in range(1, 13) if s not in (4, 10)]
    zone, window = ZoneInfo(req.timezone), cb.Window.parse(req.hours)
    for at in rig.fakes.started_at:
        assert window.start <= at.astimezone(zone).time() < window.end, at
    assert rig.fakes.written == {s: "do_not_call" if s in (4, 10) else "answered"
                                 for s in range(1, 13)}  # fmt: skip


async def test_never_more_than_max_concurrent_ring(env: WorkflowEnvironment) -> None:
    rig = Rig(env, 120, report="async",
              outcome=lambda seq: ("answered", "busy", "no_answer", "rejected")[seq % 4])  # fmt: skip
    with env.auto_time_skipping_disabled():
        async with rig.worker():
            handle, _ = await rig.start(max_concurrent=5, batch_size=7, max_events=60)
            result = await handle.result()
    p = result.progress
    assert (p.dialled, p.answered, p.busy, p.no_answer, p.failed) == (120, 30, 30, 30, 30)
    assert sorted(rig.fakes.started) == list(range(1, 121))
    assert 1 < rig.fakes.most_ringing <= 5
    assert len(rig.fakes.written) == 120 and result.runs > 1


async def test_pause_resume_and_cancel(env: WorkflowEnvironment) -> None:
    rig = Rig(env, 20, report="manual")
    with env.auto_time_skipping_disabled():
        async with rig.worker():
            handle, _ = await rig.start(max_concurrent=2)
            await until(lambda: len(rig.fakes.started) == 2)
            await handle.signal(CampaignWorkflow.pause)
            assert await rig.fakes.release(handle.id) == 2
            st = await rig.state(handle)
            while st.ringing:  # both outcomes counted, and nothing new dialled while paused
                await asyncio.sleep(0.02)
                st = await rig.state(handle)
            assert st.status == S.PAUSED and rig.fakes.started == [1, 2]
            await handle.signal(CampaignWorkflow.resume)
            await until(lambda: len(rig.fakes.started) == 4)
            await handle.signal(CampaignWorkflow.cancel)
            await rig.fakes.release(handle.id)  # the calls ringing when it was cancelled
            result = await handle.result()
    assert result.status == S.CANCELLED
    assert rig.fakes.started == [1, 2, 3, 4]
    assert (result.progress.dialled, result.progress.answered, result.progress.remaining) == (
        4, 4, 16)  # fmt: skip


async def test_a_worker_restart_mid_campaign(env: WorkflowEnvironment) -> None:
    rig = Rig(env, 60, report="manual")
    with env.auto_time_skipping_disabled():
        # No cache: the test server never moves a task off a gone worker's sticky queue (a real
        # server does after schedule_to_start), so the first worker must not take one.
        async with rig.worker(max_cached_workflows=0):
            handle, _ = await rig.start(max_concurrent=3, batch_size=10, max_events=80)
            await until(lambda: len(rig.fakes.started) == 3)  # all places taken: it waits
        assert rig.fakes.started == [1, 2, 3]
        await rig.fakes.release(handle.id)  # reported while no worker runs
        rig.fakes.report = "async"
        async with rig.worker():  # a new worker, nothing kept in memory but Temporal's
            result = await handle.result()
    assert result.status == S.COMPLETED and result.runs > 1
    assert sorted(rig.fakes.started) == list(range(1, 61))
    assert result.progress.answered == 60


async def test_a_held_back_start_is_tried_again_later(env: WorkflowEnvironment) -> None:
    rig = Rig(env, 4, held_back=2)
    before = await env.get_current_time()
    async with rig.worker():
        handle, _ = await rig.start(max_concurrent=4)
        result = await handle.result()
    assert result.progress.answered == 4 and rig.fakes.started == [1, 2, 3, 4]
    assert rig.fakes.started_at[0] - before >= timedelta(seconds=2 * HELD_BACK_S)


COUNT = 10_000


async def test_ten_thousand_numbers_keep_every_run_bounded(env: WorkflowEnvironment) -> None:
    rig = Rig(env, COUNT, dnc={numbers(COUNT)[7]},
              outcome=lambda seq: ("answered", "busy", "no_answer")[seq % 3])  # fmt: skip
    async with rig.worker():
        handle, _ = await rig.start(max_concurrent=5, batch_size=100)
        result = await handle.result()
    p = result.progress
    assert result.status == S.COMPLETED
    assert (p.dialled, p.skipped, p.remaining) == (COUNT - 1, 1, 0)
    assert p.answered + p.busy + p.no_answer == COUNT - 1
    assert len(rig.fakes.written) == COUNT
    lengths = await run_lengths(env, handle)
    print(f"campaign of {COUNT}: {len(lengths)} runs, longest {max(lengths)} events, "
          f"{sum(lengths)} in all")  # fmt: skip
    assert len(lengths) == result.runs > 1
    # A run continues as new after the start that passed 2,000 events: one start's worth more.
    assert max(lengths) < 2000 + 40
