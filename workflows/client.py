"""What the API and ops call from outside the workflows (client side, not workflow code).

- `start_call`: update-with-start of `CallWorkflow` + `issue_token` (what `POST /api/calls` does).
- `end_call`: the `end_call` update.
- `retry_recording`: replay a failed recording pipeline (`POST /api/recordings/{id}/retry`).
- `start_erase`: start (or join) `EraseCallWorkflow(erase-<call_id>)` (`DELETE /api/calls/{id}`
  and `ops calls erase`, so the two never erase a call twice).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    PinnedVersioningOverride,
    WorkerDeploymentVersion,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from core import models as m
from workflows import search as sa
from workflows.call import CallWorkflow
from workflows.erase import EraseCallWorkflow
from workflows.recording import RecordingWorkflow

T = TypeVar("T")


class RecordingRetryRefused(Exception):
    """The pipeline cannot be replayed now; `code` says why (for a 404/409 answer)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        # not_found | still_running | already_stored | given_up | call_still_running |
        # not_waiting | erasing
        self.code = code


@dataclass
class RecordingRetry:
    workflow_id: str
    run_id: str
    previous_run_id: str
    previous_status: str


async def start_call(
    client: Client,
    call_id: str,
    customer_name: str | None,
    config: m.CallConfig,
    *,
    task_queue: str,
    pinned_to: WorkerDeploymentVersion | None = None,
) -> m.TokenGrant:
    """Start `call-<call_id>` and get the customer's token in one round trip.

    `pinned_to` pins the call to that Worker Deployment Version from its first task (the bridge
    from an unversioned release, PIN_NEW_CALLS_TO: the Deployment then has no Current Version
    to pin it); None lets the Current Version take it, as every call does once one is set.

    Raises `temporalio.client.WorkflowUpdateFailedError` when the room cannot be created
    (the call then ends `failed` by itself) and `WorkflowAlreadyStartedError` if the id is taken.
    """
    start = WithStartWorkflowOperation(
        CallWorkflow.run,
        m.CallInput(call_id=call_id, customer_name=customer_name, config=config),
        id=m.call_workflow_id(call_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        versioning_override=PinnedVersioningOverride(pinned_to) if pinned_to else None,
    )
    try:
        return await client.execute_update_with_start_workflow(
            m.UPDATE_ISSUE_TOKEN,
            m.IssueTokenRequest(customer_name=customer_name),
            start_workflow_operation=start,
            result_type=m.TokenGrant,
        )
    except Exception:  # re-raised below; only the duplicate copy of it is read here
        # The start operation holds the same error in a future of its own: read it, or asyncio
        # reports "Future exception was never retrieved" when the operation is collected.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(start.workflow_handle(), timeout=0.1)
        raise


async def start_inbound_phone_call(
    client: Client,
    room_name: str,
    config: m.CallConfig,
    *,
    task_queue: str,
    pinned_to: WorkerDeploymentVersion | None = None,
    signal: str = "",
    arg: object = None,
) -> str:
    """Start (or find) the call of an inbound phone call's room; returns its call id.

    Whoever learns of the call first starts it, the agent's job or the caller's
    `participant_joined` webhook; the other finds it running (`signal`, if given, is delivered
    either way: signal-with-start). A call of that room that has already ended is not started
    again: `WorkflowAlreadyStartedError`."""
    call_id = m.phone_call_id(room_name)
    cfg = config.for_phone(m.Direction.INBOUND.value, room_name=room_name)
    inp = m.CallInput(call_id=call_id, customer_name=None, config=cfg)
    await _start_phone(client, inp, task_queue, pinned_to, WorkflowIDConflictPolicy.USE_EXISTING,
                       signal, arg)  # fmt: skip
    return call_id


async def start_outbound_phone_call(
    client: Client,
    call_id: str,
    customer_name: str | None,
    config: m.CallConfig,
    dial: m.DialRequest,
    *,
    task_queue: str,
    pinned_to: WorkerDeploymentVersion | None = None,
) -> None:
    """Start `call-<call_id>` that dials `dial.to` (workflows/phone.py)."""
    cfg = config.for_phone(m.Direction.OUTBOUND.value, phone=dial.to, dial=dial)
    inp = m.CallInput(call_id=call_id, customer_name=customer_name, config=cfg)
    await _start_phone(client, inp, task_queue, pinned_to, WorkflowIDConflictPolicy.FAIL)


async def _start_phone(
    client: Client,
    inp: m.CallInput,
    task_queue: str,
    pinned_to: WorkerDeploymentVersion | None,
    conflict: WorkflowIDConflictPolicy,
    signal: str = "",
    arg: object = None,
) -> None:
    """Start a phone call's workflow; never a second run of an id whose call has ended."""
    await client.start_workflow(
        CallWorkflow.run,
        inp,
        id=m.call_workflow_id(inp.call_id),
        task_queue=task_queue,
        id_conflict_policy=conflict,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        versioning_override=PinnedVersioningOverride(pinned_to) if pinned_to else None,
        start_signal=signal or None,
        start_signal_args=[arg] if signal else [],
    )


# How long an update waits out a workflow task the server reports failing (it retries it).
NOT_READY_FOR_S = 30.0


def workflow_not_ready(exc: BaseException) -> bool:
    """The server refused an update because the run's workflow task is failing or timed out
    (`WorkflowNotReadyFailure`, FAILED_PRECONDITION): transient, the server retries the task.
    Seen when a local activity (the call's set-up) outlives the workflow task's timeout."""
    return (
        isinstance(exc, RPCError)
        and exc.status == RPCStatusCode.FAILED_PRECONDITION
        and any(d.type_url.endswith("WorkflowNotReadyFailure") for d in exc.grpc_status.details)
    )


async def when_ready(op: Callable[[], Awaitable[T]], for_s: float = NOT_READY_FOR_S) -> T:
    """`op()`, tried again while the server answers that the workflow is not ready."""
    loop = asyncio.get_running_loop()
    give_up, pause = loop.time() + for_s, 0.2
    while True:
        try:
            return await op()
        except RPCError as exc:
            if not workflow_not_ready(exc) or loop.time() + pause > give_up:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 2.0)


