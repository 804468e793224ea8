"""Callbacks and the do-not-call list (issue 25).

- `POST /api/callbacks` (supervisor, admin): ring a number back at a time, inside the calling
  window in the customer's zone. Idempotent: the same `request_id` / `Idempotency-Key`, else
  the same `call_id`, gives the same callback (update-with-start). 422 names the field (E.164
  and allowed prefix, a time in the past or beyond CALLBACK_MAX_DAYS, an unknown zone); a number
  on the do-not-call list is 409 naming `phone`.
- `GET /api/callbacks/{id}`, `GET /api/callbacks?status=&from=&to=`; `PATCH` moves a sleeping
  one, `DELETE` cancels one (409 once it is finished).
- `POST /api/dnc` / `DELETE /api/dnc/{phone}`: a number put on the list cancels each of its
  waiting callbacks at once (and the workflow checks the list right before every dial).

The number is masked in every answer but an admin's and never logged.
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

import core.callbacks as cb
from api.auth import ACT_ON_CALLS, READ_CALLS, Principal, require
from api.docs import String, endpoint, query_param
from api.domain import callbacks as domain
from api.errors import NotFound, ValidationFailed
from api.schemas import (
    CallbackCreateRequest,
    CallbackList,
    CallbackListQuery,
    CallbackPatchRequest,
    CallbackView,
    DncAnswer,
    DncRequest,
)
from api.validation import parse_body, parse_query
from core.log import get_logger
from core.telephony import is_e164, mask_number

log = get_logger("api.callbacks")
bp = Blueprint("callbacks")


def _full(request: Request) -> bool:
    principal: Principal = request.ctx.principal
    return principal.may({"admin"})


def _check_id(callback_id: str) -> None:
    if not cb.CALLBACK_ID_RE.match(callback_id):
        raise ValidationFailed("id: not a callback id", field="id")


@bp.post("/api/callbacks")
@endpoint("Schedule a callback (idempotent by request id, else by call)", tag="callbacks",
          ok=201, body=CallbackCreateRequest, response=CallbackView, errors=(409, 422, 503),
          secured=True)  # fmt: skip
@require(ACT_ON_CALLS)
async def create_callback(request: Request) -> HTTPResponse:
    body = parse_body(request, CallbackCreateRequest)
    res = request.app.ctx.res
    principal: Principal = request.ctx.principal
    st = await domain.schedule(
        res.temporal, res.db, request.app.ctx.settings, phone=body.phone, at=body.at,
        timezone=body.timezone, by=principal.id, reason=body.reason or "",
        call_id=body.call_id or "", customer_name=body.customer_name,
        request_id=body.request_id or request.headers.get("idempotency-key", "")[:128],
    )  # fmt: skip
    log.info("callback_scheduled", callback_id=st.callback_id, to=mask_number(body.phone),
             by=principal.id)  # fmt: skip
    return json(domain.masked(domain.from_state(st), _full(request)), status=201)


@bp.get("/api/callbacks")
@endpoint("Callbacks by status and due time, soonest first", tag="callbacks",
          response=CallbackList, errors=(422,), secured=True)  # fmt: skip
@query_param("status", String(enum=[s.value for s in cb.CallbackStatus]), "one status")
@query_param("from", String(format="date-time"), "due at or after")
@query_param("to", String(format="date-time"), "due before")
@require(READ_CALLS)
async def list_callbacks(request: Request) -> HTTPResponse:
    q = parse_query(request, CallbackListQuery)
    found = await domain.rows(request.app.ctx.res.db, q.status, q.from_, q.to)
    full = _full(request)
    return json({"callbacks": [domain.masked(v, full) for v in found]})


@bp.get("/api/callbacks/<callback_id:str>")
@endpoint("A callback with every attempt", tag="callbacks", response=CallbackView,
          errors=(404, 422), secured=True)  # fmt: skip
@require(READ_CALLS)
async def get_callback(request: Request, callback_id: str) -> HTTPResponse:
    _check_id(callback_id)
    res = request.app.ctx.res
    view = await domain.state(res.temporal, res.db, callback_id)
    return json(domain.masked(view, _full(request)))


@bp.patch("/api/callbacks/<callback_id:str>")
@endpoint("Move a scheduled callback to another time (and zone)", tag="callbacks",
          body=CallbackPatchRequest, response=CallbackView, errors=(404, 409, 422),
          secured=True)  # fmt: skip
@require(ACT_ON_CALLS)
async def patch_callback(request: Request, callback_id: str) -> HTTPResponse:
    _check_id(callback_id)
    body = parse_body(request, CallbackPatchRequest)
    at = domain.check_at(body.at, request.app.ctx.settings)
    if body.timezone:
        domain.check_zone(body.timezone)
    principal: Principal = request.ctx.principal
    change = cb.Reschedule(at.timestamp(), body.timezone or "", principal.id)
    view = await domain.reschedule(request.app.ctx.res.temporal, callback_id, change)
    log.info("callback_rescheduled", callback_id=callback_id, by=principal.id)
    return json(domain.masked(view, _full(request)))


@bp.delete("/api/callbacks/<callback_id:str>")
@endpoint("Cancel a callback (a call already ringing goes on; no attempt follows it)",
          tag="callbacks", response=CallbackView, errors=(404, 409, 422), secured=True)  # fmt: skip
@require(ACT_ON_CALLS)
async def cancel_callback(request: Request, callback_id: str) -> HTTPResponse:
    _check_id(callback_id)
    principal: Principal = request.ctx.principal
    view = await domain.cancel(request.app.ctx.res.temporal, callback_id,
                               cb.CancelCallback(principal.id))  # fmt: skip
    log.info("callback_cancelled", callback_id=callback_id, by=principal.id)
    return json(domain.masked(view, _full(request)))


@bp.post("/api/dnc")
@endpoint("Put a number on the do-not-call list (its waiting callbacks are cancelled)",
          tag="callbacks", ok=201, body=DncRequest, response=DncAnswer, errors=(422,),
          secured=True)  # fmt: skip
@require(ACT_ON_CALLS)
async def add_dnc(request: Request) -> HTTPResponse:
    body = parse_body(request, DncRequest)
    if not is_e164(body.phone):
        raise ValidationFailed("phone: must be an E.164 number", field="phone")
    res = request.app.ctx.res
    principal: Principal = request.ctx.principal
    async with res.db.acquire() as conn:
        await conn.execute("INSERT INTO do_not_call (phone, added_by) VALUES ($1, $2) "
                           "ON CONFLICT (phone) DO NOTHING", body.phone, principal.id)  # fmt: skip
    cancelled = await domain.cancel_waiting_for(res.temporal, res.db, body.phone, principal.id)
    log.info("dnc_added", to=mask_number(body.phone), by=principal.id, cancelled=cancelled)
    return json(_dnc_answer("added", body.phone, cancelled), status=201)


@bp.delete("/api/dnc/<phone:str>")
@endpoint("Take a number off the do-not-call list", tag="callbacks", response=DncAnswer,
          errors=(404, 422), secured=True)  # fmt: skip
@require(ACT_ON_CALLS)
async def remove_dnc(request: Request, phone: str) -> HTTPResponse:
    if not is_e164(phone):
        raise ValidationFailed("phone: must be an E.164 number", field="phone")
    async with request.app.ctx.res.db.acquire() as conn:
        gone = await conn.fetchval("DELETE FROM do_not_call WHERE phone = $1 RETURNING 1", phone)
    if not gone:
        raise NotFound("phone: not on the do-not-call list", code="not_listed")
    log.info("dnc_removed", to=mask_number(phone), by=request.ctx.principal.id)
    return json(_dnc_answer("removed", phone, 0))


def _dnc_answer(action: str, phone: str, cancelled: int) -> dict[str, Any]:
    return {"action": action, "phone": mask_number(phone), "cancelled_callbacks": cancelled}
