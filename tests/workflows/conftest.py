"""A worker with stand-in activities on its own task queue, per test, on the shared test server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core import models as m
from tests.workflows.standins import StandIns
from workflows.call import CallWorkflow
from workflows.recording import RecordingWorkflow

CUSTOMER = "Ada Lovelace"
AGENT = "agent-sarah-1"


@dataclass
class Harness:
    env: WorkflowEnvironment
    task_queue: str
    fakes: StandIns
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    started: list[str] = field(default_factory=list)

    @property
    def client(self) -> Client:
        return self.env.client

    def sid(self, prefix: str = "sig") -> str:
        return f"{prefix}-{next(self._ids)}"

    async def start(self, **config: object) -> tuple[WorkflowHandle, m.TokenGrant]:
        """Start a call and issue its token (start-then-update: the time-skipping server
        cannot do update-with-start)."""
        call_id = m.new_call_id()
        self.started += [m.call_workflow_id(call_id), m.recording_workflow_id(call_id)]
        # The harness joins no customer: tests opt in to the customer-join timeout.
        config.setdefault("customer_join_timeout_s", 7 * 24 * 3600.0)
        # A customer who leaves is gone at once unless a test opts in to the rejoin grace.
        config.setdefault("customer_rejoin_grace_s", 0.0)
        cfg = m.CallConfig(livekit_url="ws://livekit.test", **config)  # type: ignore[arg-type]
        handle = await self.client.start_workflow(
            CallWorkflow.run,
            m.CallInput(call_id=call_id, customer_name=CUSTOMER, config=cfg),
            id=m.call_workflow_id(call_id),
            task_queue=self.task_queue,
        )
        grant = await handle.execute_update(
            CallWorkflow.issue_token, m.IssueTokenRequest(customer_name=CUSTOMER)
        )
        return handle, grant

    async def query(self, handle: WorkflowHandle, query: Any, *args: Any) -> Any:
        """A query that tolerates the moments a burst of signals makes the server refuse a
        continue-as-new (UnhandledCommand): until the next workflow task completes, queries
        are refused too."""
        return await patiently(lambda: handle.query(query, *args))

    async def agent_joins(self, handle: WorkflowHandle) -> None:
        await handle.signal(CallWorkflow.agent_joined, m.AgentJoined(self.sid("aj"), AGENT))

    async def say(self, handle: WorkflowHandle, speaker: str, text: str) -> str:
        line_id = self.sid("line")
        await handle.signal(CallWorkflow.transcript, m.TranscriptLine(line_id, speaker, text))
        return line_id

    async def customer_leaves(self, handle: WorkflowHandle) -> None:
        call_id = handle.id.removeprefix("call-")
        await handle.signal(
            CallWorkflow.participant_left,
            m.ParticipantLeft(self.sid("pl"), m.customer_identity(call_id), "customer"),
        )


@asynccontextmanager
async def running_harness(env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    fakes = StandIns()
    task_queue = f"calls-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[CallWorkflow, RecordingWorkflow],
        activities=fakes.activities(),
    ):
        harness = Harness(env, task_queue, fakes)
        yield harness
        await stop_leftovers(env.client, harness.started)


@pytest.fixture
async def harness(temporal_test_env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    """On the time-skipping test server."""
    async with running_harness(temporal_test_env) as h:
        yield h


@pytest.fixture
async def dev_harness(temporal_dev_env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    """On the dev server (real time). For bursts of concurrent signals: they make the
    time-skipping server fail workflow tasks (UnhandledCommand) and then stop skipping time."""
    async with running_harness(temporal_dev_env) as h:
        yield h


async def patiently(call: Callable[[], Awaitable[Any]], for_s: float = 15.0) -> Any:
    """`call()`, asked again while the server answers that the workflow is not ready."""
    deadline = asyncio.get_running_loop().time() + for_s
    while True:
        try:
            return await call()
        except (RPCError, WorkflowQueryFailedError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.3)


async def stop_leftovers(client: Client, workflow_ids: list[str]) -> None:
    """End what a test left running. Calls are ended the normal way and run to completion:
    terminating a run while its workflow task is in flight leaves the time-skipping server
    unable to skip time for every later test."""
    for wf_id in workflow_ids:
        handle = client.get_workflow_handle(wf_id)
        try:
            desc = await handle.describe()
        except RPCError:
            continue  # never started
        if desc.status != WorkflowExecutionStatus.RUNNING:
            continue
        if wf_id.startswith("call-"):
            with contextlib.suppress(WorkflowUpdateFailedError):
                await patiently(
                    functools.partial(
                        handle.execute_update,
                        CallWorkflow.end_call,
                        m.EndCallRequest("test finished", by="system"),
                    )
                )
        try:
            await asyncio.wait_for(handle.result(), 30)
        except Exception:  # noqa: BLE001 - whatever it ended with, it has ended
            await asyncio.sleep(0.5)
            with contextlib.suppress(RPCError):
                await handle.terminate("test finished")
