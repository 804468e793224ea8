"""`ops calls list|show|erase`: calls as PostgreSQL indexes them, erasure through Temporal.

Erasure starts the same `EraseCallWorkflow(erase-<call_id>)` as `DELETE /api/calls/{id}`
(same id and reuse policy, so the API and the CLI never erase a call twice) and waits for it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowFailureError

from api.domain import store
from core.models import EraseCallResult
from workflows.client import start_erase

LIST_COLUMNS = ("call_id", "status", "recording_status", "created_at", "ended_at", "customer_name")


async def list_calls(pool: asyncpg.Pool, status: str, limit: int) -> list[dict[str, Any]]:
    rows, _ = await store.list_calls(pool, status, limit, None)
    return rows


async def show_call(pool: asyncpg.Pool, call_id: str) -> dict[str, Any] | None:
    call = await store.get_call(pool, call_id)
    if call is None:
        return None
    row = await pool.fetchrow(
        "SELECT line_count, egress_id, recording_error FROM calls WHERE call_id = $1", call_id
    )
    call.update(dict(row) if row else {})
    rec = await store.get_recording(pool, call_id)
    call["recording"] = {k: store.iso_or_none(v) if isinstance(v, datetime) else v
                         for k, v in rec.items()} if rec else None  # fmt: skip
    call["erasure"] = await store.get_erasure(pool, call_id)
    return call


async def erase_call(
    client: Client, call_id: str, *, by: str, task_queue: str, timeout_s: float
) -> dict[str, Any]:
    handle = await start_erase(
        client, call_id, by=by, task_queue=task_queue, execution_timeout=timedelta(minutes=30)
    )
    try:
        result: EraseCallResult = await asyncio.wait_for(handle.result(), timeout_s)
    except TimeoutError:
        return {"call_id": call_id, "status": "in_progress", "workflow_id": handle.id}
    except WorkflowFailureError as exc:
        cause: Any = exc.cause
        while getattr(cause, "cause", None) is not None:
            cause = cause.cause
        return {"call_id": call_id, "status": "refused", "reason": str(cause)}
    return {
        "call_id": call_id,
        "status": "erased",
        "executions_deleted": result.executions_deleted,
        "object_deleted": result.object_deleted,
        "rows_deleted": result.rows_deleted,
    }