async def end_call(client: Client, call_id: str, reason: str, by: str) -> m.EndCallResult:
    """End a live call. `WorkflowUpdateFailedError` (cause ApplicationError type `CallEnded` or
    `InvalidReason`) when refused; `RPCError` NOT_FOUND for an unknown or finished call. A run
    whose workflow task is failing for the moment is waited out (`when_ready`)."""
    handle = client.get_workflow_handle(m.call_workflow_id(call_id))
    return await when_ready(
        lambda: handle.execute_update(
            m.UPDATE_END_CALL, m.EndCallRequest(reason, by), result_type=m.EndCallResult
        )
    )


async def start_erase(
    client: Client,
    call_id: str,
    *,
    by: str,
    task_queue: str,
    execution_timeout: timedelta | None = None,
) -> WorkflowHandle[EraseCallWorkflow, m.EraseCallResult]:
    """Start `erase-<call_id>`, or join the erasure already running under that id (a failed one
    may be started again). Raises `RPCError` when Temporal does not answer."""
    return await client.start_workflow(
        EraseCallWorkflow.run,
        m.EraseCallInput(
            call_id=call_id, requested_by=by, requested_at=datetime.now(UTC).isoformat()
        ),
        id=m.erase_workflow_id(call_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        execution_timeout=execution_timeout,
    )


async def give_up_recording(client: Client, call_id: str, *, by: str, reason: str = "") -> str:
    """Tell a pipeline waiting for ops to stop for good (its recording stays `failed`).
    Returns the recording status; `RecordingRetryRefused` when it is not waiting."""
    handle = client.get_workflow_handle(m.recording_workflow_id(call_id))
    try:
        done = await when_ready(
            lambda: handle.execute_update(
                m.UPDATE_RECORDING_GIVE_UP,
                m.RecordingOpsRequest(by=by, reason=reason),
                result_type=m.RecordingOpsResult,
            )
        )
    except WorkflowUpdateFailedError as err:
        raise RecordingRetryRefused("not_waiting", "the pipeline is not waiting for ops") from err
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise RecordingRetryRefused("not_found", "no running recording pipeline") from None
        raise
    return done.status


async def retry_recording(
    client: Client,
    call_id: str,
    *,
    retry_for_s: float | None = None,
    by: str = "ops",
    reason: str = "",
) -> RecordingRetry:
    """Retry a recording pipeline: the `retry` update of a run waiting for ops (release 2),
    or a new run of `recording-<call_id>` with the failed run's input (runs from before).

    A new run is allowed only when the latest run failed, timed out, was cancelled or
    terminated and the call's own workflow has finished. The new run writes the outcome to PostgreSQL itself
    (recording row, the call's recording_status, and a `recording` event with the next seq).
    Raises `RecordingRetryRefused` otherwise, and always once the call's erasure has started
    (a new run would put back the recording the erasure removes): checked before, and again
    after the new run started (an erasure that began meanwhile cancels it).
    """
    if await _erasure_started(client, call_id):
        raise RecordingRetryRefused("erasing", "the call is being erased, or was")
    handle = client.get_workflow_handle(m.recording_workflow_id(call_id))
    try:
        desc = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise RecordingRetryRefused(
                "not_found", "no recording pipeline for this call"
            ) from None
        raise
    if desc.status == WorkflowExecutionStatus.RUNNING:
        # Release 2: a pipeline out of retries waits for this update instead of failing.
        try:
            await when_ready(
                lambda: handle.execute_update(
                    m.UPDATE_RECORDING_RETRY,
                    m.RecordingOpsRequest(by=by, reason=reason, retry_for_s=retry_for_s or 0.0),
                    result_type=m.RecordingOpsResult,
                )
            )
        except WorkflowUpdateFailedError as err:
            raise RecordingRetryRefused(
                "still_running", "the recording pipeline is still running (not waiting for ops)"
            ) from err
        return RecordingRetry(handle.id, desc.run_id, desc.run_id, "WAITING_FOR_OPS")
    if desc.status in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.CONTINUED_AS_NEW):
        # A pipeline that completed `failed` was given up on by ops: it stays so.
        if desc.typed_search_attributes.get(sa.RECORDING_STATUS) == m.RecordingStatus.FAILED:
            raise RecordingRetryRefused("given_up", "ops gave up on this recording")
        raise RecordingRetryRefused("already_stored", "the recording is already stored")
    try:
        call = await client.get_workflow_handle(m.call_workflow_id(call_id)).describe()
        if call.status == WorkflowExecutionStatus.RUNNING:
            raise RecordingRetryRefused("call_still_running", "the call is still finishing")
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [inp] = await client.data_converter.decode(started.input.payloads, [m.RecordingInput])
    inp.report_to_call = True
    if retry_for_s is not None:
        inp.retry_for_s = retry_for_s
    try:
        new = await client.start_workflow(
            RecordingWorkflow.run,
            inp,
            id=m.recording_workflow_id(call_id),
            task_queue=desc.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        )
    except WorkflowAlreadyStartedError as err:
        # Two retries at once: the other one started the new run first.
        raise RecordingRetryRefused(
            "still_running", "another retry restarted the recording pipeline first"
        ) from err
    if await _erasure_started(client, call_id):
        # The erasure started while this retry did: its pipeline stop may have passed before
        # the new run existed, so the new run is stopped here (its store step also refuses an
        # erased call).
        try:
            await new.cancel(reason="erasure started during the retry")
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:  # gone already: nothing to stop
                raise
        raise RecordingRetryRefused("erasing", "the call is being erased, or was")
    return RecordingRetry(
        workflow_id=new.id,
        run_id=new.result_run_id or "",
        previous_run_id=desc.run_id,
        previous_status=desc.status.name if desc.status else "",
    )


async def _erasure_started(client: Client, call_id: str) -> bool:
    """True while `erase-<call_id>` runs or once it completed (a failed one may be re-run)."""
    try:
        desc = await client.get_workflow_handle(m.erase_workflow_id(call_id)).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return desc.status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED)
