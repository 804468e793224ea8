"""Failed recording pipelines: find them through the `RecordingStatus` search attribute, and
replay them with `workflows.client.retry_recording` (the same function behind
`POST /api/recordings/{id}/retry`, so a change to how a retry works reaches both at once).

Visibility keeps every run: a pipeline counts as failed only when its latest run is marked
`failed` and did not complete (a replayed one that stored its file is not listed again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistoryEventFilterType
from temporalio.exceptions import FailureError
from temporalio.service import RPCError, RPCStatusCode

from core import models as m
from workflows import client as wclient
from workflows import search as sa

RETRY_CONCURRENCY = 16  # I/O bound: 4 RPCs each (bench.ops_retry: 16 at once is twice as fast as 4)
QUERY_TIMEOUT = timedelta(seconds=5)


@dataclass
class FailedRecording:
    call_id: str
    workflow_id: str
    run_id: str
    status: str  # the latest run's execution status (FAILED, TIMED_OUT, RUNNING while it waits)
    closed_at: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class RetryOutcome:
    call_id: str
    outcome: str  # started | refused | error, then stored | failed with --wait
    detail: str = ""
    run_id: str = ""


def failed_query(since: datetime | None = None) -> str:
    q = f"WorkflowType = '{m.WORKFLOW_RECORDING}' AND {m.SA_RECORDING_STATUS} = 'failed'"
    if since is not None:
        q += f" AND (CloseTime > '{since.isoformat()}' OR ExecutionStatus = 'Running')"
    return q


def call_id_of(workflow_id: str) -> str:
    return workflow_id.removeprefix("recording-")


async def find_failed(
    client: Client, *, since: datetime | None = None, limit: int = 10_000
) -> list[FailedRecording]:
    """Pipelines whose latest run failed (oldest first), each with why."""
    seen: dict[str, FailedRecording] = {}
    async for ex in client.list_workflows(failed_query(since), limit=limit):
        if ex.id in seen:
            continue
        try:
            found = await _still_failed(client, ex.id, ex.run_id)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            continue  # deleted since it was listed (the call was erased): nothing to retry
        if found is not None:
            seen[ex.id] = found
    return sorted(seen.values(), key=lambda f: (f.closed_at, f.call_id))


async def _still_failed(client: Client, wid: str, listed_run_id: str) -> FailedRecording | None:
    """The listed pipeline as it is now, when its latest run is still the failed one."""
    latest = await client.get_workflow_handle(wid).describe()
    if latest.run_id != listed_run_id:
        return None  # replayed since: the latest run is listed on its own if it failed too
    if latest.status == WorkflowExecutionStatus.COMPLETED:
        return None
    if latest.typed_search_attributes.get(sa.RECORDING_STATUS) != m.RecordingStatus.FAILED:
        return None
    return FailedRecording(
        call_id=call_id_of(wid),
        workflow_id=wid,
        run_id=latest.run_id,
        status=latest.status.name if latest.status else "",
        closed_at=latest.close_time.isoformat() if latest.close_time else "",
        reason=await _reason(client, wid, latest.run_id, latest.status),
    )


async def _reason(
    client: Client, wid: str, run_id: str, status: WorkflowExecutionStatus | None
) -> str:
    handle = client.get_workflow_handle(wid, run_id=run_id)
    if status == WorkflowExecutionStatus.RUNNING:
        # A pipeline waiting for ops keeps its last error in its state.
        try:
            state = await handle.query("get_status", rpc_timeout=QUERY_TIMEOUT)
            return str((state or {}).get("error", "")) if isinstance(state, dict) else ""
        except Exception as exc:  # no worker to answer: the list still shows the pipeline
            return f"(state not available: {type(exc).__name__})"
    async for event in handle.fetch_history_events(
        event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT
    ):
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            # Encrypted with the payloads when PAYLOAD_KEYS is set: decode, never read `message`.
            err = await client.data_converter.decode_failure(
                event.workflow_execution_failed_event_attributes.failure
            )
            while isinstance(err.__cause__, FailureError) and err.__cause__.message:
                err = err.__cause__
            return err.message if isinstance(err, FailureError) else str(err)
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
            return "the pipeline timed out"
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
            return f"terminated: {event.workflow_execution_terminated_event_attributes.reason}"
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
            return "cancelled"
    return ""


async def retry_one(client: Client, call_id: str) -> RetryOutcome:
    try:
        retry = await wclient.retry_recording(client, call_id)
    except wclient.RecordingRetryRefused as exc:
        return RetryOutcome(call_id, "refused", f"{exc.code}: {exc}")
    except RPCError as exc:
        if exc.status == RPCStatusCode.ALREADY_EXISTS:
            return RetryOutcome(call_id, "refused", "still_running: restarted already")
        if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise
        return RetryOutcome(call_id, "error", f"{exc.status.name}: {exc.message}")
    return RetryOutcome(call_id, "started", run_id=str(getattr(retry, "run_id", "") or ""))


async def wait_outcome(client: Client, outcome: RetryOutcome, timeout_s: float) -> None:
    """Wait until the replayed pipeline closes; `outcome` becomes stored or failed."""
    handle = client.get_workflow_handle(m.recording_workflow_id(outcome.call_id))
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        desc = await handle.describe()
        status = desc.typed_search_attributes.get(sa.RECORDING_STATUS)
        if desc.status == WorkflowExecutionStatus.COMPLETED or status == m.RecordingStatus.STORED:
            outcome.outcome = "stored"
            return
        if desc.status != WorkflowExecutionStatus.RUNNING:
            outcome.outcome, outcome.detail = "failed", desc.status.name if desc.status else ""
            return
        if asyncio.get_running_loop().time() > deadline:
            outcome.detail = f"still {status or 'running'} after {timeout_s:.0f} s"
            return
        await asyncio.sleep(0.5)


async def retry_many(
    client: Client,
    call_ids: list[str],
    *,
    on_done: Callable[[RetryOutcome], None],
    wait_s: float = 0.0,
    concurrency: int = RETRY_CONCURRENCY,
) -> list[RetryOutcome]:
    """Replay each pipeline (a few at a time); with `wait_s`, also wait for each outcome."""
    gate = asyncio.Semaphore(concurrency)

    async def one(call_id: str) -> RetryOutcome:
        async with gate:
            outcome = await retry_one(client, call_id)
            if wait_s and outcome.outcome == "started":
                await wait_outcome(client, outcome, wait_s)
        on_done(outcome)
        return outcome

    return list(await asyncio.gather(*(one(c) for c in call_ids)))
