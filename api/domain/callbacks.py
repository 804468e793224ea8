"""Callbacks from the API's side: the checks a request must pass (422 naming the field, 409
for a number on the do-not-call list), the update-with-start that makes a request idempotent,
the updates that move or cancel one, and the rows the lists read.

`callback-<id>` decides; the `callbacks` row (written by the workflow on every change) is what
lists and erasure read. A number is masked in every answer but an admin's.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

import core.callbacks as cb
from api.errors import Conflict, NotFound, Unavailable, ValidationFailed
from core.settings import Settings
from core.telephony import allowed, is_e164, mask_number
from workflows.callback import CallbackWorkflow


def check_phone(phone: str, settings: Settings) -> None:
    if not is_e164(phone):
        raise ValidationFailed("phone: must be an E.164 number (+ and 7 to 15 digits)",
                               field="phone")  # fmt: skip
    if not allowed(phone, settings.sip_allowed_prefixes):
        raise ValidationFailed("phone: this number may not be called "
                               "(SIP_OUTBOUND_ALLOWED_PREFIXES)", field="phone")  # fmt: skip


def check_zone(name: str) -> None:
    try:
        cb.zone(name)
    except ValueError:
        raise ValidationFailed(f"timezone: unknown time zone {name!r}", field="timezone") from None


def check_at(text: str, settings: Settings, now: datetime | None = None) -> datetime:
    """An aware instant between now and CALLBACK_MAX_DAYS ahead."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed("at: must be ISO 8601, e.g. 2027-03-14T15:00:00-05:00",
                               field="at") from None  # fmt: skip
    if at.tzinfo is None:
        raise ValidationFailed("at: needs an offset (Z or +hh:mm)", field="at")
    now = now or datetime.now(UTC)
    if at < now - timedelta(seconds=60):
        raise ValidationFailed("at: is in the past", field="at")
    if at > now + timedelta(days=settings.CALLBACK_MAX_DAYS):
        raise ValidationFailed(f"at: more than {settings.CALLBACK_MAX_DAYS} days ahead "
                               "(CALLBACK_MAX_DAYS)", field="at")  # fmt: skip
    return at


async def on_do_not_call(pool: asyncpg.Pool, phone: str) -> bool:
    async with pool.acquire() as conn:
        return bool(await conn.fetchval("SELECT 1 FROM do_not_call WHERE phone = $1", phone))


async def schedule(
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    phone: str,
    at: str,
    timezone: str,
    by: str,
    reason: str = "",
    call_id: str = "",
    customer_name: str | None = None,
    request_id: str = "",
) -> cb.CallbackState:
    """Schedule a callback, every way in (the API, Sarah's tool, the queue's max-wait offer):
    the checks (422 naming the field, 409 for a do-not-call number), then one callback a
    request id, else a call. The desk's offer calls this with `by="queue"` and the waiting
    call's id, so a customer who accepts twice gets one callback."""
    check_phone(phone, settings)
    when = check_at(at, settings)
    check_zone(timezone)
    if await on_do_not_call(pool, phone):
        raise Conflict("phone: the number is on the do-not-call list", code="do_not_call",
                       field="phone")  # fmt: skip
    callback_id = cb.callback_id_for(request_id=request_id, call_id=call_id,
                                     random=uuid.uuid4().hex[:20])  # fmt: skip
    req = cb.CallbackRequest(
        callback_id, phone, when.timestamp(), timezone, reason=reason, call_id=call_id,
        customer_name=customer_name, hours=settings.CALLBACK_HOURS,
        retry_s=settings.CALLBACK_RETRY_S, max_attempts=settings.CALLBACK_MAX_ATTEMPTS,
        ringing_timeout_s=settings.SIP_RINGING_TIMEOUT_S, by=by,
    )  # fmt: skip
    return await create(client, settings, req)


async def create(client: Client, settings: Settings, req: cb.CallbackRequest) -> cb.CallbackState:
    """Start `callback-<id>` or find it (running or finished): one callback a request."""
    handle = client.get_workflow_handle(cb.callback_workflow_id(req.callback_id))
    start = WithStartWorkflowOperation(
        CallbackWorkflow.run, req, id=handle.id, task_queue=settings.TEMPORAL_TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )  # fmt: skip
    try:
        return await client.execute_update_with_start_workflow(
            CallbackWorkflow.register, start_workflow_operation=start
        )
    except WorkflowAlreadyStartedError:
        # The start operation holds the same error in a future of its own: read it (asyncio
        # reports a future whose exception nobody retrieved).
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await start.workflow_handle()
        return await handle.query(CallbackWorkflow.get_state)  # it has finished: the same one
    except RPCError as exc:
        raise _temporal(exc, req.callback_id) from exc


