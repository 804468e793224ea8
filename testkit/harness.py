"""A worker with stand-in activities on a task queue of its own, and the outside world of a call.

`running_harness(env)` runs `CallWorkflow` and `RecordingWorkflow` with a fresh `StandIns` on a
new task queue of `env` (the time-skipping test server or the dev server); a `Harness` starts
calls and issues their tokens, and plays the agent and the customer with signals. On the way
out it ends, and waits for, every call it started: a run left behind would hold the next
user's server back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

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
from testkit.standins import StandIns
from workflows.call import CallWorkflow
from workflows.recording import RecordingWorkflow

CUSTOMER = "Ada Lovelace"
AGENT = "agent-sarah-1"


@dataclass
class Harness:
    """A worker's task queue on `env`, its stand-ins (`fakes`), and every workflow it started."""

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
        handle = await self.start_without_token(**config)
        # By name with its result type, as workflows/ does: mypy reads the method reference's
        # result as a coroutine.
        grant = await handle.execute_update(
            m.UPDATE_ISSUE_TOKEN,
            m.IssueTokenRequest(customer_name=CUSTOMER),
            result_type=m.TokenGrant,
        )
        return handle, grant

    async def start_without_token(self, **config: object) -> WorkflowHandle:
        """Start a call without issuing a token: no customer is expected in it."""
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
        return handle

    async def start_phone(
        self, *, room_name: str = "", dial: m.DialRequest | None = None, **config: object
    ) -> WorkflowHandle:
        """Start a phone call as the API or the agent does: inbound (LiveKit's `room_name`) or
        outbound (`dial`). No token: a phone needs none."""
        config.setdefault("customer_join_timeout_s", 7 * 24 * 3600.0)
        base = m.CallConfig(livekit_url="ws://livekit.test", **config)  # type: ignore[arg-type]
        if dial is not None:
            call_id = m.new_call_id()
            cfg = base.for_phone(m.Direction.OUTBOUND, phone=dial.to, dial=dial)
        else:
            call_id = m.phone_call_id(room_name)
            cfg = base.for_phone(m.Direction.INBOUND, room_name=room_name)
        self.started += [m.call_workflow_id(call_id), m.recording_workflow_id(call_id)]
        return await self.client.start_workflow(
            CallWorkflow.run,
            m.CallInput(call_id=call_id, customer_name=None, config=cfg),
            id=m.call_workflow_id(call_id),
            task_queue=self.task_queue,
        )

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

    async def waiting_for_ops(self, call_id: str, timeout_s: float = 30.0) -> WorkflowHandle:
        """The call's recording pipeline, once it says it waits for ops. Its `failed` row is
        written by an activity before the run starts waiting (its next task): an ops update
        sent in between is refused as "not waiting"."""
        rec = self.client.get_workflow_handle(m.recording_workflow_id(call_id))
        for _ in range(int(timeout_s / 0.02)):
            with contextlib.suppress(RPCError):  # not started yet
                if (await rec.query(RecordingWorkflow.get_status))["waiting_for_ops"]:
                    return rec
            await asyncio.sleep(0.02)
        raise AssertionError(f"the pipeline of {call_id} never waited for ops")

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
        max_heartbeat_throttle_interval=timedelta(seconds=1),  # cancellations arrive quickly
    ):
        harness = Harness(env, task_queue, fakes)
        yield harness
        await stop_leftovers(env.client, harness.started)


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


async def continued_as_new_input_sizes(h: Harness, handle: WorkflowHandle) -> list[int]:
    """The encoded size of each continue-as-new input of the call, run by run."""
    sizes: list[int] = []
    run_id = handle.first_execution_run_id
    while run_id:
        history = await h.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        last = history.events[-1]
        if not last.HasField("workflow_execution_continued_as_new_event_attributes"):
            break
        attrs = last.workflow_execution_continued_as_new_event_attributes
        sizes.append(sum(p.ByteSize() for p in attrs.input.payloads))
        run_id = attrs.new_execution_run_id
    return sizes
