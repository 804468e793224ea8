"""`DELETE /api/calls/{call_id}` (admin): erase a finished call through `EraseCallWorkflow`.

Idempotent: erasing an erased call answers 200 again. A live call is 409 (end it first): live
means its workflow runs, as Temporal says, whatever its row says; a call whose workflow closed
without writing a final status (terminated, failed, timed out) or is gone is erasable. A
recording pipeline that still retries or waits for ops is stopped by the erasure, not waited for.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError

from api.auth import ERASE, require
from api.docs import endpoint
from api.domain import store
from api.domain.workflows_client import temporal_error
from api.errors import Conflict, NotFound
from api.schemas import Empty, ErasureResult
from api.validation import call_id_path, parse_body, parse_query
from core.log import get_logger
from core.models import call_workflow_id, erase_workflow_id
from workflows.client import start_erase

log = get_logger("api.erasure")
bp = Blueprint("erasure", url_prefix="/api/calls")

WAIT_FOR_ERASURE = timedelta(seconds=20)


@bp.delete("/<call_id:str>")
@endpoint(
    "Erase a finished call (recording, rows, workflow histories); admin only",
    tag="admin",
    response=ErasureResult,
    errors=(404, 409, 422),
    secured=True,
    description="200 when erased (also when it already was); 202 while it is still in progress.",
)
@require(ERASE)
@call_id_path
async def erase_call(request: Request, call_id: str) -> HTTPResponse:
    parse_query(request, Empty)
    parse_body(request, Empty, allow_empty=True)
    res = request.app.ctx.res
    wid = erase_workflow_id(call_id)
    if await store.get_erasure(res.db, call_id) is not None:
        return json({"call_id": call_id, "erasure_workflow_id": wid, "status": "erased"})
    calls = res.calls
    row = await store.get_call(res.db, call_id)
    call_running = await calls.is_running(call_workflow_id(call_id))
    if row is None and call_running is None:
        raise NotFound(f"no call {call_id}", code="call_not_found", field="call_id")
    if call_running:
        raise Conflict(f"call {call_id} is live; end it before erasing", code="call_live")
    # A recording pipeline still retrying (or waiting for ops) does not hold erasure up: the
    # erase workflow stops it first.
    principal = request.ctx.principal
    try:
        handle = await start_erase(
            res.temporal,
            call_id,
            by=principal.id,
            task_queue=request.app.ctx.settings.TEMPORAL_TASK_QUEUE,
        )
    except RPCError as exc:
        raise temporal_error(exc, call_id) from exc
    log.info("erasure_started", call_id=call_id, by=principal.id)
    try:
        async with asyncio.timeout(WAIT_FOR_ERASURE.total_seconds()):
            await handle.result()
    except TimeoutError:
        return json(
            {"call_id": call_id, "erasure_workflow_id": wid, "status": "in_progress"}, status=202
        )
    except WorkflowFailureError as exc:
        raise Conflict(
            f"erasure of call {call_id} failed: {exc.cause}", code="erasure_failed"
        ) from exc
    log.info("call_erased", call_id=call_id, by=principal.id)
    return json({"call_id": call_id, "erasure_workflow_id": wid, "status": "erased"})