async def state(client: Client, pool: asyncpg.Pool, callback_id: str) -> dict[str, Any]:
    """The callback as the workflow knows it; its row when the workflow cannot answer."""
    handle = client.get_workflow_handle(cb.callback_workflow_id(callback_id))
    try:
        st = await handle.query(CallbackWorkflow.get_state, rpc_timeout=timedelta(seconds=5))
        return from_state(st)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            row = await one_row(pool, callback_id)
            if row is None:
                raise _temporal(exc, callback_id) from exc
            return row
    raise NotFound(f"no callback {callback_id}", code="callback_not_found")


async def reschedule(client: Client, callback_id: str, change: cb.Reschedule) -> dict[str, Any]:
    return await _update(client, callback_id, CallbackWorkflow.reschedule, change)


async def cancel(client: Client, callback_id: str, why: cb.CancelCallback) -> dict[str, Any]:
    return await _update(client, callback_id, CallbackWorkflow.cancel, why)


async def _update(client: Client, callback_id: str, update: Any, arg: Any) -> dict[str, Any]:
    handle = client.get_workflow_handle(cb.callback_workflow_id(callback_id))
    try:
        return from_state(await handle.execute_update(update, arg))
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        msg = getattr(cause, "message", "") or "the callback refused it"
        if getattr(cause, "type", "") == "InvalidInput":
            raise ValidationFailed(f"timezone: {msg}", field="timezone") from exc
        raise Conflict(f"callback {callback_id}: {msg}", code="callback_not_scheduled") from exc
    except RPCError as exc:
        raise _temporal(exc, callback_id) from exc


async def cancel_waiting_for(client: Client, pool: asyncpg.Pool, phone: str, by: str) -> int:
    """A number put on the do-not-call list: each of its callbacks that still waits is cancelled
    now (the workflow also checks the list right before each dial). How many were."""
    async with pool.acquire() as conn:
        ids = await conn.fetch(
            "SELECT callback_id FROM callbacks WHERE phone = $1 AND status = 'scheduled'", phone
        )
    done = 0
    for row in ids:
        try:
            await cancel(client, row["callback_id"], cb.CancelCallback(by, "do_not_call"))
            done += 1
        except (Conflict, NotFound):
            pass  # it dialled or ended meanwhile
    return done


def _temporal(exc: RPCError, callback_id: str) -> Exception:
    if exc.status == RPCStatusCode.NOT_FOUND:
        return NotFound(f"no callback {callback_id} waiting", code="callback_not_found")
    if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return Unavailable("temporal is not reachable", code="temporal_unavailable")
    if exc.status == RPCStatusCode.FAILED_PRECONDITION:
        return Conflict(f"callback {callback_id}: {exc.message}", code="callback_not_scheduled")
    return exc


def _iso(ts: float | datetime) -> str:
    dt = ts if isinstance(ts, datetime) else cb.from_epoch(ts)
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def from_state(st: cb.CallbackState) -> dict[str, Any]:
    return {
        "id": st.callback_id, "status": st.status, "at": _iso(st.at), "due_at": _iso(st.due_at),
        "timezone": st.timezone, "phone": st.phone, "reason": st.reason, "call_id": st.call_id,
        "end_reason": st.end_reason,
        "attempts": [{"n": a.n, "call_id": a.call_id, "started_at": _iso(a.started_at),
                      "outcome": a.outcome} for a in st.attempts],
    }  # fmt: skip


def from_row(row: asyncpg.Record) -> dict[str, Any]:
    attempts = json.loads(row["attempts"]) if isinstance(row["attempts"], str) else row["attempts"]
    return {
        "id": row["callback_id"], "status": row["status"], "at": _iso(row["at"]),
        "due_at": _iso(row["due_at"]), "timezone": row["timezone"], "phone": row["phone"],
        "reason": row["reason"], "call_id": row["origin_call_id"], "end_reason": row["end_reason"],
        "attempts": [{"n": a["n"], "call_id": a["call_id"], "started_at": _iso(a["started_at"]),
                      "outcome": a["outcome"]} for a in attempts],
    }  # fmt: skip


def masked(view: dict[str, Any], full: bool) -> dict[str, Any]:
    return view if full else {**view, "phone": mask_number(view["phone"])}


async def one_row(pool: asyncpg.Pool, callback_id: str) -> dict[str, Any] | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM callbacks WHERE callback_id = $1", callback_id)
    return from_row(row) if row else None


async def rows(pool: asyncpg.Pool, status: str | None, since: datetime | None,
               until: datetime | None, limit: int = 200) -> list[dict[str, Any]]:  # fmt: skip
    """Callbacks by status and due time (soonest first)."""
    async with pool.acquire() as conn:
        found = await conn.fetch(
            "SELECT * FROM callbacks WHERE ($1::text IS NULL OR status = $1) "
            "AND ($2::timestamptz IS NULL OR due_at >= $2) "
            "AND ($3::timestamptz IS NULL OR due_at < $3) ORDER BY due_at LIMIT $4",
            status, since, until, limit,
        )  # fmt: skip
    return [from_row(r) for r in found]
