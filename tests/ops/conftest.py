"""tests/ops run the CLI in process (`ops.cli.run`) against the API tests' real stack: the
Temporal dev server, PostgreSQL, the S3 endpoint, the LiveKit emulator and a worker."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution as ProtoExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecution

from core.models import QUERY_GET_STATE, CallState, TranscriptLine
from ops.cli import run
from tests.api.conftest import (  # noqa: F401  (fixtures re-used here)
    SUPERVISOR,
    ApiStack,
    _api_stack_session,
    _live_calls,
    api_stack,
    db,
    say_lines,
    start_live_call,
)


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


async def ops(stack: ApiStack, *argv: str, **overrides: Any) -> CliResult:
    """`python -m ops ARGV` in this process, with the stack's settings."""
    out, err = io.StringIO(), io.StringIO()
    settings = stack.settings.model_copy(update=overrides) if overrides else stack.settings
    code = await run(list(argv), settings=settings, stdout=out, stderr=err)
    return CliResult(code, out.getvalue(), err.getvalue())


async def wait_call(
    stack: ApiStack, call_id: str, *, timeout: float = 60.0, **want: str
) -> dict[str, Any]:
    """Poll `GET /api/calls/{id}` until every field in `want` has its value."""
    deadline = time.monotonic() + timeout
    while True:
        r = await stack.api.http("GET", f"/api/calls/{call_id}", token=SUPERVISOR)
        if r.status == 200 and all(r.body.get(k) == v for k, v in want.items()):
            return r.body  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"call {call_id} never reached {want}: {r.body}"
        await asyncio.sleep(0.3)


GREETING = "Hello! Welcome to CME Auto Sales. My name is Sarah. This call is recorded."


async def recorded_call(stack: ApiStack, name: str, lines: list[tuple[str, str]] = ()) -> str:  # type: ignore[assignment]
    """A live call whose agent greeted (so egress runs), with `lines` said after the greeting."""
    call_id = await start_live_call(stack, name)
    said = [("assistant", GREETING), *lines]
    await say_lines(stack, call_id, [TranscriptLine(id=f"l{i}", speaker=speaker, text=text)
                                     for i, (speaker, text) in enumerate(said)])  # fmt: skip
    await wait_call(stack, call_id, recording_status="recording", timeout=30)
    # Active, as LiveKit reports it: an egress stopped before that is aborted without a file.
    handle = stack.client.get_workflow_handle(f"call-{call_id}")
    deadline = time.monotonic() + 30
    while (await handle.query(QUERY_GET_STATE, result_type=CallState)).egress.status != (  # type: ignore[union-attr]
        "EGRESS_ACTIVE"
    ):
        assert time.monotonic() < deadline, "the egress never became active"
        await asyncio.sleep(0.1)
    return call_id


async def listed_then_one_deleted(
    client: Client, workflow_type: str = "NoWorkerRunsThis", n: int = 2
) -> tuple[list[WorkflowExecution], WorkflowExecution]:
    """`n` executions on a queue no worker polls (they only need to exist), as Temporal lists
    them; then the first is deleted, as an erasure or retention would between a listing and
    what ops does with it."""
    queue = f"no-worker-{uuid.uuid4().hex[:8]}"
    ids = [f"listed-{uuid.uuid4().hex[:8]}" for _ in range(n)]
    for wid in ids:
        await client.start_workflow(workflow_type, id=wid, task_queue=queue)
    listed: list[WorkflowExecution] = []
    for _ in range(100):  # the dev server's visibility lags its writes a little
        listed = [e async for e in client.list_workflows(f"TaskQueue = '{queue}'")]
        if len(listed) == n:
            break
        await asyncio.sleep(0.1)
    assert sorted(e.id for e in listed) == sorted(ids)
    deleted = listed[0]
    await client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=ProtoExecution(workflow_id=deleted.id, run_id=deleted.run_id or ""),
        )
    )
    return listed, deleted
