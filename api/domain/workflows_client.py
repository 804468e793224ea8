"""What the API asks of Temporal: start a call (update-with-start), query, update, signal,
replay a failed recording pipeline. The client-side calls themselves live with the workflows
(`workflows/client.py`); Temporal's errors become API errors here, once.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.domain.join_tokens import RejoinProof, sign_join_token
from api.errors import Conflict, Forbidden, NotFound, Unavailable, ValidationFailed
from core.codec import PayloadDecryptError
from core.models import (
    ERR_NOT_PHONE,
    ERR_REJOIN_REFUSED,
    ERR_TRANSFER_FAILED,
    QUERY_GET_STATE,
    UPDATE_ISSUE_TOKEN,
    UPDATE_TRANSFER,
    CallConfig,
    CallResult,
    CallState,
    DialRequest,
    EndCallResult,
    IssueTokenRequest,
    TokenGrant,
    TransferRequest,
    call_workflow_id,
    phone_call_id,
)
from core.settings import Settings
from workflows import client as wclient


def _application_error(exc: BaseException) -> ApplicationError | None:
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__ or getattr(cause, "cause", None)
    return cause


def temporal_error(exc: Exception, call_id: str) -> Exception:
    """Map a Temporal client error to what the API answers (others propagate unchanged)."""
    if isinstance(exc, RPCError):
        if exc.status == RPCStatusCode.NOT_FOUND:
            return NotFound(f"no live workflow for call {call_id}", code="call_not_live")
        if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            return Unavailable("temporal is not reachable", code="temporal_unavailable")
        if exc.status == RPCStatusCode.RESOURCE_EXHAUSTED:
            # Temporal's own rate limit under a flood of calls: busy, not broken.
            return Unavailable(
                "temporal is busy; retry later",
                code="temporal_unavailable",
                headers={"Retry-After": "5"},
            )
        if exc.status == RPCStatusCode.FAILED_PRECONDITION:
            return Conflict(f"call {call_id} cannot take this now: {exc.message}")
    if isinstance(exc, WorkflowUpdateFailedError):
        app = _application_error(exc)
        if app is not None and app.type == "InvalidReason":
            return ValidationFailed(f"reason: {app.message}", field="reason")
        if app is not None and app.type == ERR_REJOIN_REFUSED:
            return Forbidden(app.message, field="token")
        msg = app.message if app is not None else "the call refused it"
        return Conflict(f"call {call_id}: {msg}", code="call_refused")
    if isinstance(exc, WorkflowQueryFailedError):
        return Conflict(f"call {call_id}: state not available ({exc.message})")
    return exc


class CallsClient:
    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    async def issue_token(self, call_id: str, customer_name: str | None) -> TokenGrant:
        """Start `CallWorkflow(call-<id>)` and run its `issue_token` update in one round trip.

        A refused update means LiveKit could not create the room (the call ends `failed` by
        itself): 503, the customer may try again.
        """
        try:
            grant = await wclient.start_call(
                self.client,
                call_id,
                customer_name,
                CallConfig.from_settings(self.settings),
                task_queue=self.settings.TEMPORAL_TASK_QUEUE,
                pinned_to=self.settings.new_calls_pinned_to,
            )
        except WorkflowUpdateFailedError as exc:
            raise Unavailable(
                "the call could not be set up right now; try again", code="call_setup_failed"
            ) from exc
        except RPCError as exc:
            raise temporal_error(exc, call_id) from exc
        return sign_join_token(self.settings, grant)

    async def reissue_token(self, call_id: str, proof: RejoinProof) -> TokenGrant:
        """A fresh customer token for a call under way, in exchange for the latest one
        (`issue_token` on the running workflow, which records the rejoin): 403 for a proof the
        call refuses, 409 once the call has ended, 404 for no such live call."""
        handle = self.client.get_workflow_handle(call_workflow_id(call_id))
        req = IssueTokenRequest(rejoin_of=proof.token_id, proof_expires_at=proof.expires_at)
        try:
            grant = await wclient.when_ready(
                lambda: handle.execute_update(UPDATE_ISSUE_TOKEN, req, result_type=TokenGrant)
            )
        except (RPCError, WorkflowUpdateFailedError) as exc:
            raise temporal_error(exc, call_id) from exc
        return sign_join_token(self.settings, grant)

    async def state(self, call_id: str) -> dict[str, Any] | None:
        """The live workflow's state (query); None when no workflow of that id exists."""
        handle = self.client.get_workflow_handle(call_workflow_id(call_id))
        try:
            result = await handle.query(
                QUERY_GET_STATE, result_type=CallState, rpc_timeout=timedelta(seconds=10)
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise temporal_error(exc, call_id) from exc
        except WorkflowQueryFailedError as exc:
            raise temporal_error(exc, call_id) from exc
        return dataclasses.asdict(result)

    async def end(self, call_id: str, reason: str, by: str) -> str:
        """End a live call; returns the call's status after the update ("ending" or later)."""
        try:
            result = await wclient.end_call(self.client, call_id, reason, by)
        except (RPCError, WorkflowUpdateFailedError) as exc:
            raise temporal_error(exc, call_id) from exc
        return result.status

    async def start_inbound_phone(self, room_name: str, signal: str, arg: Any) -> str:
        """Start (or signal) the call of an inbound phone call's room; NotFound once that call
        has ended (a late webhook never starts it again)."""
        call_id = phone_call_id(room_name)
        try:
            await wclient.start_inbound_phone_call(
                self.client, room_name, CallConfig.from_settings(self.settings),
                task_queue=self.settings.TEMPORAL_TASK_QUEUE,
                pinned_to=self.settings.new_calls_pinned_to, signal=signal, arg=arg,
            )  # fmt: skip
        except WorkflowAlreadyStartedError as exc:
            raise NotFound(f"call {call_id} has ended", code="call_not_live") from exc
        except RPCError as exc:
            raise temporal_error(exc, call_id) from exc
        return call_id

    async def start_outbound_phone(
        self, call_id: str, customer_name: str | None, dial: DialRequest
    ) -> None:
        try:
            await wclient.start_outbound_phone_call(
                self.client, call_id, customer_name, CallConfig.from_settings(self.settings), dial,
                task_queue=self.settings.TEMPORAL_TASK_QUEUE,
                pinned_to=self.settings.new_calls_pinned_to,
            )  # fmt: skip
        except RPCError as exc:
            raise temporal_error(exc, call_id) from exc

    async def transfer(self, call_id: str, to: str, by: str) -> str:
        """Cold-transfer a phone call; the call's status after it (`ending` or later)."""
        handle = self.client.get_workflow_handle(call_workflow_id(call_id))
        try:
            result = await wclient.when_ready(
                lambda: handle.execute_update(
                    UPDATE_TRANSFER, TransferRequest(to, by), result_type=EndCallResult
                )
            )
        except (RPCError, WorkflowUpdateFailedError) as exc:
            app = _application_error(exc)
            if app is not None and app.type == ERR_NOT_PHONE:
                raise Conflict(app.message, code="not_a_phone_call") from exc
            if app is not None and app.type == ERR_TRANSFER_FAILED:
                raise Conflict(app.message, code="transfer_failed") from exc
            raise temporal_error(exc, call_id) from exc
        return result.status

    async def signal(self, call_id: str, name: str, arg: Any) -> None:
        handle = self.client.get_workflow_handle(call_workflow_id(call_id))
        try:
            await handle.signal(name, arg, rpc_timeout=timedelta(seconds=10))
        except RPCError as exc:
            raise temporal_error(exc, call_id) from exc

    async def is_running(self, workflow_id: str) -> bool | None:
        """True running, False closed, None no such workflow."""
        try:
            desc = await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise temporal_error(exc, workflow_id) from exc
        return desc.status == WorkflowExecutionStatus.RUNNING

    async def retry_recording(self, call_id: str) -> str:
        """Start a new run of a failed `recording-<id>`; 404 without one, 409 unless failed."""
        try:
            retry = await wclient.retry_recording(self.client, call_id)
        except wclient.RecordingRetryRefused as exc:
            if exc.code == "not_found":
                raise NotFound(str(exc), code="recording_not_found", field="call_id") from exc
            raise Conflict(str(exc), code=f"recording_{exc.code}") from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.ALREADY_EXISTS:
                raise Conflict(
                    "the recording pipeline was restarted already", code="recording_still_running"
                ) from exc
            raise temporal_error(exc, call_id) from exc
        return retry.run_id

    async def outcome(self, call_id: str) -> dict[str, Any]:
        """What Temporal says of the call for its report: the workflow's status and, once it
        completed, its result. Never raises: an unreachable Temporal is part of the answer."""
        handle = self.client.get_workflow_handle(call_workflow_id(call_id), result_type=CallResult)
        timeout = timedelta(seconds=3)
        status = "UNKNOWN"
        try:
            desc = await handle.describe(rpc_timeout=timeout)
            status = desc.status.name if desc.status is not None else "UNKNOWN"
            result = None
            if desc.status == WorkflowExecutionStatus.COMPLETED:
                done = await handle.result(rpc_timeout=timeout)
                result = dataclasses.asdict(done)
        except PayloadDecryptError as exc:
            # A result encrypted with a key no longer configured: the report still answers.
            return {"source": "temporal", "status": status, "result": None,
                    "error": f"result not decodable: {exc}"}  # fmt: skip
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return {"source": "temporal", "status": "NOT_FOUND", "result": None}
            return {"source": "unavailable", "status": None, "result": None,
                    "error": f"temporal: {exc.status.name if exc.status else 'error'}"}  # fmt: skip
        return {"source": "temporal", "status": status, "result": result}
