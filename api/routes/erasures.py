"""`POST /api/erasures {"phone"}` (admin): erase a person by their number.

Everything of that number goes: every call placed to it (`calls.phone`) or whose booking names
it (`test_drives.customer_phone`, compared digit for digit) through the same
`EraseCallWorkflow` as `DELETE /api/calls/{id}` (recording, rows, histories); every callback of
it (its workflow executions deleted from Temporal, a waiting one with them, and its rows); and
every booking of it. Never by a name alone: a name names many people (the body takes a number
only; anything else is 422). A live call of the number is 409 and nothing is touched: end it
first. The number is never logged.
"""

from __future__ import annotations

import asyncio

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

import core.callbacks as cb
from api.auth import ERASE, require
from api.docs import endpoint
from api.errors import Conflict, ValidationFailed
from api.routes.erasure import WAIT_FOR_ERASURE
from api.schemas import PersonErasureRequest, PersonErasureResult
from api.validation import parse_body
from core.log import get_logger
from core.models import call_workflow_id
from core.telephony import is_e164, mask_number
from workflows.client import start_erase

log = get_logger("api.erasures")
bp = Blueprint("erasures")


@bp.post("/api/erasures")
@endpoint("Erase a person by their number: calls, callbacks, campaign numbers, bookings; admin only",
          tag="admin", response=PersonErasureResult, errors=(409, 422), secured=True)  # fmt: skip
@require(ERASE)
async def erase_person(request: Request) -> HTTPResponse:
    body = parse_body(request, PersonErasureRequest)
    if not is_e164(body.phone):
        raise ValidationFailed("phone: must be an E.164 number", field="phone")
    res, principal = request.app.ctx.res, request.ctx.principal
    digits = body.phone[1:]
    async with res.db.acquire() as conn:
        call_ids = [r["call_id"] for r in await conn.fetch(
            "SELECT call_id FROM calls WHERE phone = $1 UNION SELECT call_id FROM test_drives "
            "WHERE regexp_replace(customer_phone, '\\D', '', 'g') IN ($2, $3)",
            body.phone, digits, digits[1:] if digits.startswith("1") else digits,
        )]  # fmt: skip
        callback_ids = [r["callback_id"] for r in await conn.fetch(
            "SELECT callback_id FROM callbacks WHERE phone = $1", body.phone)]  # fmt: skip
    live = [c for c in call_ids if await res.calls.is_running(call_workflow_id(c))]
    if live:
        raise Conflict(f"calls {', '.join(live)} are live; end them before erasing",
                       code="call_live")  # fmt: skip
    for callback_id in callback_ids:
        await _delete_execution(res.temporal, cb.callback_workflow_id(callback_id))
    handles = [await start_erase(res.temporal, c, by=principal.id,
                                 task_queue=request.app.ctx.settings.TEMPORAL_TASK_QUEUE)
               for c in call_ids]  # fmt: skip
    async with res.db.acquire() as conn, conn.transaction():
        gone_callbacks = await conn.execute("DELETE FROM callbacks WHERE phone = $1", body.phone)
        gone_numbers = await conn.execute(
            "DELETE FROM campaign_numbers WHERE phone = $1", body.phone)  # fmt: skip
        gone_drives = await conn.execute(
            "DELETE FROM test_drives WHERE regexp_replace(customer_phone, '\\D', '', 'g') "
            "IN ($1, $2)", digits, digits[1:] if digits.startswith("1") else digits,
        )  # fmt: skip
    status = "erased"
    try:
        async with asyncio.timeout(WAIT_FOR_ERASURE.total_seconds()):
            await asyncio.gather(*(h.result() for h in handles))
    except TimeoutError:
        status = "in_progress"
    log.info("person_erased", by=principal.id, calls=len(call_ids),
             callbacks=len(callback_ids), to=mask_number(body.phone))  # fmt: skip
    return json(
        {"phone": mask_number(body.phone), "calls": call_ids,
         "callbacks": int(gone_callbacks.split()[-1]), "test_drives": int(gone_drives.split()[-1]),
         "campaign_numbers": int(gone_numbers.split()[-1]),
         "status": status},
        status=200 if status == "erased" else 202,
    )  # fmt: skip


async def _delete_execution(client: Client, workflow_id: str) -> None:
    """Delete every run of `workflow_id` (a running one is terminated first by the server)."""
    try:
        await client.workflow_service.delete_workflow_execution(
            DeleteWorkflowExecutionRequest(namespace=client.namespace,
                                           workflow_execution=WorkflowExecution(workflow_id=workflow_id))
        )  # fmt: skip
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
