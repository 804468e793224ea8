"""`SignalQueue` names the workflow's run (no current-run read on the server per signal) and
follows the workflow across continue-as-new without losing or doubling a signal."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agent.signals import SignalQueue
from core import models as m


@dataclass
class Seen:
    lines: list[str] = field(default_factory=list)


@workflow.defn(sandboxed=False)
class RunsWorkflow:
    """Notes each line's id; a line with text "cut" makes it continue as new."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.cut = self.ended = False

    @workflow.run
    async def run(self, before: Seen) -> Seen:
        self.seen = [*before.lines, *self.seen]  # signals of the first task come before run()
        await workflow.wait_condition(lambda: self.cut or self.ended)
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self.cut:
            workflow.continue_as_new(Seen(self.seen))
        return Seen(self.seen)

    @workflow.signal(name=m.SIGNAL_TRANSCRIPT)
    def transcript(self, line: m.TranscriptLine) -> None:
        self.seen.append(line.id)
        self.cut = self.cut or line.text == "cut"

    @workflow.signal(name=m.SIGNAL_TRANSCRIPT_BATCH)
    def transcript_batch(self, batch: m.TranscriptBatch) -> None:
        for one in batch.lines:
            self.transcript(one)

    @workflow.signal(name=m.SIGNAL_PARTICIPANT_LEFT)
    def participant_left(self, sig: m.ParticipantLeft) -> None:
        self.ended = True


def line(line_id: str, text: str = "hello") -> m.TranscriptLine:
    return m.TranscriptLine(id=line_id, speaker="customer", text=text)


async def test_signals_name_the_run_and_follow_it_across_continue_as_new(
    temporal_dev_env: WorkflowEnvironment,
) -> None:
    client = temporal_dev_env.client
    queue_name = f"runs-{uuid.uuid4().hex[:8]}"

    async def connect() -> Client:
        return client

    async with Worker(client, task_queue=queue_name, workflows=[RunsWorkflow]):
        handle = await client.start_workflow(
            RunsWorkflow.run, Seen(), id=f"runs-{uuid.uuid4().hex[:8]}", task_queue=queue_name
        )
        first_run = handle.result_run_id
        queue = SignalQueue(handle.id, connect, backoff_initial_s=0.1, backoff_max_s=0.5)
        queue.start()
        queue.send(m.SIGNAL_TRANSCRIPT, line("a"))
        queue.send(m.SIGNAL_TRANSCRIPT, line("cut", "cut"))
        assert await queue.drain(10)
        assert queue._run_id == first_run  # signals went to the run, not through a lookup

        async def continued() -> bool:
            desc = await client.get_workflow_handle(handle.id, run_id=first_run).describe()
            return desc.status == WorkflowExecutionStatus.CONTINUED_AS_NEW

        await until_async(continued)
        queue.send(m.SIGNAL_TRANSCRIPT, line("b"))  # goes to the ended run first: NOT_FOUND
        queue.send(m.SIGNAL_PARTICIPANT_LEFT, m.ParticipantLeft("left-1", "customer", "customer"))
        assert await queue.aclose(10)
        result = await client.get_workflow_handle(handle.id, result_type=Seen).result()

    assert result.lines == ["a", "cut", "b"]  # nothing lost, nothing twice
    assert queue.dropped == 0 and queue.delivered == 4  # a+cut may share one batch signal
    assert queue._run_id not in ("", first_run)  # it follows the new run


async def test_a_workflow_that_has_ended_still_makes_the_signal_undeliverable(
    temporal_dev_env: WorkflowEnvironment,
) -> None:
    client = temporal_dev_env.client
    queue_name = f"runs-{uuid.uuid4().hex[:8]}"

    async def connect() -> Client:
        return client

    async with Worker(client, task_queue=queue_name, workflows=[RunsWorkflow]):
        handle = await client.start_workflow(
            RunsWorkflow.run, Seen(), id=f"runs-{uuid.uuid4().hex[:8]}", task_queue=queue_name
        )
        queue = SignalQueue(handle.id, connect, backoff_initial_s=0.1, backoff_max_s=0.5)
        queue.start()
        queue.send(m.SIGNAL_PARTICIPANT_LEFT, m.ParticipantLeft("left-1", "customer", "customer"))
        assert await queue.drain(10)
        await handle.result()
        queue.send(m.SIGNAL_TRANSCRIPT, line("late"))  # its run ended, and no run follows it
        assert await queue.aclose(10)
    assert queue.dropped == 1 and queue.delivered == 1


async def until_async(check: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)
